#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_rotate
short_description: Delete old backup artifacts by a grandfather-father-son policy
version_added: 0.1.0
description:
  - Lists backup artifacts in a local directory or an S3 bucket, decides which to keep by a
    retention policy (last N, then the newest of each of the last N hours, days, ISO weeks,
    months and years) and deletes the rest.
  - The newest artifact is always kept, nothing younger than O(min_age) is deleted, and a policy
    that keeps nothing is refused.
  - Periods are calendar periods in O(timezone), so days stay days across DST changes.
  - S3 listing is paginated and deletes go 1000 keys to a request.
  - In a versioned S3 bucket a plain delete only adds a delete marker and frees nothing; O(s3_versions) chooses
    between that (the result says so) and deleting every version.
  - For large stores, O(output=summary) returns counts, bytes and the first and last names instead of full lists.
author:
  - Keel maintainers (@keel-platform)
extends_documentation_fragment:
  - keel.platform.attributes
  - keel.platform.s3
attributes:
  check_mode:
    support: full
    details: Deletes nothing and returns the exact plan.
  diff_mode:
    support: full
    details: Shows the artifacts before and after.
options:
  path:
    description: Local directory holding the artifacts (files or directories). Exclusive with O(s3).
    type: path
  glob:
    description: Shell pattern that artifact names must match; others are left alone.
    type: str
    default: "*"
  keep_last:
    description: Keep this many newest artifacts.
    type: int
    default: 0
  keep_hourly:
    description: Keep the newest artifact of each of this many most recent hours that have one.
    type: int
    default: 0
  keep_daily:
    description: Same, per day.
    type: int
    default: 0
  keep_weekly:
    description: Same, per ISO week (Monday to Sunday).
    type: int
    default: 0
  keep_monthly:
    description: Same, per calendar month.
    type: int
    default: 0
  keep_yearly:
    description: Same, per calendar year.
    type: int
    default: 0
  min_age:
    description:
      - Never delete an artifact younger than this. Seconds, or a number with C(s), C(m), C(h), C(d) or C(w).
    type: str
    default: "0"
  timestamp_from:
    description:
      - Where an artifact's time comes from. C(mtime) is the file's modification time or the
        object's LastModified; C(name) parses it from the name with O(name_pattern) and O(name_time_format).
    type: str
    choices: [mtime, name]
    default: mtime
  name_pattern:
    description:
      - Regular expression searched in each name; its group C(ts) (or first group) holds the time.
        Names that do not match are never deleted and are returned in RV(unmatched).
    type: str
  name_time_format:
    description: strptime format of the time in the name, for example C(%Y%m%dT%H%M%SZ).
    type: str
  timezone:
    description:
      - Timezone whose calendar defines hours, days, weeks, months and years. Times without a zone are taken in it.
      - An hour is a wall-clock hour and its UTC offset, so the hour a DST change repeats in the autumn is two hourly
        periods (in Europe/Berlin, 02:00-03:00 CEST and 02:00-03:00 CET on 2026-10-25).
    type: str
    default: UTC
  s3_versions:
    description:
      - What deleting means in a versioned S3 bucket (ignored without O(s3)).
      - C(markers) sends plain deletes. In a bucket with versioning C(Enabled) S3 then only adds a delete marker; the
        data stays as a noncurrent version and still takes space. The result says so (RV(versions.markers), a warning)
        and RV(bytes_freed) counts none of it. In a C(Suspended) bucket a plain delete also adds a marker; it removes
        the object's C(null) version if it has one (written while versioning was off or suspended) but never the
        versions written while it was on, so RV(bytes_freed) counts none of it there either (a lower bound).
      - The bucket's versioning is read with GetBucketVersioning (permission C(s3:GetBucketVersioning)). If it cannot
        be read, the run goes on with a warning and RV(versions.status) C(unknown); each deleted key's answer still
        tells whether only a delete marker was added, so RV(bytes_freed) stays true after a real run (check mode then
        counts every planned byte).
      - C(delete) lists every version and delete marker of each artifact to delete and deletes them all by version ID,
        which frees the space for good (RV(versions.versions_deleted)). Keys whose current version is already a delete
        marker are not artifacts and are left alone (RV(versions.hidden)).
      - With C(delete) the versions are listed twice, streaming, so no version IDs are held (about 70 bytes an
        artifact, as with C(markers)); once to plan, and again when deleting, for the keys to delete only. A key whose
        versions add up to a different size in the second listing (a version written since) is not deleted and is
        reported in RV(not_deleted); a key gone by then counts as deleted and frees nothing.
    type: str
    choices: [markers, delete]
    default: markers
  output:
    description:
      - C(full) returns every name (RV(kept), RV(deleted), RV(reasons), RV(unmatched)).
      - C(summary) returns only RV(summary) (counts, bytes, newest and oldest name per outcome and per rule) and at most
        100 entries of RV(not_deleted), so the result stays small for stores of millions of artifacts. Diff mode then shows
        counts, not names.
    type: str
    choices: [full, summary]
    default: full
