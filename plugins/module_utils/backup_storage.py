# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Where backup artifacts live: a local directory or an S3 bucket.

Both stores list ``(name, timestamp, size)`` records and delete by name, counting the
requests they make so that the module can report them. Listing holds one record per artifact
(never whole API responses) and S3 deletes go 1000 keys to a request, the API's maximum.
"""

from __future__ import annotations

import array
import datetime
import fnmatch
import heapq
import itertools
import os
import re
import shutil

S3_DELETE_BATCH = 1000


class StorageError(Exception):
    """The store could not be listed or an artifact could not be deleted.

    A failed delete carries ``report`` (a :class:`DeleteReport`): what was really deleted
    before the failure, and which names failed and why.
    """

    report = None

    @property
    def deleted(self):
        return self.report.deleted if self.report else []

    @property
    def failed(self):
        return self.report.failed if self.report else []


def name_timestamp(name, pattern, time_format, tz):
    """Timestamp from an artifact name, or None when the name does not match ``pattern``.

    ``pattern`` is a regular expression searched in the name; its group ``ts`` (or its first
    group) is parsed with ``time_format`` (strptime). A zone in the name is honoured: ``%z``
    (``+0100``, ``-05:30``, ``Z``) gives that offset, a literal ``Z`` in the format and ``%Z``
    with ``UTC`` or ``GMT`` mean UTC. A time without a zone is taken in ``tz`` (in the hour a
    DST change repeats, as its first occurrence). ``%Z`` with any other zone name cannot be
    read reliably (strptime knows only the local machine's names): such names are unmatched.
    """
    match = pattern.search(name)
    if not match:
        return None
    text = match.group("ts") if "ts" in pattern.groupindex else match.group(1) if pattern.groups else match.group(0)
    if text is None:
        # An optional group that did not take part in the match: no time to read.
        return None
    try:
        when = datetime.datetime.strptime(text, time_format)
    except ValueError:
        return None
    if when.tzinfo is None:
        if "%Z" in time_format:
            # strptime accepts UTC, GMT and the local machine's zone names and drops the zone.
            if not _UTC_NAME.search(text):
                return None
            return when.replace(tzinfo=datetime.timezone.utc)
        # A literal "Z" (zone designator, not a %-directive) in the format means UTC, not ``tz``.
        literal_z = "Z" in re.sub(r"%.", "", time_format)
        when = when.replace(tzinfo=datetime.timezone.utc if literal_z else tz)
    try:
        # Times that cannot be placed on the UTC time line (9999-12-31T23:59:59-0500 is in
        # year 10000 in UTC) are unmatched, not a traceback later.
        when.astimezone(datetime.timezone.utc)
        when.timestamp()
    except (ValueError, OverflowError, OSError):
        return None
    return when


_UTC_NAME = re.compile(r"(?i)(?<![a-z])(utc|gmt)(?![a-z])")


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
            try:
                stat = entry.stat(follow_symlinks=False)
                size = _tree_size(entry.path) if entry.is_dir(follow_symlinks=False) else stat.st_size
            except FileNotFoundError:
                # Gone between the directory read and the stat (another rotate, a cleanup): not an artifact any more.
                continue
            except OSError as exc:
                raise StorageError("cannot read %s: %s" % (entry.path, exc))
            yield entry.name, datetime.datetime.fromtimestamp(stat.st_mtime, datetime.timezone.utc), size

    def delete(self, names, sizes=None, record_names=True):
        """Delete ``names`` (``sizes``: their sizes, in the same order); return a :class:`DeleteReport`.

        ``names`` and ``sizes`` may be any iterables. On a failure raise StorageError whose
        ``report`` says what was deleted before it.
        """
        report = DeleteReport(record_names)
        for position, (name, size) in enumerate(zip(names, sizes if sizes is not None else itertools.repeat(0))):
            target = os.path.join(self.path, name)
            self.requests["delete"] += 1
            try:
                if os.path.isdir(target) and not os.path.islink(target):
                    shutil.rmtree(target)
                else:
                    os.remove(target)
            except FileNotFoundError as exc:
                if os.path.lexists(target):
                    report.failed.append({"name": name, "error": str(exc)})
                    error = StorageError("cannot delete %s: %s" % (target, exc))
                    error.report = report
                    raise error
                # Already gone (a rotate running at the same time deleted it): the goal is reached.
                # It counts as deleted; its bytes were freed by whoever deleted it, not by this run.
                report.add(position, name, 0)
                continue
            except OSError as exc:
                report.failed.append({"name": name, "error": str(exc)})
                error = StorageError("cannot delete %s: %s" % (target, exc))
                error.report = report
                raise error
            report.add(position, name, size)
        return report


class DeleteReport(object):
    """What a delete really did: names gone, bytes freed, delete markers added, versions removed, failures.

    ``positions`` are the positions (in the order given to ``delete``) of the names really
    deleted, 8 bytes each; ``deleted`` the names themselves unless the caller asked not to keep
    them (a million names cost tens of megabytes).
    """

    def __init__(self, record_names=True):
        self.deleted = [] if record_names else None
        self.positions = array.array("q")
        self.bytes_freed = 0
        self.markers = 0
        self.versions_deleted = 0
        self.failed = []

    def add(self, position, name, freed):
        if self.deleted is not None:
            self.deleted.append(name)
        self.positions.append(position)
        self.bytes_freed += freed


class Names(object):
    """A growing list of strings held in one buffer: their UTF-8 bytes plus 8 bytes each.

    A million 25-character names take about 33 MB instead of about 90 MB as str objects.
    Items come back as new str objects; names that are not valid UTF-8 (local files) survive
    through ``surrogateescape``.
    """

    def __init__(self):
        self._blob = bytearray()
        self._ends = array.array("q")

    def append(self, name):
        self._blob += name.encode("utf-8", "surrogateescape")
        self._ends.append(len(self._blob))

    def __len__(self):
        return len(self._ends)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self._ends)
        start = self._ends[index - 1] if index else 0
        return self._blob[start:self._ends[index]].decode("utf-8", "surrogateescape")

    def __iter__(self):
        for index in range(len(self._ends)):
            yield self[index]


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
    """Objects under ``prefix`` in ``bucket``; names are the keys without the prefix.

    ``versions`` says what a delete does in a versioned bucket: ``markers`` sends plain
    deletes, which in a versioned bucket only add delete markers (the data stays as noncurrent
    versions and frees nothing); ``delete`` lists every version and delete marker of each
    artifact and deletes them all by version ID, which frees the space for good.
    """

    def __init__(self, client, bucket, prefix="", glob="*", versions="markers"):
        self.client = client
        self.bucket = bucket
        # The prefix is a folder, as in the local store: "app" lists "app/..." only, never "app2/...".
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.glob = glob
        self.versions = versions
        self.requests = {"list": 0, "delete": 0}
        # Keys whose current version is a delete marker: not artifacts, left alone.
        self.hidden = 0

    def where(self):
        return "s3://%s/%s" % (self.bucket, self.prefix)

    def versioning(self):
        """The bucket's versioning status: ``Enabled``, ``Suspended``, ``Off``; raises StorageError."""
        self.requests["versioning"] = self.requests.get("versioning", 0) + 1
        try:
            answer = self.client.get_bucket_versioning(Bucket=self.bucket)
        except Exception as exc:
            raise StorageError("cannot read the versioning of s3://%s: %s" % (self.bucket, _s3_error(exc)))
        return answer.get("Status") or "Off"

    def list(self):
        if self.versions == "delete":
            return self._list_versions()
        return self._list_current()

    def _list_current(self):
        token = None
        seen = set()
        while True:
            # Delimiter "/": not recursive, like the local listing of one directory.
            kwargs = {"Bucket": self.bucket, "Prefix": self.prefix, "Delimiter": "/", "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            self.requests["list"] += 1
            try:
                page = self.client.list_objects_v2(**kwargs)
            except Exception as exc:  # botocore raises many types; all mean "cannot list"
                raise StorageError("cannot list %s: %s" % (self.where(), _s3_error(exc)))
            for obj in page.get("Contents", ()):
                name = obj["Key"][len(self.prefix):]
                if name and fnmatch.fnmatchcase(name, self.glob):
                    yield name, obj["LastModified"], obj.get("Size", 0)
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise StorageError("listing of %s claims more pages but gives no continuation token" % self.where())
            if token in seen:
                # A server that hands out a token it gave before would be listed forever.
                raise StorageError("listing of %s repeats the continuation token %r (page %d); stopped instead of looping"
                                   % (self.where(), token[:80], self.requests["list"]))
            seen.add(token)

    def _version_pages(self):
        """Every version and delete marker in the folder, in key order, as
        ``(name, version ID, size, is_marker, is_latest, LastModified)``; a key's entries are adjacent."""
        key_marker = version_marker = None
        last_key = None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": self.prefix, "Delimiter": "/", "MaxKeys": 1000}
            if key_marker:
                kwargs["KeyMarker"] = key_marker
                if version_marker:
                    kwargs["VersionIdMarker"] = version_marker
            self.requests["list"] += 1
            try:
                page = self.client.list_object_versions(**kwargs)
            except Exception as exc:
                raise StorageError("cannot list the versions in %s: %s" % (self.where(), _s3_error(exc)))
            # Versions and delete markers come in two lists, each in key order: merged back into one.
            entries = heapq.merge(((v["Key"], False, v) for v in page.get("Versions") or ()),
                                  ((m["Key"], True, m) for m in page.get("DeleteMarkers") or ()),
                                  key=lambda item: item[0])
            for key, is_marker, entry in entries:
                if last_key is not None and key < last_key:
                    # Records are built key by key; a listing out of order would split or lose keys.
                    raise StorageError("version listing of %s is not in key order (%r after %r)" % (self.where(), key[:200], last_key[:200]))
                last_key = key
                name = key[len(self.prefix):]
                if not name or not fnmatch.fnmatchcase(name, self.glob):
                    continue
                yield (name, entry.get("VersionId") or "null", 0 if is_marker else entry.get("Size", 0), is_marker,
                       bool(entry.get("IsLatest")), entry.get("LastModified"))
            if not page.get("IsTruncated"):
                return
            previous = (key_marker, version_marker)
            key_marker, version_marker = page.get("NextKeyMarker"), page.get("NextVersionIdMarker")
            if not key_marker:
                raise StorageError("version listing of %s claims more pages but gives no key marker" % self.where())
            if (key_marker, version_marker) == previous or (previous[0] and key_marker < previous[0]):
                # Markers only move forward (keys in order); one that stands still or goes back would loop forever.
                raise StorageError("version listing of %s makes no progress (key marker %r after %r); stopped instead of looping"
                                   % (self.where(), key_marker[:200], (previous[0] or "")[:200]))

    def _version_groups(self):
        """``(name, [(version ID, size, is_marker, is_latest, LastModified)])`` per key, in key order;
        only one key's versions are held at a time."""
        for name, group in itertools.groupby(self._version_pages(), key=lambda entry: entry[0]):
            yield name, [entry[1:] for entry in group]

    def _list_versions(self):
        """One record per key whose current version is data, in key order, streamed.

        The record's time is the current version's, its size the sum of all the key's versions
        (what deleting them frees). Version IDs are not kept: a delete lists the versions again
        (see :meth:`_delete_versions`), so memory is what the plain listing needs.
        """
        for name, versions in self._version_groups():
            current = [v for v in versions if v[3]]
            if not current or current[0][2]:
                # Its current version is a delete marker (or the listing showed no current version).
                self.hidden += 1
                continue
            yield name, current[0][4], sum(v[1] for v in versions)

    def delete(self, names, sizes=None, record_names=True):
        """Delete in batches of 1000 keys (or versions); return a :class:`DeleteReport`.

        On a failure raise StorageError whose ``report`` carries what was really deleted (earlier
        batches, keys of the failing batch that succeeded) and what failed and why.
        """
        report = DeleteReport(record_names)
        if self.versions == "delete":
            self._delete_versions(names, sizes, report)
        else:
            self._delete_current(names, sizes, report)
        return report

    def _request(self, objects, quiet, report, failed_names):
        self.requests["delete"] += 1
        try:
            return self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": quiet})
        except Exception as exc:
            report.failed.extend({"name": n, "error": _s3_error(exc)} for n in failed_names)
            error = StorageError("cannot delete from %s: %s" % (self.where(), _s3_error(exc)))
            error.report = report
            raise error

    def _fail_batch(self, report, batch_size):
        first = report.failed[0] if report.failed else {"name": "", "error": ""}
        error = StorageError(
            "%d of %d deletes failed in %s, first: %s (%s)" % (len(report.failed), batch_size, self.where(), first["name"], first["error"])
        )
        error.report = report
        raise error

    def _delete_current(self, names, sizes, report):
        # Iterables, taken 1000 at a time: a million names are never copied into one more list.
        triples = zip(itertools.count(), names, sizes if sizes is not None else itertools.repeat(0))
        while True:
            chunk = list(itertools.islice(triples, S3_DELETE_BATCH))
            if not chunk:
                return
            batch = [name for _position, name, _size in chunk]
            # Not quiet: each deleted key says whether only a delete marker was added.
            response = self._request([{"Key": self.prefix + n} for n in batch], False, report, batch)
            failed = {}
            for e in response.get("Errors") or ():
                failed[e.get("Key", "")[len(self.prefix):]] = "%s: %s" % (e.get("Code"), e.get("Message"))
            markers = set(d.get("Key", "")[len(self.prefix):] for d in response.get("Deleted") or () if d.get("DeleteMarker"))
            for position, name, size in chunk:
                if name in failed:
                    report.failed.append({"name": name, "error": failed[name]})
                elif name in markers:
                    report.add(position, name, 0)
                    report.markers += 1
                else:
                    report.add(position, name, size)
            if failed:
                self._fail_batch(report, len(batch))

    def _delete_versions(self, names, sizes, report):
        """Delete every version and delete marker of ``names``, found by listing the versions again.

        ``names`` in key order (as listed) are matched against the second listing as it streams
        (nothing more is held); in any other order they are looked up in a dict. ``sizes`` (what
        the first listing saw: the sum of the key's versions) guard against deleting a version
        written since: a key whose versions add up differently is not deleted and is reported.
        A name no longer listed was deleted by someone else: it counts as deleted, freeing nothing.

        A batch holds up to 1000 versions; an artifact's versions may straddle two batches, so an
        artifact counts as deleted once all its versions are gone.
        """
        wanted = _Wanted(names, sizes)
        self._batch, self._in_flight, self._failed = [], {}, {}
        for name, versions in self._version_groups():
            found = wanted.find(name)
            if found is None:
                continue
            position, listed_size = found
            total = sum(v[1] for v in versions)
            if listed_size is not None and total != listed_size:
                report.failed.append({"name": name, "error": "changed since it was listed (its versions hold %d bytes, %d when listed);"
                                      " not deleted" % (total, listed_size)})
                continue
            self._in_flight[name] = [position, len(versions)]
            for vid, size, _marker, _latest, _when in versions:
                self._batch.append((name, vid, size))
                if len(self._batch) == S3_DELETE_BATCH:
                    self._send_versions(report)
        if self._batch:
            self._send_versions(report)
        for position, name in wanted.missing():
            report.add(position, name, 0)
        if report.failed:
            self._fail_batch(report, len(report.failed))

    def _send_versions(self, report):
        batch, self._batch = self._batch, []
        objects = [{"Key": self.prefix + n, "VersionId": vid} for n, vid, _size in batch]
        failed = self._failed
        response = self._request(objects, True, report, [n for n in _unique(n for n, _v, _s in batch) if n not in failed])
        errors = dict(
            ((e.get("Key", "")[len(self.prefix):], e.get("VersionId") or "null"), "%s: %s" % (e.get("Code"), e.get("Message")))
            for e in response.get("Errors") or ()
        )
        for name, vid, size in batch:
            if (name, vid) in errors:
                failed.setdefault(name, "version %s: %s" % (vid, errors[(name, vid)]))
                continue
            report.bytes_freed += size
            report.versions_deleted += 1
            state = self._in_flight[name]
            state[1] -= 1
            if state[1] == 0:
                del self._in_flight[name]
                if name not in failed:
                    report.add(state[0], name, 0)
        if errors:
            report.failed.extend({"name": n, "error": failed[n]} for n in _unique(n for n, _v, _s in batch) if n in failed)
            self._fail_batch(report, len(batch))


class _Wanted(object):
    """The names to delete with their positions and sizes, matched against a listing in key order.

    They are held compactly (a :class:`Names` buffer and an array of sizes, about 40 bytes a name).
    Given in key order (as the store lists them) they are matched by walking along the listing;
    in any other order, through a dict.
    """

    def __init__(self, names, sizes):
        self.names = Names()
        self.sizes = array.array("q")
        ordered, previous = True, None
        for name, size in zip(names, sizes if sizes is not None else itertools.repeat(-1)):
            if previous is not None and name <= previous:
                ordered = False
            previous = name
            self.names.append(name)
            self.sizes.append(-1 if size is None else size)
        self.found = bytearray(len(self.names))
        self.index = None if ordered else dict((name, i) for i, name in enumerate(self.names))
        self.cursor = 0

    def find(self, name):
        """``(position, size or None)`` when ``name`` is to be deleted, else None."""
        if self.index is not None:
            position = self.index.get(name)
        else:
            while self.cursor < len(self.names) and self.names[self.cursor] < name:
                self.cursor += 1
            position = self.cursor if self.cursor < len(self.names) and self.names[self.cursor] == name else None
        if position is None or self.found[position]:
            return None
        self.found[position] = 1
        size = self.sizes[position]
        return position, (None if size < 0 else size)

    def missing(self):
        """``(position, name)`` of the wanted names the listing did not show."""
        return [(i, self.names[i]) for i in range(len(self.names)) if not self.found[i]]


def _unique(items):
    seen = set()
    for item in items:
        if item not in seen:
            seen.add(item)
            yield item


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
