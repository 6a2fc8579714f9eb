"""backup_rotate against a real S3-compatible store (SeaweedFS on loopback)."""

import datetime
import json
import os
import subprocess
import sys

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


def listing_of(client, bucket, prefix):
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(obj["Key"] for page in pages for obj in page.get("Contents", ()))


def listing(client, prefix):
    return listing_of(client, BUCKET, prefix)


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
    assert result["requests"] == {"versioning": 1, "list": 1, "delete": 1}

    failed, again = run_module(backup_rotate.main, args(endpoint, "gfs/", keep_daily=7, keep_weekly=4, keep_monthly=12))
    assert not failed and not again["changed"]


def test_listing_pages_and_deletes_batch(run_module, endpoint):
    client = s3_client(endpoint)
    put_many(client, BUCKET, keys_for_days("big/", datetime.datetime(2020, 1, 1), 2500))
    failed, result = run_module(backup_rotate.main, args(endpoint, "big/", keep_last=10))
    assert not failed and result["counts"]["deleted"] == 2490
    assert result["requests"] == {"versioning": 1, "list": 3, "delete": 3}
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


# --- Versioned buckets, summary output and no_log, on the real store ---

VERSIONED = "keel-versioned"


@pytest.fixture(scope="module")
def versioned(endpoint):
    client = s3_client(endpoint)
    client.create_bucket(Bucket=VERSIONED)
    client.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    return client


def put_versions(client, keys, versions=2):
    """Each key written ``versions`` times (sizes 10, 11, ...): the older writes become noncurrent versions."""
    for key in keys:
        for v in range(versions):
            client.put_object(Bucket=VERSIONED, Key=key, Body=b"v" * (10 + v))


def all_versions(client, prefix):
    pages = client.get_paginator("list_object_versions").paginate(Bucket=VERSIONED, Prefix=prefix)
    out = []
    for page in pages:
        out += [(v["Key"], v.get("Size", 0), False) for v in page.get("Versions") or ()]
        out += [(m["Key"], 0, True) for m in page.get("DeleteMarkers") or ()]
    return sorted(out)


def versioned_args(endpoint, prefix, **extra):
    base = args(endpoint, prefix, keep_last=2)
    base["s3"] = dict(base["s3"], bucket=VERSIONED)
    base.update(extra)
    return base


def test_versioned_bucket_markers_mode_reports_markers_and_frees_nothing(run_module, endpoint, versioned):
    # Failed before: bytes_freed counted 5 objects whose data SeaweedFS kept as noncurrent versions.
    keys = keys_for_days("markers/", datetime.datetime(2026, 1, 1), 7)
    put_versions(versioned, keys)
    failed, result = run_module(backup_rotate.main, versioned_args(endpoint, "markers/"))
    assert not failed and len(result["deleted"]) == 5
    assert result["bytes_freed"] == 0
    assert result["versions"] == {"mode": "markers", "status": "Enabled", "markers": 5, "versions_deleted": 0, "hidden": 0}
    stored = all_versions(versioned, "markers/")
    assert sum(1 for _k, _s, marker in stored if marker) == 5 and sum(size for _k, size, _m in stored) == 7 * (10 + 11)
    assert listing_of(versioned, VERSIONED, "markers/") == sorted(keys[-2:])


def test_versioned_bucket_delete_mode_deletes_every_version(run_module, endpoint, versioned):
    # Failed before: s3_versions did not exist; nothing could free the space of a versioned bucket.
    keys = keys_for_days("purge/", datetime.datetime(2026, 1, 1), 7)
    put_versions(versioned, keys, versions=3)
    hidden = "purge/db-20251201T000000Z.tar"  # deleted earlier with a plain delete: only a marker is current
    put_versions(versioned, [hidden], versions=1)
    versioned.delete_object(Bucket=VERSIONED, Key=hidden)
    failed, result = run_module(backup_rotate.main, versioned_args(endpoint, "purge/", s3_versions="delete"))
    assert not failed and len(result["deleted"]) == 5
    assert result["bytes_freed"] == 5 * (10 + 11 + 12)
    assert result["versions"] == {"mode": "delete", "status": "Enabled", "markers": 0, "versions_deleted": 15, "hidden": 1}
    stored = all_versions(versioned, "purge/")
    assert sorted(set(k for k, _s, _m in stored)) == sorted(keys[-2:] + [hidden])
    failed, again = run_module(backup_rotate.main, versioned_args(endpoint, "purge/", s3_versions="delete"))
    assert not failed and not again["changed"]


