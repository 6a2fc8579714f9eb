"""backup_rotate against a real S3-compatible store (SeaweedFS on loopback)."""

import datetime

import pytest

from ansible_collections.keel.platform.plugins.modules import backup_rotate
from tests.support.seaweedfs import put_many, s3_client, seaweedfs

BUCKET = "keel-backups"


@pytest.fixture(scope="module")
def endpoint():
    with seaweedfs() as url:
        s3_client(url).create_bucket(Bucket=BUCKET)
        yield url


def keys_for_days(prefix, start, days):
    """One archive a day, the time in the name (all objects are uploaded 'now')."""
    return ["%sdb-%s.tar" % (prefix, (start + datetime.timedelta(days=i)).strftime("%Y%m%dT%H%M%SZ")) for i in range(days)]


def listing(client, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", ()))


def args(endpoint, prefix, **policy):
    base = {
        "s3": {"bucket": BUCKET, "prefix": prefix, "endpoint_url": endpoint, "path_style": True,
               "access_key": "keel-test", "secret_key": "keel-test-secret"},
        "timestamp_from": "name",
        "name_pattern": r"db-(?P<ts>\d{8}T\d{6}Z)\.tar$",
        "name_time_format": "%Y%m%dT%H%M%SZ",
    }
    base.update(policy)
    return base


def test_gfs_rotation_on_s3(run_module, endpoint):
    client = s3_client(endpoint)
    keys = keys_for_days("gfs/", datetime.datetime(2025, 1, 1, 3), 400) + ["gfs/notes.txt"]
    put_many(client, BUCKET, keys)

    # Check mode first: the exact plan, nothing deleted.
    failed, planned = run_module(backup_rotate.main, dict(args(endpoint, "gfs/", keep_daily=7, keep_weekly=4, keep_monthly=12), _ansible_check_mode=True))
    assert not failed and planned["changed"]
    assert len(listing(client, "gfs/")) == 401

    failed, result = run_module(backup_rotate.main, args(endpoint, "gfs/", keep_daily=7, keep_weekly=4, keep_monthly=12))
    assert not failed and result["deleted"] == planned["deleted"] and result["kept"] == planned["kept"]
    remaining = listing(client, "gfs/")
    assert remaining == sorted(["gfs/" + k for k in result["kept"]] + ["gfs/notes.txt"])
    assert result["unmatched"] == ["notes.txt"]
    # 7 days + 3 more weeks + 12 months less overlaps: the newest of Feb 2026 back to Mar 2025.
    assert result["counts"]["daily"] == 7 and result["counts"]["monthly"] == 12
    assert "gfs/db-20260204T030000Z.tar" in remaining and "gfs/db-20250131T030000Z.tar" not in remaining
    assert result["requests"] == {"list": 1, "delete": 1}

    failed, again = run_module(backup_rotate.main, args(endpoint, "gfs/", keep_daily=7, keep_weekly=4, keep_monthly=12))
    assert not failed and not again["changed"]


def test_listing_pages_and_deletes_batch(run_module, endpoint):
    client = s3_client(endpoint)
    put_many(client, BUCKET, keys_for_days("big/", datetime.datetime(2020, 1, 1), 2500))
    failed, result = run_module(backup_rotate.main, args(endpoint, "big/", keep_last=10))
    assert not failed and result["counts"]["deleted"] == 2490
    assert result["requests"] == {"list": 3, "delete": 3}
    assert len(listing(client, "big/")) == 10


def test_missing_bucket_is_a_clear_error(run_module, endpoint):
    s3 = {"bucket": "no-such-bucket", "endpoint_url": endpoint, "path_style": True,
          "access_key": "missing-bucket-key", "secret_key": "never-printed"}
    failed, result = run_module(backup_rotate.main, dict(args(endpoint, ""), s3=s3, keep_last=1))
    assert failed and "cannot list s3://no-such-bucket/" in result["msg"] and "NoSuchBucket" in result["msg"]
    assert "never-printed" not in str(result)


def test_unreachable_endpoint_is_a_clear_error(run_module):
    failed, result = run_module(backup_rotate.main, {"s3": {"bucket": BUCKET, "endpoint_url": "http://127.0.0.1:9", "path_style": True,
                                                            "access_key": "unreachable-key", "secret_key": "unreachable-secret"}, "keep_last": 1})
    assert failed and "cannot list s3://%s/" % BUCKET in result["msg"]
