"""Fake S3 for backup_rotate's tests and benchmark.

``FakeS3Client`` is an in-memory stand-in for a boto3 S3 client that behaves like S3 where
backup_rotate depends on it: ListObjectsV2 and ListObjectVersions pages (delimiter, markers,
tokens), DeleteObjects with and without version IDs in unversioned, versioning-enabled and
versioning-suspended buckets (delete markers, ``null`` versions, quiet mode), and faults as
botocore raises them (``ClientError``) or as S3 reports them (per-key ``Errors``).

``GeneratedS3Server`` is a tiny threaded HTTP endpoint that answers the S3 REST API calls
backup_rotate makes (GetBucketVersioning, ListObjectsV2, DeleteObjects) from a generated key
space, so that boto3 really sends, receives and parses every page for millions of keys
without an object store holding them.
"""

import datetime
import http.server
import re
import threading
import urllib.parse
from xml.sax.saxutils import escape

UTC = datetime.timezone.utc


def client_error(code, message, operation):
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class FakeS3Client(object):
    """One bucket, versioned like S3 (``versioning``: None, ``Enabled`` or ``Suspended``).

    Faults: ``fail_versioning`` (GetBucketVersioning raises AccessDenied), ``fail_list_page``
    (that ListObjectsV2/ListObjectVersions call, 1-based, raises InternalError),
    ``fail_delete_call`` (that DeleteObjects call raises SlowDown), ``refuse`` (keys whose
    delete S3 refuses with AccessDenied in the response's Errors).
    """

    def __init__(self, bucket="bucket", versioning=None, page_size=1000):
        self.bucket = bucket
        self.versioning = versioning
        self.page_size = page_size
        self.keys = {}  # key -> versions newest first: dicts VersionId, Size, LastModified, marker
        self.calls = []
        self.serial = 0
        self.fail_versioning = False
        self.fail_list_page = None
        self.fail_delete_call = None
        self.refuse = set()

    # -- setting up -------------------------------------------------------------------------
    def _version_id(self):
        if self.versioning == "Enabled":
            self.serial += 1
            return "v%06d" % self.serial
        return "null"

    def put(self, key, size=10, when=None):
        when = when or datetime.datetime(2026, 1, 1, tzinfo=UTC) + datetime.timedelta(seconds=self.serial)
        vid = self._version_id()
        versions = [v for v in self.keys.get(key, []) if v["VersionId"] != vid]  # a null version is replaced
        self.keys[key] = [{"VersionId": vid, "Size": size, "LastModified": when, "marker": False}] + versions

    def current(self):
        """Keys whose current version is data (what ListObjectsV2 shows)."""
        return sorted(k for k, v in self.keys.items() if v and not v[0]["marker"])

    def stored_bytes(self):
        return sum(v["Size"] for versions in self.keys.values() for v in versions if not v["marker"])

    # -- the API ----------------------------------------------------------------------------
    def _check_bucket(self, bucket, operation):
        if bucket != self.bucket:
            raise client_error("NoSuchBucket", "The specified bucket does not exist", operation)

    def get_bucket_versioning(self, Bucket):
        self.calls.append("versioning")
        self._check_bucket(Bucket, "GetBucketVersioning")
        if self.fail_versioning:
            raise client_error("AccessDenied", "Access Denied", "GetBucketVersioning")
        return {"Status": self.versioning} if self.versioning else {}

    def _list_call(self, operation):
        self.calls.append("list")
        if self.fail_list_page is not None and self.calls.count("list") == self.fail_list_page:
            raise client_error("InternalError", "We encountered an internal error. Please try again.", operation)

    def _folder(self, keys, Prefix, Delimiter):
        return sorted(k for k in keys if k.startswith(Prefix) and not (Delimiter and Delimiter in k[len(Prefix):]))

    def list_objects_v2(self, Bucket, Prefix="", MaxKeys=1000, Delimiter=None, ContinuationToken=None):
        self._check_bucket(Bucket, "ListObjectsV2")
        self._list_call("ListObjectsV2")
        keys = self._folder(self.current(), Prefix, Delimiter)
        start = int(ContinuationToken or 0)
        page = keys[start:start + min(MaxKeys, self.page_size)]
        more = start + len(page) < len(keys)
        out = {
            "Contents": [{"Key": k, "LastModified": self.keys[k][0]["LastModified"], "Size": self.keys[k][0]["Size"]} for k in page],
            "IsTruncated": more,
            "KeyCount": len(page),
        }
        if more:
            out["NextContinuationToken"] = str(start + len(page))
        return out

    def list_object_versions(self, Bucket, Prefix="", MaxKeys=1000, Delimiter=None, KeyMarker=None, VersionIdMarker=None):
        self._check_bucket(Bucket, "ListObjectVersions")
        self._list_call("ListObjectVersions")
        entries = []
        for key in self._folder(self.keys, Prefix, Delimiter):
            for position, version in enumerate(self.keys[key]):
                entries.append((key, version, position == 0))
        start = 0
        if KeyMarker:
            # Resume after (KeyMarker, VersionIdMarker), or after every version of KeyMarker.
            for start, (key, version, _latest) in enumerate(entries):
                if key > KeyMarker:
                    break
                if key == KeyMarker and VersionIdMarker and version["VersionId"] == VersionIdMarker:
                    start += 1
                    break
            else:
                start = len(entries)
        page = entries[start:start + min(MaxKeys, self.page_size)]
        out = {"IsTruncated": start + len(page) < len(entries), "Versions": [], "DeleteMarkers": []}
        for key, version, latest in page:
            item = {"Key": key, "VersionId": version["VersionId"], "IsLatest": latest, "LastModified": version["LastModified"]}
            if version["marker"]:
                out["DeleteMarkers"].append(item)
            else:
                out["Versions"].append(dict(item, Size=version["Size"]))
        if out["IsTruncated"]:
            out["NextKeyMarker"], out["NextVersionIdMarker"] = page[-1][0], page[-1][1]["VersionId"]
        return out

    def delete_objects(self, Bucket, Delete):
        self._check_bucket(Bucket, "DeleteObjects")
        if len(Delete["Objects"]) > 1000:
            raise client_error("MalformedXML", "more than 1000 objects", "DeleteObjects")
        self.calls.append("delete")
        if self.fail_delete_call is not None and self.calls.count("delete") == self.fail_delete_call:
            raise client_error("SlowDown", "Please reduce your request rate.", "DeleteObjects")
        deleted, errors = [], []
        for obj in Delete["Objects"]:
            key, vid = obj["Key"], obj.get("VersionId")
            if key in self.refuse:
                error = {"Key": key, "Code": "AccessDenied", "Message": "Access Denied"}
                if vid:
                    error["VersionId"] = vid
                errors.append(error)
                continue
            deleted.append(self._delete_one(key, vid))
        out = {"Errors": errors} if errors else {}
        if not Delete.get("Quiet"):
            out["Deleted"] = deleted
        return out

    def _delete_one(self, key, vid):
        versions = self.keys.get(key, [])
        if vid is not None:
            # Permanent: remove exactly that version (deleting a missing version succeeds too).
            for version in versions:
                if version["VersionId"] == vid:
                    versions.remove(version)
                    if not versions:
                        del self.keys[key]
                    if version["marker"]:
                        return {"Key": key, "VersionId": vid, "DeleteMarker": True, "DeleteMarkerVersionId": vid}
                    break
            return {"Key": key, "VersionId": vid}
        if not self.versioning:
            self.keys.pop(key, None)
            return {"Key": key}
        # Versioned: a delete marker becomes the current version; Suspended replaces the null version.
        marker_id = self._version_id()
        kept = [v for v in versions if v["VersionId"] != marker_id]
        self.keys[key] = [{"VersionId": marker_id, "Size": 0, "LastModified": datetime.datetime.now(UTC), "marker": True}] + kept
        return {"Key": key, "DeleteMarker": True, "DeleteMarkerVersionId": marker_id}


