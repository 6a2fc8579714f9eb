import datetime
import json
import os
import re
import subprocess
import sys

import pytest
from ansible.module_utils.common import warnings as ansible_warnings

from ansible_collections.keel.platform.plugins.module_utils import backup_storage
from ansible_collections.keel.platform.plugins.modules import backup_rotate
from tests.support.fake_s3 import FakeS3Client, GeneratedS3Server

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

    def get_bucket_versioning(self, Bucket):
        return {}

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
    assert not failed and result["counts"]["deleted"] == 25
    assert result["requests"] == {"versioning": 1, "list": 1, "delete": 1}
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


# --- Versioned buckets, faults and summary output, against tests/support/fake_s3.FakeS3Client ---

def s3_args(**extra):
    args = {"s3": {"bucket": "bucket", "prefix": "p/", "access_key": "AKIAFAKE", "secret_key": "fake-secret-0451"}, "keep_last": 2}
    args.update(extra)
    return args


@pytest.fixture
def fake(monkeypatch):
    """A FakeS3Client the module uses; the test sets its versioning and faults."""
    client = FakeS3Client()
    # Modules run in this process: start each test without the warnings of earlier runs.
    monkeypatch.setattr(ansible_warnings, "_global_warnings", {})
    monkeypatch.setattr(backup_rotate, "s3_client", lambda params: client)
    monkeypatch.setattr(backup_rotate, "BOTO3_IMPORT_ERROR", None)
    return client


def fill(client, count, versions=1, size=100):
    for i in range(count):
        for v in range(versions):
            client.put("p/db-%04d.tar" % i, size=size + v, when=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
                       + datetime.timedelta(hours=i, minutes=v))


@pytest.mark.parametrize("status", ["Enabled", "Suspended"])
def test_versioned_bucket_markers_mode_says_only_markers_were_added_and_frees_nothing(run_module, fake, status):
    # Failed before: bytes_freed counted the sizes of objects that were only hidden by delete markers.
    # The objects were written while versioning was on (a suspended bucket keeps those versions).
    fake.versioning = "Enabled"
    fill(fake, 10)
    fake.versioning = status
    stored = fake.stored_bytes()
    failed, result = run_module(backup_rotate.main, s3_args())
    assert not failed and result["changed"] and len(result["deleted"]) == 8
    assert result["bytes_freed"] == 0
    assert result["versions"] == {"mode": "markers", "status": status, "markers": 8, "versions_deleted": 0, "hidden": 0}
    assert "only added delete markers" in json.dumps(result["warnings"])
    assert fake.current() == ["p/db-0008.tar", "p/db-0009.tar"]
    assert fake.stored_bytes() == stored  # nothing was freed, as reported
    # Check mode predicts the same.
    fill(fake, 10)
    failed, planned = run_module(backup_rotate.main, s3_args(_ansible_check_mode=True))
    assert planned["bytes_freed"] == 0 and planned["versions"]["markers"] == 8


def test_unversioned_bucket_frees_what_it_deletes(run_module, fake):
    fill(fake, 10)
    failed, result = run_module(backup_rotate.main, s3_args())
    assert not failed and result["bytes_freed"] == 800 and result["versions"]["markers"] == 0
    assert result["versions"]["status"] == "Off" and "warnings" not in result
    assert fake.stored_bytes() == 200


