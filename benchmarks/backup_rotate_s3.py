"""backup_rotate over 100k and 1M S3 objects: wall time, requests and peak RSS of the module process.

The module runs as Ansible runs it: its own Python process (``python backup_rotate.py
args.json``), so the peak RSS is the whole process's (interpreter, boto3, listing, plan,
result), read from the kernel with ``os.wait4`` (``ru_maxrss``), not tracemalloc.

Each object is an hourly-ish "backup" whose time is in its name (one every 5 minutes), rotated
by ``keep_last: 24, keep_daily: 7, keep_weekly: 4, keep_monthly: 12, keep_yearly: 3``.

Backends, named in every row:

* ``seaweedfs``: a real SeaweedFS server on loopback, filled with the objects first (16
  threads). Filling 1M objects takes hours on the project's machine, so by default SeaweedFS
  runs at 100k only.
* ``fake-http``: ``tests/support/fake_s3.GeneratedS3Server``, a threaded HTTP endpoint that
  answers GetBucketVersioning, ListObjectsV2 (1000 keys a page) and DeleteObjects from a
  generated key space. boto3 signs, sends and parses every request and page exactly as against
  S3; only the storage is not real.

Usage: .venv/bin/python benchmarks/backup_rotate_s3.py [BACKEND:SIZE:OUTPUT[:VERSIONS] ...]
       default: seaweedfs:100000:summary fake-http:100000:full fake-http:100000:summary fake-http:1000000:summary
                fake-http:1000000:summary:delete
VERSIONS is ``s3_versions`` (``markers``, the default, or ``delete``: a versioned bucket, every
version listed, twice, and deleted by version ID; fake-http only).
Figures only; nothing is asserted.
"""

import datetime
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.support.fake_s3 import GeneratedS3Server  # noqa: E402
from tests.support.seaweedfs import put_many, s3_client, seaweedfs  # noqa: E402

MODULE = os.path.join(ROOT, "plugins", "modules", "backup_rotate.py")
BUCKET = "keel-bench"
POLICY = {"keep_last": 24, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 3}
PATTERN = r"db-(?P<ts>\d{8}T\d{6}Z)\.tar$"
FORMAT = "%Y%m%dT%H%M%SZ"
STEP = datetime.timedelta(minutes=5)
END = datetime.datetime(2026, 11, 1)
# Runs the module and writes its peak RSS (KiB, ru_maxrss from wait4) and exit code to argv[1].
LAUNCHER = (
    "import os, subprocess, sys\n"
    "proc = subprocess.Popen(sys.argv[2:])\n"
    "_pid, status, usage = os.wait4(proc.pid, 0)\n"
    "open(sys.argv[1], 'w').write('%d %d' % (usage.ru_maxrss, os.waitstatus_to_exitcode(status)))\n"
)
DEFAULT = ["seaweedfs:100000:summary", "fake-http:100000:full", "fake-http:100000:summary", "fake-http:1000000:summary",
           "fake-http:1000000:summary:delete"]


class KeySpace(object):
    """``count`` keys under ``prefix``, one every 5 minutes up to END, in key (= time) order."""

    def __init__(self, prefix, count):
        self.prefix, self.count = prefix, count
        self.start = END - (count - 1) * STEP
        self.offset = len(prefix) + len("db-")

    def key(self, i):
        return "%sdb-%s.tar" % (self.prefix, (self.start + i * STEP).strftime(FORMAT))

    def index(self, key):
        when = datetime.datetime.strptime(key[self.offset:self.offset + 16], FORMAT)
        return int((when - self.start).total_seconds()) // int(STEP.total_seconds())