notes:
  - Artifacts are compared by time, then by name, so equal times give the same result in every run.
  - A zone in a name is honoured when O(name_time_format) reads it (C(%z), a literal C(Z), C(%Z) with UTC or GMT); a
    time without a zone is read in O(timezone), and in the hour a DST change repeats as its first occurrence.
  - Names whose time cannot be read are unmatched and left alone, also when an optional C(ts) group did not take part
    in the match or the time lies outside the years 1 to 9999 in UTC.
  - Rotates of the same local directory may run at the same time; a file deleted by another run between the listing
    and the delete counts as deleted (it adds nothing to RV(bytes_freed)), and a file gone before it could be read is
    not listed.
  - An S3 listing whose server repeats a continuation token, or a version listing whose markers do not move forward,
    fails instead of listing forever.
"""

EXAMPLES = r"""
- name: Keep 7 daily, 4 weekly and 6 monthly database dumps
  keel.platform.backup_rotate:
    path: /var/backups/postgresql
    glob: "*.sql.gz"
    keep_daily: 7
    keep_weekly: 4
    keep_monthly: 6
    min_age: 1d

- name: Rotate archives in an S3-compatible store, timestamps from their names
  keel.platform.backup_rotate:
    s3:
      bucket: backups
      prefix: app/
      endpoint_url: https://objects.internal:8333
      path_style: true
      access_key: "{{ backup_s3_access_key }}"
      secret_key: "{{ backup_s3_secret_key }}"
    timestamp_from: name
    name_pattern: 'app-(?P<ts>\d{8}T\d{6}Z)\.tar\.zst$'
    name_time_format: "%Y%m%dT%H%M%SZ"
    keep_last: 3
    keep_daily: 14
    keep_monthly: 12
    timezone: Europe/Berlin
  register: rotation

# Hourly dumps named in UTC, rotated by the hours of Europe/Berlin. The directory holds
#   db-20261024T223000Z.sql.gz db-20261024T233000Z.sql.gz db-20261025T003000Z.sql.gz
#   db-20261025T013000Z.sql.gz db-20261025T023000Z.sql.gz
# which are 00:30, 01:30, 02:30 CEST, 02:30 CET and 03:30 CET on 2026-10-25 in Berlin. 02:00-03:00
# happens twice that night (clocks go back at 03:00 CEST), so it is two hourly periods: the
# four newest hours keep four dumps and only the oldest goes.
- name: Keep the last 4 hours of dumps across the autumn DST change
  keel.platform.backup_rotate:
    path: /var/backups/hourly
    glob: "db-*.sql.gz"
    timestamp_from: name
    name_pattern: 'db-(?P<ts>\d{8}T\d{6}Z)\.sql\.gz$'
    name_time_format: "%Y%m%dT%H%M%SZ"
    keep_hourly: 4
    timezone: Europe/Berlin
  register: hourly

- name: What that leaves
  ansible.builtin.assert:
    that:
      - hourly.kept == ["db-20261025T023000Z.sql.gz", "db-20261025T013000Z.sql.gz", "db-20261025T003000Z.sql.gz", "db-20261024T233000Z.sql.gz"]
      - hourly.deleted == ["db-20261024T223000Z.sql.gz"]

- name: A bucket of a million objects, versioned - delete every version, return a summary only
  keel.platform.backup_rotate:
    s3:
      bucket: backups
      prefix: wal/
      endpoint_url: https://objects.internal:8333
      path_style: true
    s3_versions: delete
    output: summary
    keep_daily: 30
  register: wal_rotation

