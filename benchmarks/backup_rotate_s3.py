"""backup_rotate over 10k and 100k S3 objects on SeaweedFS, side by side with a naive run.

For each size, two identical prefixes are filled with hourly "backups" (the time is in the
name). The module (paginated listing, deletes batched 1000 keys a request) rotates one; a naive
rotation (same listing and plan, then one DeleteObject request per object) rotates the other.
Printed per run: wall time, requests issued, peak Python memory (tracemalloc), objects deleted.
Figures only; nothing is asserted.

Usage: .venv/bin/python benchmarks/backup_rotate_s3.py [SIZE ...]   (default: 10000 100000)
"""

import datetime
import json
import os
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "collections"))


from ansible_collections.keel.platform.plugins.module_utils.retention import plan  # noqa: E402
from ansible_collections.keel.platform.plugins.modules import backup_rotate  # noqa: E402
from tests.support.modules import call_module  # noqa: E402
from tests.support.seaweedfs import put_many, s3_client, seaweedfs  # noqa: E402

BUCKET = "keel-bench"
POLICY = {"keep_last": 24, "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 12, "keep_yearly": 3}
PATTERN = r"db-(?P<ts>\d{8}T\d{6}Z)\.tar$"
FORMAT = "%Y%m%dT%H%M%SZ"


def keys(prefix, count):
    start = datetime.datetime(2014, 1, 1)
    return ["%sdb-%s.tar" % (prefix, (start + datetime.timedelta(hours=i)).strftime(FORMAT)) for i in range(count)]


class CountingClient(object):
    """Wraps a boto3 client and counts the requests made through it."""

    def __init__(self, client):
        self.client = client
        self.requests = {}

    def __getattr__(self, name):
        method = getattr(self.client, name)

        def call(*args, **kwargs):
            self.requests[name] = self.requests.get(name, 0) + 1
            return method(*args, **kwargs)

        return call


def run_module(endpoint, prefix):
    """The module, as Ansible would run it; returns its result."""
    args = {
        "s3": {"bucket": BUCKET, "prefix": prefix, "endpoint_url": endpoint, "path_style": True,
               "access_key": "keel-test", "secret_key": "keel-test-secret"},
        "timestamp_from": "name", "name_pattern": PATTERN, "name_time_format": FORMAT,
    }
    args.update(POLICY)
    failed, result = call_module(backup_rotate.main, args)
    if failed:
        raise RuntimeError(result["msg"])
    return sum(result["requests"].values()), result["counts"]["deleted"]


def run_naive(endpoint, prefix):
    """Same listing and plan, then one DeleteObject per object."""
    from ansible_collections.keel.platform.plugins.module_utils.backup_storage import compile_pattern, name_timestamp

    client = CountingClient(s3_client(endpoint))
    pattern = compile_pattern(PATTERN)
    artifacts = []
    for page in client.client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        client.requests["list_objects_v2"] = client.requests.get("list_objects_v2", 0) + 1
        for obj in page.get("Contents", ()):
            name = obj["Key"][len(prefix):]
            artifacts.append((name, name_timestamp(name, pattern, FORMAT, datetime.timezone.utc), obj["Size"]))
    decision = plan(artifacts, POLICY, now=datetime.datetime.now(datetime.timezone.utc))
    for name in decision["delete"]:
        client.delete_object(Bucket=BUCKET, Key=prefix + name)
    return sum(client.requests.values()), len(decision["delete"])


def measure(func, *args):
    tracemalloc.start()
    start = time.perf_counter()
    requests, deleted = func(*args)
    wall = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return wall, requests, peak, deleted


HEADER = "%8s  %-26s %10s %10s %12s %9s" % ("objects", "run", "wall s", "requests", "peak MiB", "deleted")
ROW = "%8d  %-26s %10.1f %10d"


def main():
    sizes = [int(a) for a in sys.argv[1:]] or [10000, 100000]
    rows = []
    with seaweedfs() as endpoint:
        client = s3_client(endpoint, max_pool_connections=16)
        client.create_bucket(Bucket=BUCKET)
        print(HEADER, flush=True)
        for size in sizes:
            start = time.perf_counter()
            for kind in ("module", "naive"):
                put_many(client, BUCKET, keys("%s-%d/" % (kind, size), size), threads=16)
            print("filled 2 x %d objects in %.0f s" % (size, time.perf_counter() - start), flush=True)
            for name, func, prefix in (("backup_rotate (batched)", run_module, "module"), ("naive (1 request/object)", run_naive, "naive")):
                rows.append((size, name) + measure(func, endpoint, "%s-%d/" % (prefix, size)))
                print(ROW % rows[-1][:4] + " %12.1f %9d" % (rows[-1][4] / 1048576.0, rows[-1][5]), flush=True)

    print()
    print("backup_rotate on SeaweedFS (S3 API on loopback), policy %s" % json.dumps(POLICY))
    print(HEADER)
    for size, name, wall, requests, peak, deleted in rows:
        print(ROW % (size, name, wall, requests) + " %12.1f %9d" % (peak / 1048576.0, deleted))


if __name__ == "__main__":
    main()
