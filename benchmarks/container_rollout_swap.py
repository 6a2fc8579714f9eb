"""container_rollout: time to switch, and failed requests under load during the swap.

nginx (Debian's) on loopback balances one app replica on the local Docker engine. A load
generator sends requests through nginx for the whole run (bounded in time and count). Two
swaps from version 1 to version 2 are measured in the same run:

* keel: container_rollout phase=deploy (new replica beside the old, health-gated), nginx
  upstream switched to the new endpoint and reloaded gracefully, then phase=finalize.
* naive: stop and remove the old container, start the new one on the same port.

Printed per swap: seconds from start to the switch, requests sent, requests failed, latency
p50/p95. Figures only; nothing is asserted. Run as root on the lab machine:
    .venv/bin/python benchmarks/container_rollout_swap.py
"""

import http.client
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "collections"))


from ansible_collections.keel.platform.plugins.modules import container_rollout  # noqa: E402
from tests.support.modules import call_module  # noqa: E402
from tests.support.seaweedfs import free_port  # noqa: E402
from tests.support.webapp_images import build_images  # noqa: E402

SERVICE = "keel-bench-shop"
MAX_SECONDS = 120
MAX_REQUESTS = 500000


def rollout(image, port_base, phase):
    args = dict(service=SERVICE, image=image, replicas=1, container_ports=[8000], port_base=port_base, phase=phase, stop_timeout=5,
                healthcheck={"test": ["python3", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/health')"],
                             "interval": 1, "retries": 1},
                checks=[{"type": "http", "url": "http://{host}:{port}/health", "json_field": "status", "json_value": "ok"}],
                success_threshold=3, interval=0.5, timeout=60)
    failed, result = call_module(container_rollout.main, args)
    if failed:
        raise RuntimeError(result["msg"])
    return result


class Nginx(object):
    def __init__(self, port):
        self.dir = tempfile.mkdtemp(prefix="keel-bench-nginx-")
        self.port = port
        self.conf = os.path.join(self.dir, "nginx.conf")

    def write(self, upstream_port):
        with open(self.conf, "w") as f:
            f.write("""
worker_processes 1;
pid %(dir)s/nginx.pid;
error_log %(dir)s/error.log;
events { worker_connections 256; }
http {
  access_log off;
  upstream app { server 127.0.0.1:%(up)d; keepalive 16; }
  server {
    listen 127.0.0.1:%(port)d;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
""" % dict(dir=self.dir, up=upstream_port, port=self.port))

    def start(self, upstream_port):
        self.write(upstream_port)
        subprocess.run(["nginx", "-c", self.conf, "-t", "-q"], check=True)
        subprocess.run(["nginx", "-c", self.conf], check=True)

    def switch(self, upstream_port):
        """Graceful: new workers take new connections, old ones finish what they serve."""
        self.write(upstream_port)
        subprocess.run(["nginx", "-c", self.conf, "-t", "-q"], check=True)
        subprocess.run(["nginx", "-c", self.conf, "-s", "reload"], check=True)

    def stop(self):
        subprocess.run(["nginx", "-c", self.conf, "-s", "quit"], check=False)
        time.sleep(0.5)
        shutil.rmtree(self.dir, ignore_errors=True)


class Load(object):
    """Threads sending GET / through nginx until stopped (bounded in time and count)."""

    def __init__(self, port, threads=4):
        self.port, self.threads = port, threads
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.sent = self.failed = self.retried = 0
        self.latencies = []
        self.failures = {}
        self.t0 = time.perf_counter()

    def request(self, conn):
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.status

    def worker(self):
        conn, reused = None, False
        deadline = time.time() + MAX_SECONDS
        while not self.stop_event.is_set() and time.time() < deadline and self.sent < MAX_REQUESTS:
            start = time.perf_counter()
            retried, outcome = False, None
            try:
                if conn is None:
                    conn, reused = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5), False
                try:
                    status = self.request(conn)
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                    if not reused:
                        raise
                    # A kept-alive connection closed before any response (nginx's old worker
                    # shutting down after a reload): HTTP/1.1 clients retry an idempotent
                    # request once on a new connection (RFC 9112, 9.3.1).
                    retried = True
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                    status = self.request(conn)
                reused = True
                outcome = None if status == 200 else "HTTP %s" % status
            except (OSError, http.client.HTTPException) as exc:
                conn, outcome = None, type(exc).__name__
            with self.lock:
                self.sent += 1
                self.retried += 1 if retried else 0
                if outcome:
                    self.failed += 1
                    self.failures.setdefault(outcome, []).append(round(time.perf_counter() - self.t0, 2))
                self.latencies.append((time.perf_counter() - start) * 1000)

    def __enter__(self):
        self.pool = [threading.Thread(target=self.worker) for _thread in range(self.threads)]
        for thread in self.pool:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        for thread in self.pool:
            thread.join()

    def percentile(self, fraction):
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def free_range(count):
    """A base port with ``count`` consecutive free ports on loopback."""
    import random
    import socket

    for _attempt in range(200):
        base = random.randint(20000, 60000)
        socks = []
        try:
            for port in range(base, base + count):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no %d consecutive free ports" % count)


