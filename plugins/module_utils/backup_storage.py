# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where backup artifacts live: a local directory or an S3 bucket.

Both stores list ``(name, timestamp, size)`` records and delete by name, counting the
requests they make so that the module can report them. Listing holds one record per artifact
(never whole API responses) and S3 deletes go 1000 keys to a request, the API's maximum.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
import re
import shutil

S3_DELETE_BATCH = 1000


class StorageError(Exception):
    """The store could not be listed or an artifact could not be deleted."""


def name_timestamp(name, pattern, time_format, tz):
    """Timestamp from an artifact name, or None when the name does not match ``pattern``.

    ``pattern`` is a regular expression searched in the name; its group ``ts`` (or its first
    group) is parsed with ``time_format`` (strptime). A time without a zone is taken in ``tz``.
    """
    match = pattern.search(name)
    if not match:
        return None
    text = match.group("ts") if "ts" in pattern.groupindex else match.group(1) if pattern.groups else match.group(0)
    try:
        when = datetime.datetime.strptime(text, time_format)
    except ValueError:
        return None
    if when.tzinfo is None:
        # A literal "Z" (zone designator, not a %-directive) in the format means UTC, not ``tz``.
        literal_z = "Z" in re.sub(r"%.", "", time_format)
        when = when.replace(tzinfo=datetime.timezone.utc if literal_z else tz)
    return when


class LocalStore(object):
    """Files or directories matching ``glob`` directly inside ``path``."""

    def __init__(self, path, glob="*"):
        self.path = path
        self.glob = glob
        self.requests = {"list": 0, "delete": 0}

    def list(self):
        self.requests["list"] += 1
        try:
            entries = list(os.scandir(self.path))
        except OSError as exc:
            raise StorageError("cannot list %s: %s" % (self.path, exc))
        for entry in entries:
            if not fnmatch.fnmatchcase(entry.name, self.glob) or entry.is_symlink():
                continue
            stat = entry.stat(follow_symlinks=False)
            size = _tree_size(entry.path) if entry.is_dir(follow_symlinks=False) else stat.st_size
            yield entry.name, datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc), size

    def delete(self, names):
        for name in names:
            target = os.path.join(self.path, name)
            self.requests["delete"] += 1
            try:
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.remove(target)
            except OSError as exc:
                raise StorageError("cannot delete %s: %s" % (target, exc))


def _tree_size(path):
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


class S3Store(object):
    """Objects under ``prefix`` in ``bucket``; names are the keys without the prefix."""

    def __init__(self, client, bucket, prefix="", glob="*"):
        self.client = client
        self.bucket = bucket
        # The prefix is a folder, as in the local store: "app" lists "app/..." only, never "app2/...".
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.glob = glob
        self.requests = {"list": 0, "delete": 0}

    def list(self):
        token = None
        while True:
            # Delimiter "/": not recursive, like the local listing of one directory.
            kwargs = {"Bucket": self.bucket, "Prefix": self.prefix, "Delimiter": "/", "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            self.requests["list"] += 1
            try:
                page = self.client.list_objects_v2(**kwargs)
            except Exception as exc:  # botocore raises many types; all mean "cannot list"
                raise StorageError("cannot list s3://%s/%s: %s" % (self.bucket, self.prefix, _s3_error(exc)))
            for obj in page.get("Contents", ()):
                name = obj["Key"][len(self.prefix):]
                if name and fnmatch.fnmatchcase(name, self.glob):
                    yield name, obj["LastModified"], obj.get("Size", 0)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError(
                    "listing of s3://%s/%s claims more pages but gives no continuation token" % (self.bucket, self.prefix)
                )

    def delete(self, names):
        """Delete in batches; on a failure raise StorageError carrying what was really deleted and what failed."""
        names = list(names)
        done = []
        for start in range(0, len(names), S3_DELETE_BATCH):
            batch = names[start:start + S3_DELETE_BATCH]
            self.requests["delete"] += 1
            try:
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self.prefix + n} for n in batch], "Quiet": True},
                )
            except Exception as exc:
                error = StorageError("cannot delete from s3://%s/%s: %s" % (self.bucket, self.prefix, _s3_error(exc)))
                error.deleted, error.failed = done, [{"name": n, "error": _s3_error(exc)} for n in batch]
                raise error
            errors = response.get("Errors") or []
            failed = [
                {"name": e.get("Key", "")[len(self.prefix):], "error": "%s: %s" % (e.get("Code"), e.get("Message"))}
                for e in errors
            ]
            bad = set(f["name"] for f in failed)
            done.extend(n for n in batch if n not in bad)
            if failed:
                error = StorageError(
                    "%d of %d deletes failed in s3://%s, first: %s (%s)"
                    % (len(failed), len(batch), self.bucket, failed[0]["name"], failed[0]["error"])
                )
                error.deleted, error.failed = done, failed
                raise error


def _s3_error(exc):
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        error = response["Error"]
        return "%s: %s" % (error.get("Code"), error.get("Message"))
    return str(exc)


def compile_pattern(pattern):
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise StorageError("name_pattern %r is not a valid regular expression: %s" % (pattern, exc))