def test_summary_output_on_the_real_store(run_module, endpoint):
    client = s3_client(endpoint)
    put_many(client, BUCKET, keys_for_days("summary/", datetime.datetime(2024, 1, 1), 1500) + ["summary/notes.txt"])
    failed, result = run_module(backup_rotate.main, args(endpoint, "summary/", keep_daily=7, keep_monthly=6, output="summary"))
    assert not failed and not set(result) & {"kept", "deleted", "reasons", "unmatched"}
    summary = result["summary"]
    assert summary["kept"]["count"] == 12 and summary["deleted"]["count"] == 1488
    assert summary["deleted"]["bytes"] == result["bytes_freed"] == 1488 * len(b"backup")
    assert summary["kept"]["newest"] == "db-20280208T000000Z.tar" and summary["deleted"]["oldest"] == "db-20240101T000000Z.tar"
    assert summary["unmatched"] == {"count": 1, "first": "notes.txt", "last": "notes.txt"}
    assert len(json.dumps(result)) < 4000
    assert len(listing(client, "summary/")) == 13


def test_no_log_secret_never_in_the_output_of_a_real_run(endpoint, versioned, tmp_path):
    """The module in its own process against the real store: success with a warning, then a failure."""
    secret = "sw-secret-" + os.urandom(8).hex()
    put_versions(versioned, keys_for_days("nolog/", datetime.datetime(2026, 1, 1), 4), versions=1)
    runs = [versioned_args(endpoint, "nolog/", _ansible_diff=True),
            dict(versioned_args(endpoint, "nolog/"), s3=dict(versioned_args(endpoint, "")["s3"], bucket="no-such-bucket"))]
    for module_args in runs:
        module_args["s3"] = dict(module_args["s3"], secret_key=secret, session_token=secret + "-token")
        path = tmp_path / "args.json"
        path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
        proc = subprocess.run([sys.executable, backup_rotate.__file__, str(path)], capture_output=True, text=True,
                              timeout=120, check=False, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        result = json.loads(proc.stdout)
        assert result.get("warnings") or result.get("failed")
        assert secret not in proc.stdout + proc.stderr


def test_names_with_offsets_across_the_autumn_dst_hour_on_s3(run_module, endpoint):
    # Failed before: 02:30 CEST and 02:30 CET (2026-10-25, Europe/Berlin) were one hourly bucket.
    client = s3_client(endpoint)
    names = ["db-20261025T013000+0200.tar", "db-20261025T023000+0200.tar", "db-20261025T023000+0100.tar", "db-20261025T033000+0100.tar"]
    put_many(client, BUCKET, ["dst/" + n for n in names])
    module_args = args(endpoint, "dst/", keep_hourly=3, timezone="Europe/Berlin", name_pattern=r"db-(?P<ts>.*)\.tar$",
                       name_time_format="%Y%m%dT%H%M%S%z")
    failed, result = run_module(backup_rotate.main, module_args)
    assert not failed and result["deleted"] == ["db-20261025T013000+0200.tar"]
    assert listing(client, "dst/") == sorted("dst/" + n for n in names[1:])


def test_delete_mode_on_an_unversioned_bucket(run_module, endpoint):
    # s3_versions=delete must work where there are no versions (each object is its "null" version).
    client = s3_client(endpoint)
    put_many(client, BUCKET, keys_for_days("plain/", datetime.datetime(2026, 1, 1), 6))
    failed, result = run_module(backup_rotate.main, args(endpoint, "plain/", keep_last=2, s3_versions="delete"))
    assert not failed and len(result["deleted"]) == 4 and result["bytes_freed"] == 4 * len(b"backup")
    assert result["versions"]["status"] == "Off" and result["versions"]["versions_deleted"] == 4
    assert len(listing(client, "plain/")) == 2
