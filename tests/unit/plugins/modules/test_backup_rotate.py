import datetime
import os

import pytest

from ansible_collections.keel.platform.plugins.module_utils import backup_storage
from ansible_collections.keel.platform.plugins.modules import backup_rotate

DAY = 86400


@pytest.fixture
def backups(tmp_path):
    """Ten daily dumps (newest today) plus a file that is not a backup."""
    now = datetime.datetime.now(datetime.timezone.utc).timestamp()
    for i in range(10):
        path = tmp_path / ("db-%02d.sql.gz" % i)
        path.write_bytes(b"x" * (100 + i))
        os.utime(path, (now - (9 - i) * DAY, now - (9 - i) * DAY))
    (tmp_path / "README").write_text("not a backup")
    return tmp_path


def test_deletes_by_policy_and_reports(run_module, backups):
    failed, result = run_module(backup_rotate.main, {"path": str(backups), "glob": "*.sql.gz", "keep_last": 3})
    assert not failed and result["changed"]
    assert result["kept"] == ["db-09.sql.gz", "db-08.sql.gz", "db-07.sql.gz"]
    assert len(result["deleted"]) == 7 and result["bytes_freed"] == sum(100 + i for i in range(7))
    assert sorted(os.listdir(backups)) == ["README", "db-07.sql.gz", "db-08.sql.gz", "db-09.sql.gz"]
    assert result["counts"]["total"] == 10 and result["counts"]["deleted"] == 7


def test_second_run_changes_nothing(run_module, backups):
    run_module(backup_rotate.main, {"path": str(backups), "glob": "*.sql.gz", "keep_daily": 4})
    failed, result = run_module(backup_rotate.main, {"path": str(backups), "glob": "*.sql.gz", "keep_daily": 4})
    assert not failed and not result["changed"] and result["deleted"] == []


def test_check_mode_deletes_nothing_and_gives_the_plan_and_diff(run_module, backups):
    before = sorted(os.listdir(backups))
    failed, result = run_module(
        backup_rotate.main,
        {"path": str(backups), "glob": "*.sql.gz", "keep_last": 2, "_ansible_check_mode": True, "_ansible_diff": True},
    )
    assert not failed and result["changed"] and len(result["deleted"]) == 8
    assert sorted(os.listdir(backups)) == before
    assert result["diff"]["after"] == "db-08.sql.gz\ndb-09.sql.gz\n"
    assert result["diff"]["before"].count("\n") == 10


def test_min_age_protects_recent_dumps(run_module, backups):
    failed, result = run_module(backup_rotate.main, {"path": str(backups), "glob": "*.sql.gz", "keep_last": 1, "min_age": "4d"})
    assert not failed
    # Ages 0..3 days (plus a little) are younger than 4 days; age 4 days is not (it is a few ms older).
    assert result["kept"] == ["db-09.sql.gz", "db-08.sql.gz", "db-07.sql.gz", "db-06.sql.gz"]


def test_timestamps_from_names_and_unmatched_names_are_left_alone(run_module, tmp_path):
    for name in ("app-20260101T000000Z.tar", "app-20260102T000000Z.tar", "app-20260103T000000Z.tar", "app-latest.tar"):
        (tmp_path / name).write_text(name)
    failed, result = run_module(
        backup_rotate.main,
        {
            "path": str(tmp_path),
            "timestamp_from": "name",
            "name_pattern": r"app-(?P<ts>\d{8}T\d{6}Z)\.tar$",
            "name_time_format": "%Y%m%dT%H%M%SZ",
            "keep_last": 1,
        },
    )
    assert not failed
    assert result["kept"] == ["app-20260103T000000Z.tar"] and result["unmatched"] == ["app-latest.tar"]
    assert (tmp_path / "app-latest.tar").exists() and not (tmp_path / "app-20260101T000000Z.tar").exists()


@pytest.mark.parametrize(
    "args,message",
    [
        ({"keep_last": 0}, "keeps nothing"),
        ({"keep_daily": -2}, "keep_daily: must not be negative"),
        ({"keep_last": 1, "min_age": "soon"}, "min_age: 'soon' is not a duration"),
        ({"keep_last": 1, "timezone": "Mars/Olympus"}, "unknown timezone"),
        ({"keep_last": 1, "timestamp_from": "name"}, "timestamp_from is name but all of the following are missing"),
        ({"keep_last": 1, "timestamp_from": "name", "name_pattern": "(", "name_time_format": "%Y"}, "not a valid regular expression"),
    ],
)
def test_bad_input_fails_and_deletes_nothing(run_module, backups, args, message):
    before = sorted(os.listdir(backups))
    args = dict(args, path=str(backups))
    if "keep_last" not in args and "keep_daily" not in args:
        args["keep_last"] = 1
    failed, result = run_module(backup_rotate.main, args)
    assert failed and message in result["msg"]
    assert sorted(os.listdir(backups)) == before


def test_path_and_s3_are_exclusive_and_one_is_required(run_module, tmp_path):
    failed, result = run_module(backup_rotate.main, {"keep_last": 1})
    assert failed and "one of the following is required: path, s3" in result["msg"]
    failed, result = run_module(backup_rotate.main, {"keep_last": 1, "path": str(tmp_path), "s3": {"bucket": "b"}})
    assert failed and "mutually exclusive" in result["msg"]
    failed, result = run_module(backup_rotate.main, {"keep_last": 1, "path": str(tmp_path / "missing")})
    assert failed and "is not a directory" in result["msg"]