- name: Show the plan without deleting anything
  keel.platform.backup_rotate:
    path: /srv/backups
    keep_daily: 3
  check_mode: true
  diff: true
"""

RETURN = r"""
kept:
  description: Names kept, newest first.
  returned: with O(output=full)
  type: list
  elements: str
deleted:
  description:
    - Names deleted (in check mode, that would be deleted), newest first.
    - When a delete fails, only the names really deleted (earlier batches and the keys of the failing batch that
      succeeded); the task fails.
    - In a versioned bucket with O(s3_versions=markers), names that now have a delete marker (their data remains as
      noncurrent versions).
  returned: with O(output=full)
  type: list
  elements: str
reasons:
  description: For each kept name, the rules that kept it (last, hourly, daily, weekly, monthly, yearly, min_age, newest).
  returned: with O(output=full)
  type: dict
bytes_freed:
  description:
    - Bytes really freed (in check mode, that would be freed). When a delete fails, only by what was deleted.
    - With O(s3_versions=delete), the size of every version deleted. A delete that only added a delete marker frees
      nothing and counts 0.
  returned: always
  type: int
not_deleted:
  description:
    - When a delete fails, the names of the failing batch that were not deleted and why (C(name), C(error)).
    - With O(output=summary), at most the first 100; RV(not_deleted_count) has the number.
  returned: on a failed delete
  type: list
  elements: dict
  sample: [{name: db-20260105T020000Z.tar, error: "AccessDenied: Access Denied"}]
not_deleted_count:
  description: How many names of the failing batch were not deleted.
  returned: on a failed delete
  type: int
counts:
  description: How many artifacts each rule kept, and the totals C(total), C(kept), C(deleted).
  returned: always
  type: dict
  sample: {last: 3, daily: 7, weekly: 4, monthly: 6, yearly: 0, hourly: 0, min_age: 1, newest: 1, total: 40, kept: 15, deleted: 25}
summary:
  description:
    - Bounded description of the outcome, whatever the number of artifacts. C(kept), C(deleted) (what was really
      deleted, or in check mode what would be) and each rule (C(last) ... C(yearly), C(min_age), C(newest)) have
      C(count), C(bytes) (sizes of the artifacts), C(newest) and C(oldest) (names; null when C(count) is 0).
    - C(unmatched) has C(count), C(first) and C(last) (in name order).
  returned: always
  type: dict
  sample:
    kept: {count: 15, bytes: 15360, newest: db-20261128T020000Z.tar, oldest: db-20260601T020000Z.tar}
    deleted: {count: 25, bytes: 25600, newest: db-20261120T020000Z.tar, oldest: db-20260501T020000Z.tar}
    unmatched: {count: 1, first: notes.txt, last: notes.txt}
    rules: {daily: {count: 7, bytes: 7168, newest: db-20261128T020000Z.tar, oldest: db-20261122T020000Z.tar}}
unmatched:
  description: Names left alone because their time could not be read from them.
  returned: with O(output=full)
  type: list
  elements: str
versions:
  description: S3 only. How versioning was handled.
  returned: with O(s3)
  type: dict
  sample: {mode: markers, status: Enabled, markers: 25, versions_deleted: 0, hidden: 0}
  contains:
    mode:
      description: O(s3_versions).
      type: str
    status:
      description: The bucket's versioning, C(Enabled), C(Suspended), C(Off), or C(unknown) when it could not be read.
      type: str
    markers:
      description: How many deletes only added a delete marker (their data remains; nothing freed).
      type: int
    versions_deleted:
      description: How many versions and delete markers were deleted by version ID (O(s3_versions=delete)).
      type: int
    hidden:
      description: >-
        Keys left alone because their current version is a delete marker (O(s3_versions=delete) only; with
        C(markers) the listing does not show them).
      type: int
requests:
  description: Requests made to the store, by kind (C(list), C(delete), and for S3 C(versioning)).
  returned: always
  type: dict
