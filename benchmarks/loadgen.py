"""A load generator for the app tier's drills and benchmark, run on a load balancer against
its own HTTPS port on loopback (nothing leaves the host).

Threads send GET requests over keep-alive connections as fast as the other side answers, and
tag each with the phase named in PHASE_FILE (read every 0.2 s). A request fails when it gets
no answer or a status other than 200; one the server's closing of an idle kept-alive
connection interrupted is retried once on a new connection (counted as "retried"). It stops when the phase is "stop" (or after --max-seconds)
and prints, per phase and in all, the requests served, the failures (with a sample of their
reasons) and the latency percentiles, as one JSON object.

    python3 loadgen.py --url https://127.0.0.1/version --host-header lb1 --phase-file /tmp/phase
"""

import argparse
import http.client
import json
import ssl
import threading
import time
import urllib.parse


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000, 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--host-header")
    parser.add_argument("--phase-file", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=900)
    parser.add_argument("--timeout", type=float, default=10)
    args = parser.parse_args()
    url = urllib.parse.urlsplit(args.url)
    context = ssl.create_default_context()
    # Loopback does not match the certificate's names; TLS is verified from other hosts.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    headers = {"Host": args.host_header} if args.host_header else {}

    state = {"phase": "start"}
    lock = threading.Lock()
    results = {}  # phase -> {"latencies": [], "failed": 0, "reasons": {}, "versions": {}}
    stop = threading.Event()
    retries = {}  # phase -> requests retried once on a new connection

    def read_phase():
        deadline = time.monotonic() + args.max_seconds
        while not stop.is_set():
            try:
                with open(args.phase_file, encoding="utf-8") as handle:
                    phase = handle.read().strip() or state["phase"]
            except OSError:
                phase = state["phase"]
            state["phase"] = phase
            if phase == "stop" or time.monotonic() > deadline:
                stop.set()
            time.sleep(0.2)

    def record(phase, latency, reason, version=None):
        with lock:
            entry = results.setdefault(phase, {"latencies": [], "failed": 0, "reasons": {}, "versions": {}})
            if reason is None:
                entry["latencies"].append(latency)
                if version:
                    entry["versions"][version] = entry["versions"].get(version, 0) + 1
            else:
                entry["failed"] += 1
                entry["reasons"][reason] = entry["reasons"].get(reason, 0) + 1

    def connect():
        return http.client.HTTPSConnection(url.hostname, url.port or 443, timeout=args.timeout, context=context)

    def send(conn):
        """One GET. A kept-alive connection the server closed before answering (nginx's graceful
        reload closes idle ones) is retried once on a new connection, as HTTP clients do for an
        idempotent request (RFC 9110, 9.2.2); the retry is counted."""
        try:
            conn.request("GET", url.path or "/", headers=headers)
            return conn, conn.getresponse(), False
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            conn.close()
            conn = connect()
            conn.request("GET", url.path or "/", headers=headers)
            return conn, conn.getresponse(), True

    def worker():
        conn = None
        while not stop.is_set():
            phase = state["phase"]
            if conn is None:
                conn = connect()
            start = time.monotonic()
            try:
                conn, response, retried = send(conn)
                if retried:
                    with lock:
                        retries[phase] = retries.get(phase, 0) + 1
                body = response.read()
                latency = time.monotonic() - start
                if response.status == 200:
                    try:
                        version = json.loads(body).get("version")
                    except ValueError:
                        version = None
                    record(phase, latency, None, version)
                else:
                    record(phase, latency, "HTTP %d" % response.status)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                record(phase, time.monotonic() - start, type(exc).__name__)
                if conn is not None:
                    conn.close()
                conn = None

    threads = [threading.Thread(target=read_phase, daemon=True)]
    threads += [threading.Thread(target=worker, daemon=True) for _index in range(args.concurrency)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads[1:]:
        thread.join()
    summary = {"seconds": round(time.monotonic() - started, 1), "phases": {}}
    total_ok = total_failed = 0
    for phase, entry in results.items():
        lat = entry["latencies"]
        summary["phases"][phase] = {
            "served": len(lat), "failed": entry["failed"], "failures": entry["reasons"], "versions": entry["versions"],
            "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99),
            "retried": retries.get(phase, 0),
        }
        total_ok += len(lat)
        total_failed += entry["failed"]
    summary["served"] = total_ok
    summary["failed"] = total_failed
    print(json.dumps(summary, sort_keys=True))


if __name__ == "__main__":
    main()