def run_module(endpoint, prefix, output, versions="markers"):
    """Run the module in its own process; return (wall s, peak RSS bytes, result)."""
    args = {
        "s3": {"bucket": BUCKET, "prefix": prefix, "endpoint_url": endpoint, "path_style": True,
               "access_key": "keel-test", "secret_key": "keel-test-secret"},
        "timestamp_from": "name", "name_pattern": PATTERN, "name_time_format": FORMAT, "output": output,
        "s3_versions": versions,
    }
    args.update(POLICY)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "collections"))
    with tempfile.TemporaryFile() as out, tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        start = time.perf_counter()
        # Through a small launcher: Linux keeps a process's peak RSS across exec, so a module
        # started straight from this (large) process would report this process's size.
        subprocess.run([sys.executable, "-c", LAUNCHER, rss_file.name, sys.executable, MODULE, handle.name],
                       stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
        wall = time.perf_counter() - start
        maxrss_kib, returncode = (int(v) for v in rss_file.read().split())
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    os.unlink(handle.name)
    try:
        result = json.loads(text)
    except ValueError:
        raise RuntimeError("module output is not JSON (exit %d):\n%s" % (returncode, text[-3000:]))
    if result.get("failed"):
        raise RuntimeError(result.get("msg"))
    result["_output_bytes"] = len(text)
    return wall, maxrss_kib * 1024, result


HEADER = "%-10s %9s  %-8s %-8s %8s %9s %7s %9s %10s %9s %10s" % (
    "backend", "objects", "output", "versions", "wall s", "requests", "list", "delete", "peak RSS", "deleted", "result")
ROW = "%-10s %9d  %-8s %-8s %8.1f %9d %7d %9d %7.0f MiB %9d %8.0f KiB"


def row(backend, size, output, versions, wall, rss, result):
    requests = result["requests"]
    return ROW % (backend, size, output, versions, wall, sum(requests.values()), requests.get("list", 0), requests.get("delete", 0),
                  rss / 1048576.0, result["counts"]["deleted"], result["_output_bytes"] / 1024.0)


def main():
    runs = [spec.split(":") for spec in (sys.argv[1:] or DEFAULT)]
    rows = []
    print(HEADER, flush=True)
    weed = None
    try:
        for spec in runs:
            backend, size, output = spec[:3]
            versions = spec[3] if len(spec) > 3 else "markers"
            size = int(size)
            prefix = "%s-%d-%s/" % (backend, size, output)
            if versions != "markers" and backend != "fake-http":
                raise SystemExit("s3_versions=%s is measured against fake-http only" % versions)
            space = KeySpace(prefix, size)
            if backend == "seaweedfs":
                if weed is None:
                    weed = seaweedfs()
                    endpoint = weed.__enter__()
                    s3_client(endpoint).create_bucket(Bucket=BUCKET)
                started = time.perf_counter()
                put_many(s3_client(endpoint, max_pool_connections=16), BUCKET, [space.key(i) for i in range(size)], threads=16)
                print("  (filled SeaweedFS with %d objects in %.0f s)" % (size, time.perf_counter() - started), flush=True)
                wall, rss, result = run_module(endpoint, prefix, output)
            elif backend == "fake-http":
                with GeneratedS3Server(BUCKET, space.key, space.index, size,
                                       versioning="Enabled" if versions == "delete" else None) as server:
                    wall, rss, result = run_module(server.endpoint, prefix, output, versions)
                    assert server.requests["list"] == result["requests"]["list"]
                    assert server.remaining() == result["counts"]["kept"]
            else:
                raise SystemExit("unknown backend %r (seaweedfs, fake-http)" % backend)
            rows.append(row(backend, size, output, versions, wall, rss, result))
            print(rows[-1], flush=True)
    finally:
        if weed is not None:
            weed.__exit__(None, None, None)

    print()
    print("backup_rotate, module in its own process; peak RSS = ru_maxrss of that process (os.wait4 in a small launcher); "
          "policy %s; requests = versioning + list + delete" % json.dumps(POLICY))
    print("fake-http = HTTP S3 endpoint over a generated key space (tests/support/fake_s3.py), parsed by boto3; "
          "seaweedfs = real SeaweedFS on loopback")
    print(HEADER)
    for line in rows:
        print(line)


if __name__ == "__main__":
    main()