"""

import array
import datetime
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.keel.platform.plugins.module_utils.backup_storage import (
    DeleteReport,
    LocalStore,
    Names,
    S3Store,
    StorageError,
    compile_pattern,
    name_timestamp,
)
from ansible_collections.keel.platform.plugins.module_utils.retention import BUCKETS, PolicyError, plan_arrays, validate_policy

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # Python < 3.9
    ZoneInfo = None
    ZoneInfoNotFoundError = Exception

BOTO3_IMPORT_ERROR = None
try:
    import boto3
    import boto3.session
    from botocore.config import Config as BotoConfig
except ImportError:
    BOTO3_IMPORT_ERROR = traceback.format_exc()

S3_OPTIONS = dict(
    bucket=dict(type="str", required=True),
    prefix=dict(type="str", default=""),
    endpoint_url=dict(type="str"),
    region=dict(type="str", default="us-east-1"),
    access_key=dict(type="str", aliases=["aws_access_key_id"], no_log=True),
    secret_key=dict(type="str", aliases=["aws_secret_access_key"], no_log=True),
    session_token=dict(type="str", no_log=True),
    path_style=dict(type="bool", default=False),
    validate_certs=dict(type="bool", default=True),
    ca_bundle=dict(type="path"),
)


def argument_spec():
    spec = dict(
        path=dict(type="path"),
        s3=dict(type="dict", options=S3_OPTIONS),
        glob=dict(type="str", default="*"),
        min_age=dict(type="str", default="0"),
        timestamp_from=dict(type="str", choices=["mtime", "name"], default="mtime"),
        name_pattern=dict(type="str"),
        name_time_format=dict(type="str"),
        timezone=dict(type="str", default="UTC"),
        s3_versions=dict(type="str", choices=["markers", "delete"], default="markers"),
        output=dict(type="str", choices=["full", "summary"], default="full"),
    )
    for bucket in ("last", "hourly", "daily", "weekly", "monthly", "yearly"):
        spec["keep_" + bucket] = dict(type="int", default=0)
    return spec


def build_module():
    return AnsibleModule(
        argument_spec=argument_spec(),
        mutually_exclusive=[("path", "s3")],
        required_one_of=[("path", "s3")],
        required_if=[("timestamp_from", "name", ("name_pattern", "name_time_format"))],
        supports_check_mode=True,
    )


def iso_timestamp(text):
    """LastModified as S3 sends it (C(2026-11-01T00:00:00.000Z)), parsed quickly.

    botocore's default parser (dateutil) costs about half a millisecond a key, minutes for a
    million keys; anything unusual still goes to it.
    """
    try:
        when = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except (TypeError, ValueError):
        when = None
    if when is None or when.tzinfo is None:
        from botocore.utils import parse_timestamp

        return parse_timestamp(text)
    return when


def s3_client(params):
    config = BotoConfig(s3={"addressing_style": "path" if params["path_style"] else "auto"}, retries={"max_attempts": 5})
    verify = params["ca_bundle"] if params["ca_bundle"] else params["validate_certs"]
    session = boto3.session.Session()
    session._session.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=iso_timestamp)
    return session.client(
        "s3",
        endpoint_url=params["endpoint_url"],
        region_name=params["region"],
        aws_access_key_id=params["access_key"],
        aws_secret_access_key=params["secret_key"],
        aws_session_token=params["session_token"],
        verify=verify,
        config=config,
    )


FAILED_SHOWN = 100


def open_store(module):
    params = module.params
    if params["path"]:
        if not os.path.isdir(params["path"]):
            module.fail_json(msg="path: %s is not a directory" % params["path"])
        return LocalStore(params["path"], params["glob"]), "local:%s" % params["path"]
    if BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    s3 = params["s3"]
    try:
        client = s3_client(s3)
    except Exception as exc:  # botocore: ValueError (endpoint), InvalidRegionError, ...; no secrets in them
        module.fail_json(msg="cannot set up the S3 client (endpoint_url %r, region %r): %s: %s"
                         % (s3["endpoint_url"], s3["region"], type(exc).__name__, exc))
    store = S3Store(client, s3["bucket"], s3["prefix"], params["glob"], versions=params["s3_versions"])
    return store, store.where()


def resolve_timezone(module):
    name = module.params["timezone"]
    if name.upper() == "UTC":
        return datetime.timezone.utc
    if ZoneInfo is None:
        module.fail_json(msg="timezone: only UTC is available on Python < 3.9")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        module.fail_json(msg="timezone: unknown timezone %r" % name)


class Artifacts(object):
    """The listing, held compactly: parallel names, times (POSIX seconds) and sizes.

    A million artifacts cost their names' bytes plus 24 bytes each, not a tuple, a str and a
    datetime each.
    Names whose time cannot be read are counted (and kept in full only with output=full).
    """

    def __init__(self, keep_unmatched):
        self.names = Names()
        self.times = array.array("d")
        self.sizes = array.array("q")
        self.unmatched = [] if keep_unmatched else None
        self.unmatched_count = 0
        self.unmatched_first = self.unmatched_last = None

    def add(self, name, when, size):
        self.names.append(name)
        self.times.append(when.timestamp())
        self.sizes.append(size or 0)

    def skip(self, name):
        self.unmatched_count += 1
        if self.unmatched is not None:
            self.unmatched.append(name)
        if self.unmatched_first is None or name < self.unmatched_first:
            self.unmatched_first = name
        if self.unmatched_last is None or name > self.unmatched_last:
            self.unmatched_last = name


def collect(store, params, tz):
    """The artifacts with their timestamps, and the names whose time could not be read."""
    found = Artifacts(keep_unmatched=params["output"] == "full")
    pattern = compile_pattern(params["name_pattern"]) if params["timestamp_from"] == "name" else None
    time_format = params["name_time_format"]
    for name, mtime, size in store.list():
        if pattern is None:
            found.add(name, mtime, size)
            continue
        when = name_timestamp(name, pattern, time_format, tz)
        if when is None:
            found.skip(name)
        else:
            found.add(name, when, size)
    return found


class Tally(object):
    """Count, bytes, newest and oldest name of a set of artifacts, fed newest first."""

    def __init__(self):
        self.count = self.bytes = 0
        self.newest = self.oldest = None

    def add(self, name, size):
        if self.newest is None:
            self.newest = name
        self.oldest = name
        self.count += 1
        self.bytes += size

    def as_dict(self):
        return dict(count=self.count, bytes=self.bytes, newest=self.newest, oldest=self.oldest)


def summarize(found, decision, deleted_indexes):
    """The bounded summary: kept, deleted, each rule, unmatched."""
    names, sizes, keep = found.names, found.sizes, decision["keep"]
    kept, deleted = Tally(), Tally()
    rules = dict((rule, Tally()) for rule in ("last",) + BUCKETS + ("min_age", "newest"))
    for index, reasons in keep.items():
        kept.add(names[index], sizes[index])
        for reason in reasons:
            rules[reason].add(names[index], sizes[index])
    for index in deleted_indexes:
        deleted.add(names[index], sizes[index])
    return dict(
        kept=kept.as_dict(),
        deleted=deleted.as_dict(),
        rules=dict((rule, tally.as_dict()) for rule, tally in rules.items()),
        unmatched=dict(count=found.unmatched_count, first=found.unmatched_first, last=found.unmatched_last),
    )


def read_versioning(module, store):
    """The bucket's versioning status, or ``unknown`` (with a warning) when it cannot be read."""
    try:
        return store.versioning()
    except StorageError as exc:
        if store.versions == "markers":
            module.warn(
                "%s; if the bucket is versioned, deletes only add delete markers: each deleted key's answer tells, "
                "and bytes_freed counts only what was freed" % exc
            )
        return "unknown"