def test_versioned_bucket_delete_mode_deletes_every_version_and_counts_their_bytes(run_module, fake):
    # Failed before: there was no way to delete the versions (s3_versions did not exist).
    fake.versioning = "Enabled"
    fake.page_size = 7  # versions of one key straddle listing pages
    fill(fake, 600, versions=2)  # 1200 versions: an artifact's versions straddle two delete batches
    fake.put("p/hidden.tar", size=5)
    fake.delete_objects(Bucket="bucket", Delete={"Objects": [{"Key": "p/hidden.tar"}]})  # current version: a marker
    fake.calls = []
    failed, result = run_module(backup_rotate.main, s3_args(s3_versions="delete"))
    assert not failed and len(result["deleted"]) == 598
    assert result["bytes_freed"] == 598 * (100 + 101)
    assert result["versions"] == {"mode": "delete", "status": "Enabled", "markers": 0, "versions_deleted": 1196, "hidden": 1}
    assert sorted(fake.keys) == ["p/db-0598.tar", "p/db-0599.tar", "p/hidden.tar"]
    assert len(fake.keys["p/db-0599.tar"]) == 2 and len(fake.keys["p/hidden.tar"]) == 2
    assert result["requests"]["delete"] == 2 and fake.calls.count("delete") == 2
    failed, again = run_module(backup_rotate.main, s3_args(s3_versions="delete"))
    assert not failed and not again["changed"]


def test_versions_delete_mode_partial_failure_reports_only_what_was_freed(run_module, fake):
    fake.versioning = "Enabled"
    fill(fake, 10, versions=3)
    fake.refuse = {"p/db-0005.tar"}
    failed, result = run_module(backup_rotate.main, s3_args(s3_versions="delete"))
    assert failed and "db-0005.tar" in result["msg"] and "AccessDenied" in result["msg"]
    assert "db-0005.tar" not in result["deleted"] and len(result["deleted"]) == 7
    assert result["not_deleted"] == [{"name": "db-0005.tar", "error": "version v000018: AccessDenied: Access Denied"}]
    assert result["bytes_freed"] == 7 * (100 + 101 + 102)
    assert len(fake.keys["p/db-0005.tar"]) == 3


def test_listing_error_on_a_later_page_fails_and_deletes_nothing(run_module, fake):
    fake.page_size = 3
    fill(fake, 10)
    fake.fail_list_page = 2
    failed, result = run_module(backup_rotate.main, s3_args())
    assert failed and "cannot list s3://bucket/p/: InternalError" in result["msg"]
    assert result["requests"]["list"] == 2 and "delete" not in fake.calls and len(fake.current()) == 10


def test_versioning_unreadable_still_reports_markers_from_the_delete_answers(run_module, fake):
    fake.versioning = "Enabled"
    fake.fail_versioning = True
    fill(fake, 5)
    failed, result = run_module(backup_rotate.main, s3_args())
    assert not failed and result["versions"]["status"] == "unknown"
    assert result["bytes_freed"] == 0 and result["versions"]["markers"] == 3
    assert "cannot read the versioning" in json.dumps(result["warnings"])


@pytest.mark.parametrize("output", ["full", "summary"])
def test_whole_delete_request_failing_reports_earlier_batches(run_module, fake, output):
    fill(fake, 3002)
    fake.fail_delete_call = 2
    failed, result = run_module(backup_rotate.main, s3_args(output=output))
    assert failed and "SlowDown" in result["msg"]
    assert result["counts"]["deleted"] == 1000 and result["summary"]["deleted"]["count"] == 1000
    assert result["bytes_freed"] == 1000 * 100 and result["not_deleted_count"] == 1000
    assert len(result["not_deleted"]) == (1000 if output == "full" else 100)
    assert len(fake.current()) == 2002


def test_summary_output_is_bounded_and_agrees_with_full(run_module, fake):
    fill(fake, 3000)
    fake.put("p/notes.txt")
    args = s3_args(keep_last=3, keep_daily=5)
    failed, planned_full = run_module(backup_rotate.main, dict(args, _ansible_check_mode=True))
    failed, planned = run_module(backup_rotate.main, dict(args, output="summary", _ansible_check_mode=True, _ansible_diff=True))
    assert not failed and planned["summary"] == planned_full["summary"]
    assert not set(planned) & {"kept", "deleted", "reasons", "unmatched"}
    summary = planned["summary"]
    assert summary["kept"]["count"] == len(planned_full["kept"]) == 7
    assert summary["kept"]["newest"] == "db-2999.tar" and summary["kept"]["oldest"] == planned_full["kept"][-1]
    assert summary["deleted"] == {"count": 2994, "bytes": 2993 * 100 + 10, "newest": planned_full["deleted"][0], "oldest": "db-0000.tar"}
    assert summary["rules"]["daily"]["count"] == 5 and summary["rules"]["last"]["oldest"] == "db-2997.tar"
    assert summary["unmatched"] == {"count": 0, "first": None, "last": None} and "notes.txt" in planned_full["deleted"]
    assert planned["diff"]["before"] == "3001 artifacts\n"
    small = len(json.dumps(planned))
    fill(fake, 9000)
    failed, bigger = run_module(backup_rotate.main, dict(args, output="summary", _ansible_check_mode=True, _ansible_diff=True))
    assert bigger["counts"]["total"] == 9001 and abs(len(json.dumps(bigger)) - small) < 200