def port_of(result):
    return list(result["endpoints"][0]["ports"].values())[0]


def cleanup():
    subprocess.run("docker ps -aq --filter label=keel.rollout.service=%s | xargs -r docker rm -f" % SERVICE,
                   shell=True, check=False, stdout=subprocess.DEVNULL)
    subprocess.run(["docker", "rm", "-f", SERVICE + "-naive"], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_keel(images, port_base):
    first = rollout(images["1"], port_base, "full")
    nginx = Nginx(free_port())
    nginx.start(port_of(first))
    try:
        with Load(nginx.port) as load:
            time.sleep(2)  # steady state first
            start = time.perf_counter()
            events = {"start": round(start - load.t0, 2)}
            deployed = rollout(images["2"], port_base, "deploy")
            gated = time.perf_counter() - start
            nginx.switch(port_of(deployed))
            switched = time.perf_counter() - start
            events["switch"] = round(time.perf_counter() - load.t0, 2)
            time.sleep(2)  # let nginx's old workers finish, as a playbook's drain pause would
            events["finalize"] = round(time.perf_counter() - load.t0, 2)
            rollout(images["2"], port_base, "finalize")
            events["finalized"] = round(time.perf_counter() - load.t0, 2)
            time.sleep(2)
        return dict(gated=gated, switched=switched, load=load, events=events)
    finally:
        nginx.stop()
        cleanup()


def run_naive(images):
    port = free_port()

    def start(image):
        subprocess.run(["docker", "run", "-d", "--name", SERVICE + "-naive", "-p", "127.0.0.1:%d:8000" % port, image],
                       check=True, stdout=subprocess.DEVNULL)

    start(images["1"])
    time.sleep(2)
    nginx = Nginx(free_port())
    nginx.start(port)
    try:
        with Load(nginx.port) as load:
            time.sleep(2)
            begin = time.perf_counter()
            subprocess.run(["docker", "rm", "-f", SERVICE + "-naive"], check=True, stdout=subprocess.DEVNULL)
            start(images["2"])
            switched = time.perf_counter() - begin
            time.sleep(6)
        return dict(gated=None, switched=switched, load=load)
    finally:
        nginx.stop()
        cleanup()


def main():
    if not shutil.which("nginx"):
        sys.exit("nginx is needed: apt-get install nginx-light (or nginx)")
    cleanup()
    images = build_images({"1": True, "2": True})
    port_base = free_range(2)  # one replica, two slots
    rows = [("keel (deploy, gate, switch, finalize)", run_keel(images, port_base)), ("naive (stop old, start new)", run_naive(images))]
    print()
    print("container_rollout swap v1 -> v2, one replica behind nginx on loopback, 4 client threads")
    print("%-40s %9s %9s %9s %8s %8s %8s %8s" % ("swap", "gated s", "switch s", "requests", "failed", "retried", "p50 ms", "p95 ms"))
    for name, r in rows:
        load = r["load"]
        print("%-40s %9s %9.1f %9d %8d %8d %8.1f %8.1f" % (name, "%.1f" % r["gated"] if r["gated"] else "-", r["switched"], load.sent,
                                                           load.failed, load.retried, load.percentile(0.5), load.percentile(0.95)))
        for kind, times in load.failures.items():
            print("    failed: %d x %s (first at %s s into the load)" % (len(times), kind, times[:3]))
        if r.get("events"):
            print("    timeline (s into the load): %s" % r["events"])
    print("retried: requests that met a kept-alive connection closed by nginx's reload and succeeded on a new one")


if __name__ == "__main__":
    main()