def main():
    module = build_module()
    params = module.params
    full = params["output"] == "full"
    policy = dict((k, params[k]) for k in params if k.startswith("keep_"))
    policy["min_age"] = params["min_age"]
    try:
        policy = validate_policy(policy)
    except PolicyError as exc:
        module.fail_json(msg="invalid retention policy: %s" % exc)
    tz = resolve_timezone(module)

    store, where = open_store(module)
    is_s3 = isinstance(store, S3Store)
    status = read_versioning(module, store) if is_s3 else None
    try:
        found = collect(store, params, tz)
    except StorageError as exc:
        module.fail_json(msg=str(exc), requests=store.requests)

    decision = plan_arrays(found.names, found.times, policy, now=datetime.datetime.now(datetime.timezone.utc), tz=tz)
    names, sizes, keep = found.names, found.sizes, decision["keep"]
    to_delete = array.array("l", (i for i in decision["order"] if i not in keep))
    # In a versioned bucket a plain delete adds a delete marker and frees nothing.
    markers_only = is_s3 and params["s3_versions"] == "markers" and status in ("Enabled", "Suspended")
    counts = dict(decision["counts"], total=len(names), kept=len(keep), deleted=len(to_delete))
    result = dict(changed=bool(to_delete), counts=counts, requests=store.requests)
    planned_bytes = 0 if markers_only else sum(sizes[i] for i in to_delete)
    if full:
        result.update(
            kept=[names[i] for i in keep],
            deleted=[names[i] for i in to_delete],
            reasons=dict((names[i], reasons) for i, reasons in keep.items()),
            unmatched=sorted(found.unmatched),
        )
    if module._diff:
        if full:
            before = sorted(names)
            after = sorted(names[i] for i in keep)
            result["diff"] = dict(
                before_header=where, after_header=where,
                before="\n".join(before) + ("\n" if before else ""),
                after="\n".join(after) + ("\n" if after else ""),
            )
        else:
            result["diff"] = dict(
                before_header=where, after_header=where,
                before="%d artifacts\n" % len(names),
                after="%d artifacts (%d deleted)\n" % (len(keep), len(to_delete)),
            )

    report = None
    delete_order = to_delete
    if is_s3 and params["s3_versions"] == "delete" and to_delete:
        # The store finds the versions by listing again, in key order, and walks the names along it:
        # they go in the listing's order (the artifacts' own), so it holds no lookup table.
        marked = bytearray(len(names))
        for i in to_delete:
            marked[i] = 1
        delete_order = array.array("l", (i for i in range(len(names)) if marked[i]))
        del marked
    if to_delete and not module.check_mode:
        # Generators: a million names are not copied into another list.
        delete_names = (names[i] for i in delete_order)
        delete_sizes = (sizes[i] for i in delete_order)
        try:
            report = store.delete(delete_names, delete_sizes, record_names=False)
        except StorageError as exc:
            report = getattr(exc, "report", None) or DeleteReport()
            finish(module, store, result, found, decision, to_delete, report, planned_bytes, status, full,
                   error="deleting old backups failed: %s" % exc, delete_order=delete_order)
        del delete_names, delete_sizes
    finish(module, store, result, found, decision, to_delete, report, planned_bytes, status, full)