def test_no_log_secret_never_in_the_modules_output(tmp_path):
    """Run the module as Ansible does (its own process) with a real secret; search everything it prints."""
    secret = "kS3cr3t-" + os.urandom(8).hex()
    keys = ["p/db-%04d.tar" % i for i in range(50)]
    for versioning, refuse in ((None, False), ("Enabled", False), (None, True)):
        with GeneratedS3Server("bucket", keys.__getitem__, keys.index, len(keys), versioning=versioning, refuse_deletes=refuse) as server:
            args = {"ANSIBLE_MODULE_ARGS": {
                "s3": {"bucket": "bucket", "prefix": "p", "endpoint_url": server.endpoint, "path_style": True,
                       "access_key": "AKIA" + secret[-8:], "secret_key": secret, "session_token": secret + "-token"},
                "keep_last": 5, "_ansible_diff": True}}
            path = tmp_path / "args.json"
            path.write_text(json.dumps(args))
            proc = subprocess.run([sys.executable, backup_rotate.__file__, str(path)], capture_output=True, text=True, timeout=120, check=False,
                                  env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
        output = proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["invocation"]["module_args"]["s3"]["secret_key"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"
        if versioning:
            assert result["warnings"] and result["bytes_freed"] == 0
        if refuse:
            assert result["failed"] is True and "AccessDenied" in result["msg"] and result["not_deleted_count"] == 45
        else:
            assert not result.get("failed") and len(result["deleted"]) == 45
        assert secret not in output and secret[-8:] not in output


# --- Zones in names, and the documented example ---

@pytest.mark.parametrize(
    "text,time_format,expected",
    [
        ("db-20261025T023000+0200.sql", "%Y%m%dT%H%M%S%z", datetime.datetime(2026, 10, 25, 0, 30, tzinfo=datetime.timezone.utc)),
        ("db-20261025T023000+0100.sql", "%Y%m%dT%H%M%S%z", datetime.datetime(2026, 10, 25, 1, 30, tzinfo=datetime.timezone.utc)),
        ("db-2026-10-25T02:30:00-05:30.sql", "%Y-%m-%dT%H:%M:%S%z", datetime.datetime(2026, 10, 25, 8, 0, tzinfo=datetime.timezone.utc)),
        ("db-20261025T023000Z.sql", "%Y%m%dT%H%M%S%z", datetime.datetime(2026, 10, 25, 2, 30, tzinfo=datetime.timezone.utc)),
        ("db-20261025T023000 UTC.sql", "%Y%m%dT%H%M%S %Z", datetime.datetime(2026, 10, 25, 2, 30, tzinfo=datetime.timezone.utc)),
    ],
)
def test_zone_designators_are_read_in_their_zone(text, time_format, expected):
    # %Z with UTC failed before (the zone was dropped and the time read in tz); the %z cases are regression guards.
    pattern = backup_storage.compile_pattern(r"db-(.*)\.sql")
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    assert backup_storage.name_timestamp(text, pattern, time_format, tokyo) == expected


def test_zone_names_other_than_utc_are_unmatched_not_guessed():
    pattern = backup_storage.compile_pattern(r"db-(.*)\.sql")
    for name in ("CET", "EST"):
        assert backup_storage.name_timestamp("db-20261025T023000 %s.sql" % name, pattern, "%Y%m%dT%H%M%S %Z", datetime.timezone.utc) is None


def test_offsets_in_names_make_two_hourly_buckets_in_the_dst_hour(run_module, tmp_path):
    # Failed before: both 02:30 dumps (CEST and CET, named with their offsets) were one hourly bucket.
    for name in ("db-20261025T013000+0200", "db-20261025T023000+0200", "db-20261025T023000+0100", "db-20261025T033000+0100"):
        (tmp_path / (name + ".sql")).write_text("x")
    failed, result = run_module(backup_rotate.main, {
        "path": str(tmp_path), "timestamp_from": "name", "name_pattern": r"db-(.*)\.sql$",
        "name_time_format": "%Y%m%dT%H%M%S%z", "keep_hourly": 3, "timezone": "Europe/Berlin"})
    assert not failed
    assert result["kept"] == ["db-20261025T033000+0100.sql", "db-20261025T023000+0100.sql", "db-20261025T023000+0200.sql"]
    assert result["deleted"] == ["db-20261025T013000+0200.sql"]


def documented_tasks():
    import yaml

    return yaml.safe_load(backup_rotate.EXAMPLES)


def test_the_documented_dst_example_gives_its_documented_result(run_module, tmp_path):
    """Run the EXAMPLES task on the files its comment lists; check the EXAMPLES assert that follows it."""
    import jinja2

    tasks = documented_tasks()
    index = next(i for i, t in enumerate(tasks) if t["name"].startswith("Keep the last 4 hours"))
    task, check = tasks[index], tasks[index + 1]
    args = dict(task["keel.platform.backup_rotate"])
    comment = backup_rotate.EXAMPLES.split(task["name"], maxsplit=1)[0].rsplit("\n\n", 1)[-1]
    names = re.findall(r"db-\d{8}T\d{6}Z\.sql\.gz", comment)
    assert len(names) == 5
    for name in names:
        (tmp_path / name).write_bytes(b"dump")
    (tmp_path / "README").write_text("not a dump")
    args["path"] = str(tmp_path)
    failed, result = run_module(backup_rotate.main, args)
    assert not failed
    env = jinja2.Environment()
    for expression in check["ansible.builtin.assert"]["that"]:
        assert env.compile_expression(expression)(**{task["register"]: result}), expression
    assert sorted(os.listdir(tmp_path)) == sorted(["README"] + result["kept"])


def test_every_example_uses_only_documented_options():
    options = set(backup_rotate.argument_spec())
    for task in documented_tasks():
        args = task.get("keel.platform.backup_rotate")
        if args:
            assert set(args) <= options, task["name"]
            assert set(args.get("s3") or {}) <= set(backup_rotate.S3_OPTIONS), task["name"]


def test_fast_lastmodified_parser_agrees_with_botocore():
    from botocore.utils import parse_timestamp

    for text in ("2026-11-01T00:00:00.000Z", "2026-11-01T23:59:59Z", "2026-03-29T01:30:00.123+02:00", "Sun, 01 Nov 2026 00:00:00 GMT"):
        assert backup_rotate.iso_timestamp(text) == parse_timestamp(text)


def test_names_buffer_behaves_like_a_list_of_str():
    names = backup_storage.Names()
    items = ["db-1.tar", "", "ünïcode-✓", "raw-\udcff-bytes", "z"]
    for item in items:
        names.append(item)
    assert len(names) == 5 and list(names) == items and names[-1] == "z" and names[1:3] == items[1:3]
    assert sorted(names) == sorted(items)


def test_local_delete_failure_reports_what_was_deleted_before(tmp_path, monkeypatch):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_text(name)
    real_remove = os.remove

    def remove(path):
        if path.endswith("/b"):
            raise PermissionError(13, "Permission denied", path)
        real_remove(path)

    monkeypatch.setattr(backup_storage.os, "remove", remove)
    store = backup_storage.LocalStore(str(tmp_path))
    with pytest.raises(backup_storage.StorageError) as info:
        store.delete(["a", "b", "c"], [1, 2, 3])
    assert info.value.deleted == ["a"] and list(info.value.report.positions) == [0] and info.value.report.bytes_freed == 1
    assert info.value.failed[0]["name"] == "b"


def test_local_file_already_gone_at_delete_time_counts_as_deleted(tmp_path):
    # Failed before: a rotate running at the same time deleted "b" first and this run failed.
    for name in ("a", "c"):
        (tmp_path / name).write_text(name)
    report = backup_storage.LocalStore(str(tmp_path)).delete(["a", "b", "c"], [1, 2, 3])
    assert report.deleted == ["a", "b", "c"] and list(report.positions) == [0, 1, 2] and not report.failed
    # Its bytes were freed by whoever deleted it.
    assert report.bytes_freed == 4 and os.listdir(tmp_path) == []


def test_local_file_vanishing_during_listing_is_skipped(tmp_path):
    # Failed before: FileNotFoundError from the stat escaped as a traceback.
    for i in range(5):
        (tmp_path / ("db-%d.tar" % i)).write_text("x")
    listing = backup_storage.LocalStore(str(tmp_path)).list()
    first = next(listing)
    for i in range(5):
        if "db-%d.tar" % i != first[0]:
            (tmp_path / ("db-%d.tar" % i)).unlink()
    assert list(listing) == []


def test_optional_ts_group_not_taking_part_is_unmatched(run_module, tmp_path):
    # Failed before: strptime(None) raised TypeError.
    (tmp_path / "db-.tar").write_text("x")
    (tmp_path / "db-20260101.tar").write_text("x")
    failed, result = run_module(backup_rotate.main, dict(path=str(tmp_path), keep_last=1, timestamp_from="name",
                                                         name_pattern=r"db-(?P<ts>\d+)?\.tar", name_time_format="%Y%m%d"))
    assert not failed and result["unmatched"] == ["db-.tar"] and result["kept"] == ["db-20260101.tar"]


def test_time_outside_the_utc_range_is_unmatched(run_module, tmp_path):
    # Failed before: 9999-12-31T23:59:59-0500 is in year 10000 in UTC: ValueError traceback.
    (tmp_path / "db-99991231T235959-0500.tar").write_text("x")
    (tmp_path / "db-20260101T000000+0000.tar").write_text("x")
    failed, result = run_module(backup_rotate.main, dict(path=str(tmp_path), keep_last=1, timestamp_from="name",
                                                         name_pattern=r"db-(?P<ts>[^.]+)\.tar", name_time_format="%Y%m%dT%H%M%S%z",
                                                         _ansible_check_mode=True))
    assert not failed and result["unmatched"] == ["db-99991231T235959-0500.tar"]


@pytest.mark.parametrize("s3", [
    dict(endpoint_url="not a url"),
    dict(endpoint_url="http://127.0.0.1:1", region="us east 1"),
])
def test_bad_endpoint_or_region_fails_cleanly(run_module, s3):
    # Failed before: ValueError / InvalidRegionError tracebacks from the client's creation.
    s3 = dict(s3, bucket="b", access_key="AK", secret_key="zq-sec-11111")
    failed, result = run_module(backup_rotate.main, dict(keep_last=1, s3=s3))
    text = json.dumps(result)
    assert failed and "cannot set up the S3 client" in result["msg"]
    assert "Traceback" not in text and "zq-sec" not in text


class RepeatingToken(FakeS3):
    def list_objects_v2(self, **kwargs):
        self.calls.append("list")
        if len(self.calls) > 50:
            raise AssertionError("listing loops")
        return {"Contents": [], "IsTruncated": True, "NextContinuationToken": "same"}


def test_s3_listing_repeating_its_token_fails():
    # Failed before: the same page was asked for forever.
    with pytest.raises(backup_storage.StorageError, match="repeats the continuation token"):
        list(backup_storage.S3Store(RepeatingToken([]), "b", prefix="app").list())


class StuckVersions(FakeS3Client):
    def list_object_versions(self, **kwargs):
        self.calls.append("list")
        if len(self.calls) > 50:
            raise AssertionError("listing loops")
        return {"Versions": [], "IsTruncated": True, "NextKeyMarker": "app/k", "NextVersionIdMarker": "v1"}


def test_s3_version_listing_without_progress_fails():
    with pytest.raises(backup_storage.StorageError, match="makes no progress"):
        list(backup_storage.S3Store(StuckVersions(), "bucket", prefix="app", versions="delete").list())


class GeneratedVersions(object):
    """ListObjectVersions over ``count`` generated keys (two versions each), built page by page."""

    def __init__(self, count):
        self.count = count
        self.calls = []
        self.deleted = []

    def get_bucket_versioning(self, Bucket):
        return {"Status": "Enabled"}

    def list_object_versions(self, Bucket, Prefix, MaxKeys, Delimiter=None, KeyMarker=None, VersionIdMarker=None):
        self.calls.append("list")
        when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
        start = int(KeyMarker[5:13]) + 1 if KeyMarker else 0
        keys = ["p/db-%08d.tar" % i for i in range(start, min(self.count, start + MaxKeys // 2))]
        versions = [{"Key": k, "VersionId": "3HL4kqtJlcpXroDTDmJ%020d%d" % (start + n, v), "IsLatest": v == 0,
                     "LastModified": when, "Size": 1024} for n, k in enumerate(keys) for v in (0, 1)]
        out = {"Versions": versions, "IsTruncated": start + len(keys) < self.count}
        if out["IsTruncated"]:
            out["NextKeyMarker"], out["NextVersionIdMarker"] = keys[-1], versions[-1]["VersionId"]
        return out

    def delete_objects(self, Bucket, Delete):
        self.calls.append("delete")
        self.deleted.extend(o["Key"] for o in Delete["Objects"])
        return {}


def test_versions_delete_mode_holds_no_version_ids_per_key():
    # Failed before: the listing kept every key's version IDs in dicts and lists (about 440 bytes a
    # key, 462 MB at 1M); now it streams like the plain listing and the delete lists again.
    import tracemalloc
    client = GeneratedVersions(20000)
    store = backup_storage.S3Store(client, "b", "p/", versions="delete")
    tracemalloc.start()
    try:
        count = sum(1 for _record in store.list())
        _current, listing_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20000 and listing_peak < 2 * 1024 * 1024
    names = ["db-%08d.tar" % i for i in range(0, 20000, 2)]
    report = store.delete(iter(names), iter([2048] * len(names)), record_names=False)
    assert report.versions_deleted == 20000 and report.bytes_freed == 20000 * 1024 and len(report.positions) == 10000
    assert len(client.deleted) == 20000 and client.deleted[0] == "p/db-00000000.tar" and client.calls.count("delete") == 20


@pytest.mark.parametrize("ordered", [True, False])
def test_versions_delete_mode_skips_keys_changed_since_the_listing(fake, ordered):
    fake.versioning = "Enabled"
    fill(fake, 4, versions=2)
    store = backup_storage.S3Store(fake, "bucket", "p/", versions="delete")
    listed = list(store.list())
    fake.put("p/db-0001.tar", size=7)  # a new version written after the listing
    del fake.keys["p/db-0002.tar"]  # deleted by someone else
    names = [name for name, _when, _size in listed[:3]]
    sizes = [size for _name, _when, size in listed[:3]]
    if not ordered:
        names, sizes = names[::-1], sizes[::-1]
    with pytest.raises(backup_storage.StorageError, match="changed since it was listed") as info:
        store.delete(names, sizes)
    assert sorted(info.value.deleted) == ["db-0000.tar", "db-0002.tar"] and info.value.report.bytes_freed == 201
    assert [f["name"] for f in info.value.failed] == ["db-0001.tar"] and len(fake.keys["p/db-0001.tar"]) == 3
