"""Try a TCP connection to every "address port" target at once; print the ones that connected.

Dropped targets cost their timeout, so they are tried in parallel (one thread each): the whole
probe takes one timeout instead of one per refused target. Used by probe_openings.yml.
"""
import json
import socket
import sys
import threading

TIMEOUT = 3.0


def try_target(target, reached):
    host, port = target.rsplit(" ", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=TIMEOUT):
            reached.append(target)
    except OSError:
        pass


def main():
    reached = []
    threads = [threading.Thread(target=try_target, args=(t, reached)) for t in sys.argv[1:]]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps(sorted(reached)))


if __name__ == "__main__":
    main()
