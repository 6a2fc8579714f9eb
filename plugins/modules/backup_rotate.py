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
    description: Timezone whose calendar defines hours, days, weeks, months and years. Times without a zone are taken in it.
    type: str
    default: UTC
notes:
  - Artifacts are compared by time, then by name, so equal times give the same result in every run.
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
  returned: always
  type: list
  elements: str
deleted:
  description:
    - Names deleted (in check mode, that would be deleted), newest first.
    - When a delete fails, only the names really deleted (earlier batches and the keys of the failing batch that
      succeeded); the task fails.
  returned: always
  type: list
  elements: str
reasons:
  description: For each kept name, the rules that kept it (last, hourly, daily, weekly, monthly, yearly, min_age, newest).
  returned: always
  type: dict
bytes_freed:
  description: Total size of the deleted artifacts (only those really deleted when a delete fails).
  returned: always
  type: int
failed:
  description: When a delete fails, the names not deleted in the failing batch and why (C(name), C(error)).
  returned: on a failed delete
  type: list
  elements: dict
counts:
  description: How many artifacts each rule kept, and the totals C(total), C(kept), C(deleted).
  returned: always
  type: dict
  sample: {last: 3, daily: 7, weekly: 4, monthly: 6, yearly: 0, hourly: 0, min_age: 1, newest: 1, total: 40, kept: 15, deleted: 25}
unmatched:
  description: Names left alone because their time could not be read from them.
  returned: always
  type: list
  elements: str
requests:
  description: Requests made to the store, by kind (C(list), C(delete)).
  returned: always
  type: dict
"""

import datetime
import os
import traceback

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.keel.platform.plugins.module_utils.backup_storage import (
    LocalStore,
    S3Store,
    StorageError,
    compile_pattern,
    name_timestamp,
)
from ansible_collections.keel.platform.plugins.module_utils.retention import PolicyError, plan, validate_policy

try:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
except ImportError:  # Python < 3.9
    ZoneInfo = None
    ZoneInfoNotFoundError = Exception

BOTO3_IMPORT_ERROR = None
try:
    import boto3
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


def s3_client(params):
    config = BotoConfig(s3={"addressing_style": "path" if params["path_style"] else "auto"}, retries={"max_attempts": 5})
    verify = params["ca_bundle"] if params["ca_bundle"] else params["validate_certs"]
    return boto3.client(
        "s3",
        endpoint_url=params["endpoint_url"],
        region_name=params["region"],
        aws_access_key_id=params["access_key"],
        aws_secret_access_key=params["secret_key"],
        aws_session_token=params["session_token"],
        verify=verify,
        config=config,
    )


def open_store(module):
    params = module.params
    if params["path"]:
        if not os.path.isdir(params["path"]):
            module.fail_json(msg="path: %s is not a directory" % params["path"])
        return LocalStore(params["path"], params["glob"]), "local:%s" % params["path"]
    if BOTO3_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("boto3"), exception=BOTO3_IMPORT_ERROR)
    s3 = params["s3"]
    return S3Store(s3_client(s3), s3["bucket"], s3["prefix"], params["glob"]), "s3://%s/%s" % (s3["bucket"], s3["prefix"])


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


def collect(store, params, tz):
    """Artifacts with their timestamps, and the names whose time could not be read."""
    artifacts, unmatched = [], []
    pattern = compile_pattern(params["name_pattern"]) if params["timestamp_from"] == "name" else None
    for name, mtime, size in store.list():
        if pattern is None:
            artifacts.append((name, mtime, size))
            continue
        when = name_timestamp(name, pattern, params["name_time_format"], tz)
        if when is None:
            unmatched.append(name)
        else:
            artifacts.append((name, when, size))
    return artifacts, unmatched


def main():
    module = build_module()
    params = module.params
    policy = dict((k, params[k]) for k in params if k.startswith("keep_"))
    policy["min_age"] = params["min_age"]
    try:
        policy = validate_policy(policy)
    except PolicyError as exc:
        module.fail_json(msg="invalid retention policy: %s" % exc)
    tz = resolve_timezone(module)

    store, where = open_store(module)
    try:
        artifacts, unmatched = collect(store, params, tz)
    except StorageError as exc:
        module.fail_json(msg=str(exc), requests=store.requests)

    decision = plan(artifacts, policy, now=datetime.datetime.now(datetime.timezone.utc), tz=tz)
    sizes = dict((name, size) for name, _when, size in artifacts)
    deleted = decision["delete"]
    counts = dict(decision["counts"], total=len(artifacts), kept=len(decision["keep"]), deleted=len(deleted))
    result = dict(
        changed=bool(deleted),
        kept=list(decision["keep"]),
        deleted=deleted,
        reasons=decision["keep"],
        bytes_freed=sum(sizes[name] for name in deleted),
        counts=counts,
        unmatched=sorted(unmatched),
        requests=store.requests,
    )
    if module._diff:
        before = sorted(sizes)
        result["diff"] = dict(
            before_header=where,
            after_header=where,
            before="\n".join(before) + ("\n" if before else ""),
            after="\n".join(sorted(decision["keep"])) + ("\n" if decision["keep"] else ""),
        )

    if deleted and not module.check_mode:
        try:
            store.delete(deleted)
        except StorageError as exc:
            result.pop("diff", None)
            # Say what was really deleted (batches before the failure and the keys that succeeded).
            really = getattr(exc, "deleted", [])
            result.update(
                changed=bool(really),
                deleted=really,
                bytes_freed=sum(sizes[name] for name in really),
                failed=getattr(exc, "failed", []),
            )
            module.fail_json(msg="deleting old backups failed: %s" % exc, **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