class GeneratedS3Server(object):
    """An HTTP S3 endpoint over a generated, sorted key space (``key(i)`` for ``i`` in ``range(count)``).

    ``index(key)`` maps a key back to ``i``. Every object has ``size`` bytes and was modified at
    ``modified``. Deleted objects are remembered in a bytearray. ``versioning='Enabled'``
    answers deletes with delete markers (the objects leave the listing, as in S3, but the
    answer says only a marker was added). ``refuse_deletes``: every DeleteObjects answers 403 AccessDenied.
    ``requests`` counts requests by kind.
    """

    def __init__(self, bucket, key, index, count, size=1024, versioning=None, refuse_deletes=False):
        self.bucket, self.key, self.index, self.count, self.size = bucket, key, index, count, size
        self.versioning = versioning
        self.refuse_deletes = refuse_deletes
        self.deleted = bytearray(count)
        self.requests = {"versioning": 0, "list": 0, "delete": 0}
        self.modified = "2026-11-01T00:00:00.000Z"
        self.lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = body.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                path, _sep, query = self.path.partition("?")
                params = urllib.parse.parse_qs(query, keep_blank_values=True)
                if path.strip("/") != server.bucket:
                    return self.reply(404, error_xml("NoSuchBucket", "The specified bucket does not exist"))
                if "versioning" in params:
                    return self.reply(200, server.versioning_xml())
                if params.get("list-type") == ["2"]:
                    return self.reply(200, server.list_xml(params))
                if "versions" in params:
                    return self.reply(200, server.list_versions_xml(params))
                return self.reply(400, error_xml("NotImplemented", "not in this fake"))

            def do_POST(self):
                path, _sep, query = self.path.partition("?")
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode("utf-8")
                if path.strip("/") != server.bucket or "delete" not in urllib.parse.parse_qs(query, keep_blank_values=True):
                    return self.reply(400, error_xml("NotImplemented", "not in this fake"))
                status, answer = server.delete_xml(body)
                return self.reply(status, answer)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = None

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.httpd.server_address[1]

    def __enter__(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def remaining(self):
        return self.count - sum(self.deleted)

    def versioning_xml(self):
        with self.lock:
            self.requests["versioning"] += 1
        status = "<Status>%s</Status>" % self.versioning if self.versioning else ""
        return '<?xml version="1.0" encoding="UTF-8"?><VersioningConfiguration>%s</VersioningConfiguration>' % status

    def list_xml(self, params):
        with self.lock:
            self.requests["list"] += 1
        prefix = params.get("prefix", [""])[0]
        max_keys = min(int(params.get("max-keys", ["1000"])[0]), 1000)
        start = int(params.get("continuation-token", ["0"])[0])
        contents, i = [], start
        while i < self.count and len(contents) < max_keys:
            key = self.key(i)
            if not self.deleted[i] and key.startswith(prefix):
                contents.append(
                    "<Contents><Key>%s</Key><LastModified>%s</LastModified><ETag>&quot;0&quot;</ETag>"
                    "<Size>%d</Size><StorageClass>STANDARD</StorageClass></Contents>" % (escape(key), self.modified, self.size)
                )
            i += 1
        truncated = i < self.count
        token = "<NextContinuationToken>%d</NextContinuationToken>" % i if truncated else ""
        return (
            '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>%s</Name><Prefix>%s</Prefix>'
            "<KeyCount>%d</KeyCount><MaxKeys>%d</MaxKeys><Delimiter>/</Delimiter><IsTruncated>%s</IsTruncated>%s%s"
            "</ListBucketResult>" % (self.bucket, escape(prefix), len(contents), max_keys, "true" if truncated else "false",
                                     "".join(contents), token)
        )

    def list_versions_xml(self, params):
        """ListObjectVersions: one version per object (``v<i>``, current), 1000 a page, after ``key-marker``."""
        with self.lock:
            self.requests["list"] += 1
        prefix = params.get("prefix", [""])[0]
        max_keys = min(int(params.get("max-keys", ["1000"])[0]), 1000)
        marker = params.get("key-marker", [""])[0]
        i = self.index(marker) + 1 if marker else 0
        versions = []
        last = None
        while i < self.count and len(versions) < max_keys:
            key = self.key(i)
            if not self.deleted[i] and key.startswith(prefix):
                versions.append(
                    "<Version><Key>%s</Key><VersionId>v%d</VersionId><IsLatest>true</IsLatest><LastModified>%s</LastModified>"
                    "<ETag>&quot;0&quot;</ETag><Size>%d</Size><StorageClass>STANDARD</StorageClass></Version>"
                    % (escape(key), i, self.modified, self.size)
                )
                last = (key, i)
            i += 1
        truncated = i < self.count
        markers = ""
        if truncated:
            key = last[0] if last else self.key(i - 1)
            markers = "<NextKeyMarker>%s</NextKeyMarker><NextVersionIdMarker>v%d</NextVersionIdMarker>" % (escape(key), self.index(key))
        return (
            '<?xml version="1.0" encoding="UTF-8"?><ListVersionsResult><Name>%s</Name><Prefix>%s</Prefix>'
            "<MaxKeys>%d</MaxKeys><Delimiter>/</Delimiter><IsTruncated>%s</IsTruncated>%s%s</ListVersionsResult>"
            % (self.bucket, escape(prefix), max_keys, "true" if truncated else "false", markers, "".join(versions))
        )

    def delete_xml(self, body):
        with self.lock:
            self.requests["delete"] += 1
        if self.refuse_deletes:
            return 403, error_xml("AccessDenied", "Access Denied")
        objects = re.findall(r"<Object>(.*?)</Object>", body, re.S)
        quiet = "<Quiet>true</Quiet>" in body
        out = []
        for obj in objects:
            key = unescape_xml(re.search(r"<Key>(.*?)</Key>", obj).group(1))
            vid = re.search(r"<VersionId>(.*?)</VersionId>", obj)
            self.deleted[self.index(key)] = 1
            if vid:
                # By version ID: that version is gone for good (each object has one).
                out.append("<Deleted><Key>%s</Key><VersionId>%s</VersionId></Deleted>" % (escape(key), escape(vid.group(1))))
                continue
            if self.versioning:
                out.append("<Deleted><Key>%s</Key><DeleteMarker>true</DeleteMarker>"
                           "<DeleteMarkerVersionId>m%d</DeleteMarkerVersionId></Deleted>" % (escape(key), self.index(key)))
                continue
            out.append("<Deleted><Key>%s</Key></Deleted>" % escape(key))
        return 200, '<?xml version="1.0" encoding="UTF-8"?><DeleteResult>%s</DeleteResult>' % ("" if quiet else "".join(out))


def error_xml(code, message):
    return '<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message></Error>' % (code, escape(message))


def unescape_xml(text):
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"').replace("&apos;", "'").replace("&amp;", "&")