class FakeS3(object):
    """Enough of a boto3 S3 client to check paging and batching."""

    def __init__(self, keys, page_size=1000):
        start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        self.objects = dict((k, start + datetime.timedelta(hours=i)) for i, k in enumerate(keys))
        self.page_size = page_size
        self.calls = []

    def list_objects_v2(self, Bucket, Prefix, MaxKeys, Delimiter=None, ContinuationToken=None):
        self.calls.append("list")
        keys = sorted(
            k for k in self.objects if k.startswith(Prefix) and not (Delimiter and Delimiter in k[len(Prefix):])
        )
        start = int(ContinuationToken or 0)
        page = keys[start:start + min(MaxKeys, self.page_size)]
        more = start + len(page) < len(keys)
        out = {"Contents": [{"Key": k, "LastModified": self.objects[k], "Size": 10} for k in page], "IsTruncated": more}
        if more:
            out["NextContinuationToken"] = str(start + len(page))
        return out

    def delete_objects(self, Bucket, Delete):
        assert len(Delete["Objects"]) <= 1000
        self.calls.append("delete")
        for obj in Delete["Objects"]:
            del self.objects[obj["Key"]]
        return {}


def test_s3_store_pages_and_batches():
    client = FakeS3(["p/%05d" % i for i in range(2500)] + ["other/x"])
    store = backup_storage.S3Store(client, "bucket", "p/")
    listed = list(store.list())
    assert len(listed) == 2500 and listed[0][0] == "00000"
    store.delete([name for name, _w, _s in listed[:2100]])
    assert store.requests == {"list": 3, "delete": 3}
    assert len(client.objects) == 401


def test_s3_module_path_uses_the_store(run_module, monkeypatch):
    client = FakeS3(["b/%03d" % i for i in range(30)])
    monkeypatch.setattr(backup_rotate, "s3_client", lambda params: client)
    monkeypatch.setattr(backup_rotate, "BOTO3_IMPORT_ERROR", None)
    failed, result = run_module(backup_rotate.main, {"s3": {"bucket": "bk", "prefix": "b/", "secret_key": "s3cr3t"}, "keep_last": 5})
    assert not failed and result["counts"]["deleted"] == 25 and result["requests"] == {"list": 1, "delete": 1}
    assert "s3cr3t" not in str(result)


def test_s3_listing_is_one_folder_not_recursive_and_not_a_string_prefix():
    # Failed before: prefix "app" matched "app2/..." and the listing descended into "app/old/...".
    client = FakeS3(["app/a.tar", "app/old/b.tar", "app2/c.tar"])
    names = [item[0] for item in backup_storage.S3Store(client, "b", prefix="app").list()]
    assert names == ["a.tar"]


class TruncatedWithoutToken(FakeS3):
    def list_objects_v2(self, **kwargs):
        self.calls.append("list")
        if len(self.calls) > 3:
            raise AssertionError("listing loops")
        return {"Contents": [], "IsTruncated": True}


def test_s3_listing_truncated_without_token_fails():
    # Failed before: the listing restarted from the first page forever.
    client = TruncatedWithoutToken([])
    with pytest.raises(backup_storage.StorageError, match="no continuation token"):
        list(backup_storage.S3Store(client, "b", prefix="app").list())


class FailingBatch(FakeS3):
    """The second batch fails: one key refused (per-key Errors), or the whole request."""

    def __init__(self, keys, whole):
        FakeS3.__init__(self, keys)
        self.whole = whole

    def delete_objects(self, Bucket, Delete):
        if self.calls.count("delete") == 1:
            self.calls.append("delete")
            if self.whole:
                raise RuntimeError("connection reset")
            keys = [o["Key"] for o in Delete["Objects"]]
            for k in keys[1:]:
                del self.objects[k]
            return {"Errors": [{"Key": keys[0], "Code": "AccessDenied", "Message": "no"}]}
        return FakeS3.delete_objects(self, Bucket, Delete)


@pytest.mark.parametrize("whole", [False, True])
def test_s3_delete_failure_reports_what_was_really_deleted(whole):
    # Failed before: the error carried no record of the batches already deleted nor of the failed keys.
    client = FailingBatch(["p/%05d" % i for i in range(3000)], whole)
    names = ["%05d" % i for i in range(3000)]
    with pytest.raises(backup_storage.StorageError) as info:
        backup_storage.S3Store(client, "b", prefix="p").delete(names)
    if whole:
        assert info.value.deleted == names[:1000]
        assert len(info.value.failed) == 1000 and "connection reset" in info.value.failed[0]["error"]
    else:
        assert info.value.deleted == names[:1000] + names[1001:2000]
        assert info.value.failed == [{"name": "01000", "error": "AccessDenied: no"}]


def test_literal_z_designator_is_utc_not_local():
    # Failed before: "...Z" names were read in the local zone given by tz.
    pattern = backup_storage.compile_pattern(r"(\d{8}T\d{6}Z)")
    local = datetime.timezone(datetime.timedelta(hours=2))
    when = backup_storage.name_timestamp("db-20260301T120000Z.sql", pattern, "%Y%m%dT%H%M%SZ", local)
    assert when == datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.timezone.utc)