def finish(module, store, result, found, decision, to_delete, report, planned_bytes, status, full, error=None, delete_order=None):
    """Fill in what was really deleted and freed, then exit (or fail with ``error``).

    ``delete_order``: the artifacts in the order given to the store (``to_delete`` unless said).
    """
    params = module.params
    is_s3 = bool(params["s3"])
    markers = versions_deleted = 0
    if report is None:
        # Nothing deleted (check mode or nothing to delete): the plan is the answer.
        result["bytes_freed"] = planned_bytes
        summary = summarize(found, decision, to_delete)
        if is_s3 and params["s3_versions"] == "markers" and status in ("Enabled", "Suspended"):
            markers = len(to_delete)
    else:
        result["bytes_freed"] = report.bytes_freed
        markers, versions_deleted = report.markers, report.versions_deleted
        if error:
            # What was really deleted: the positions (in delete_order) the store reports, in the plan's order.
            delete_order = to_delete if delete_order is None else delete_order
            gone_mark = bytearray(len(found.names))
            for p in report.positions:
                gone_mark[delete_order[p]] = 1
            gone = array.array("l", (i for i in to_delete if gone_mark[i]))
            result["changed"] = bool(gone)
            result["counts"]["deleted"] = len(gone)
            if full:
                result["deleted"] = [found.names[i] for i in gone]
            # Not "failed": Ansible's own failed flag would overwrite it.
            result["not_deleted_count"] = len(report.failed)
            result["not_deleted"] = report.failed if full else report.failed[:FAILED_SHOWN]
            result.pop("diff", None)
        else:
            gone = to_delete
        summary = summarize(found, decision, gone)
    result["summary"] = summary
    if is_s3:
        result["versions"] = dict(mode=params["s3_versions"], status=status, markers=markers,
                                  versions_deleted=versions_deleted, hidden=store.hidden)
        if markers:
            module.warn(
                "s3://%s is versioned (%s): %d deletes only added delete markers; the data remains as noncurrent "
                "versions and still takes space (s3_versions=delete removes the versions)"
                % (params["s3"]["bucket"], status, markers)
            )
    if error:
        module.fail_json(msg=error, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
