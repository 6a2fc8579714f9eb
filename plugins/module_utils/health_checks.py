# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kinds of health check a gate can run. Each builder takes one check's options and
returns a callable ``run(budget=None)`` that runs the check once, taking at most the check's
``timeout`` and at most ``budget`` seconds (the time the gate has left), and returns an
:class:`Outcome`.

Nothing here changes the target: checks only connect, read and query (PostgreSQL sessions are
read-only; ``command`` checks are not run in check mode unless marked ``read_only``).

Results are bounded and carry no secrets: bodies and command output are read up to
``READ_LIMIT`` bytes, values and errors are cut to ``gate.RESULT_LIMIT`` characters, and every
password, header value and URL credential of the check is replaced by ``********``.
"""

from __future__ import annotations

import atexit
import base64
import http.client
import json
import math
import netrc
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import traceback

from ansible.module_utils.common.text.converters import to_native, to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError
from ansible.module_utils.six.moves.urllib.parse import unquote, urlsplit
from ansible.module_utils.urls import open_url

from ansible_collections.keel.platform.plugins.module_utils import gate as _gate
from ansible_collections.keel.platform.plugins.module_utils.gate import RESULT_LIMIT, Outcome, clip

KINDS = ("http", "tcp", "docker", "postgresql", "redis", "command")

# Options each kind needs; checked before the gate starts.
REQUIRED = {
    "http": ("url",),
    "tcp": ("host", "port"),
    "docker": ("container",),
    "postgresql": (),
    "redis": (),
    "command": ("argv",),
}

# Python libraries a kind needs (redis speaks RESP itself and needs none).
LIBRARIES = {"postgresql": "psycopg2", "docker": "docker"}

# Bytes of a body or of each command output stream read for matching; the rest is drained
# (command output) or not read at all (bodies).
READ_LIMIT = 1024 * 1024

MASK = "********"


class CheckConfigError(ValueError):
    pass


class MissingLibraryError(CheckConfigError):
    """A check needs a Python library that cannot be imported; ``library`` names it."""

    def __init__(self, message, library, exception):
        super(MissingLibraryError, self).__init__(message)
        self.library = library
        self.exception = exception


def _ms(start):
    return (time.monotonic() - start) * 1000.0


def _limit(opts, budget):
    """Seconds this attempt may take: the check's timeout, never more than the gate's budget."""
    timeout = opts.get("timeout") or 5.0
    if budget is not None:
        timeout = min(timeout, budget)
    return max(0.001, timeout)


def _json_field(document, path):
    """Follow a dotted path (``status.db``; list indexes allowed: ``items.0.ok``)."""
    value = document
    for part in path.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise KeyError(path)
    return value


def secret_values(opts):
    """Every secret a check's options carry: its password, its header values, the credentials
    of its URL (raw and decoded). Modules add them to ``no_log_values``; results are scrubbed."""
    found = set()
    if opts.get("password"):
        found.add(str(opts["password"]))
    for value in (opts.get("headers") or {}).values():
        if value not in (None, ""):
            found.add(str(value))
    url = opts.get("url")
    if url:
        # Read without urlsplit, which refuses malformed URLs (their credentials are secret too).
        userinfo, _host, query = _url_pieces(str(url))
        if userinfo is not None and ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            found.update((password, unquote(password), userinfo, unquote(userinfo)))
        for key, value in _query_items(query):
            if value and SECRET_QUERY_KEY.search(unquote(key)):
                found.update((value, unquote(value), unquote(value.replace("+", " "))))
    # Values of one or two characters would garble every message and protect nothing.
    return sorted((s for s in found if len(s) >= 3), key=len, reverse=True)


def _scrub(text, secrets):
    if text is None or not secrets:
        return text
    text = str(text)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def _guarded(run, opts):
    """``run`` with its outcome cut to size and scrubbed of the check's secrets."""
    secrets = secret_values(opts)

    def guarded(budget=None):
        outcome = run(budget)
        outcome.value = clip(_scrub(outcome.value, secrets))
        outcome.error = clip(_scrub(outcome.error, secrets))
        return outcome

    return guarded


# Query parameters whose values are also masked wherever they appear (not only in the URL).
SECRET_QUERY_KEY = re.compile(r"(?i)(token|secret|pass|pwd|key|auth|sig|cred|session|code)")


def _url_pieces(url):
    """``(userinfo or None, host part, query or None)`` of a URL, read the way urlsplit splits it
    but without validating anything (malformed URLs are masked too)."""
    rest = url.split("://", 1)[1] if "://" in url else url
    rest = rest.split("#", 1)[0]
    end = min([i for i in (rest.find("/"), rest.find("?")) if i >= 0] or [len(rest)])
    netloc = rest[:end]
    query = rest.split("?", 1)[1] if "?" in rest else None
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        return userinfo, host, query
    return None, netloc, query


def _query_items(query):
    for item in (query or "").split("&"):
        if item:
            key, _sep, value = item.partition("=")
            yield key, value


def redact_url(url):
    """The URL for messages: any password and every query value (tokens travel there) replaced by
    ``********``, the fragment dropped. Malformed URLs are masked the same way."""
    url = str(url)
    userinfo, _host, query = _url_pieces(url)
    scheme_end = url.find("://") + 3 if "://" in url else 0
    head, tail = url[:scheme_end], url[scheme_end:]
    if userinfo is not None and ":" in userinfo:
        tail = "%s:%s@%s" % (userinfo.split(":", 1)[0], MASK, tail[len(userinfo) + 1:])
    tail = tail.split("#", 1)[0]
    if query is not None:
        masked = "&".join("%s=%s" % (key, MASK) if sep else MASK
                          for key, sep, _value in (item.partition("=") for item in query.split("&") if item))
        tail = tail.split("?", 1)[0] + "?" + masked
    return head + tail


def _url_problem(url):
    """Why ``url`` cannot be requested (malformed, bad scheme, no host, bad port), or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urlsplit's messages quote no part of the URL except a bad port, which is no secret.
        return "url %s is malformed: %s" % (redact_url(url), exc)
    if parts.scheme.lower() not in ("http", "https"):
        return "url must start with http:// or https://"
    if not parts.hostname:
        return "url %s has no host name" % redact_url(url)
    if port is not None and not 0 < port < 65536:
        return "url %s: port %d is not between 1 and 65535" % (redact_url(url), port)
    return None


# ---------------------------------------------------------------- http


def _split_host_port(value, default_port):
    """``name``, ``name:port``, ``[v6]`` or ``[v6]:port`` -> (host, port)."""
    if value.startswith("["):
        host, _sep, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, port = value.split(":")
    else:
        host, port = value, ""
    return host, int(port) if port.isdigit() else default_port


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the URL's address, with ``server_name`` as TLS server name (SNI) and as the name
    the certificate is verified against: the Host header's name when one is given."""

    def __init__(self, host, port, server_name, context, timeout):
        http.client.HTTPSConnection.__init__(self, host, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._tls_context = context

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls_context.wrap_socket(self.sock, server_hostname=self._server_name)


def _tls_context(opts):
    if not opts.get("validate_certs", True):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=opts.get("ca_file") or None)


def _netrc_auth(host):
    """Basic credentials for ``host`` from .netrc (``NETRC`` or ~/.netrc), if any."""
    path = os.environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if not os.path.isfile(path):
        return None
    try:
        entry = netrc.netrc(path).authenticators(host)
    except (netrc.NetrcParseError, OSError):
        return None
    if not entry:
        return None
    return entry[0], entry[2]


def _http_direct(opts, headers, timeout):
    """One request straight to the URL's address (no proxy); returns (status, body, truncated)."""
    parts = urlsplit(opts["url"])
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("unsupported URL scheme %r (http or https)" % parts.scheme)
    host = parts.hostname
    port = parts.port or (443 if scheme == "https" else 80)
    if parts.username is not None or parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password or "")
    elif opts.get("use_netrc"):
        user, password = _netrc_auth(host) or (None, None)
    else:
        user = password = None
    if user is not None and not any(k.lower() == "authorization" for k in headers):
        token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")
        headers["Authorization"] = "Basic " + token
    if scheme == "https":
        server_name = _split_host_port(opts["host_header"], port)[0] if opts.get("host_header") else host
        conn = _HTTPSConnection(host, port, server_name, _tls_context(opts), timeout)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    try:
        # A Host header in ``headers`` replaces the one http.client would send.
        conn.request(opts.get("method") or "GET", target, headers=headers)
        response = conn.getresponse()
        body = response.read(READ_LIMIT + 1)
        return response.status, body[:READ_LIMIT], len(body) > READ_LIMIT
    finally:
        conn.close()


def _http_via_urllib(opts, headers, timeout):
    """One request through Ansible's open_url: environment proxies honoured (use_proxy)."""
    try:
        response = open_url(
            opts["url"], method=opts.get("method") or "GET", headers=headers, timeout=timeout,
            validate_certs=opts.get("validate_certs", True), ca_path=opts.get("ca_file"), follow_redirects="none",
            use_proxy=True, use_netrc=bool(opts.get("use_netrc")),
        )
        status, body = response.getcode(), response.read(READ_LIMIT + 1)
    except HTTPError as exc:
        status, body = exc.code, exc.read(READ_LIMIT + 1) if hasattr(exc, "read") else b""
    return status, body[:READ_LIMIT], len(body) > READ_LIMIT


def http_check(opts):
    expected = opts.get("status_codes") or [200]

    def run(budget=None):
        headers = dict(opts.get("headers") or {})
        if opts.get("host_header"):
            headers = dict((k, v) for k, v in headers.items() if k.lower() != "host")
            headers["Host"] = opts["host_header"]
        start = time.monotonic()
        try:
            fetch = _http_via_urllib if opts.get("use_proxy") else _http_direct
            status, body, truncated = fetch(opts, headers, _limit(opts, budget))
        except Exception as exc:
            return Outcome(False, error="request to %s failed: %s" % (redact_url(opts["url"]), to_native(exc)), latency_ms=_ms(start))
        latency = _ms(start)
        text = to_text(body, errors="surrogate_or_replace")
        note = " (first %d bytes of the body)" % READ_LIMIT if truncated else ""
        if status not in expected:
            return Outcome(False, value="HTTP %s" % status, error="status %s, expected %s" % (status, expected), latency_ms=latency)
        if opts.get("body_contains") and opts["body_contains"] not in text:
            return Outcome(False, value=text, error="body does not contain %r%s" % (opts["body_contains"], note), latency_ms=latency)
        if opts.get("json_field"):
            try:
                found = _json_field(json.loads(text), opts["json_field"])
            except (ValueError, KeyError):
                return Outcome(False, value=text, error="no JSON field %r in the body%s" % (opts["json_field"], note), latency_ms=latency)
            if opts.get("json_value") is not None and found != opts["json_value"]:
                shown = clip(json.dumps(found), RESULT_LIMIT // 2)
                return Outcome(False, value=shown, error="JSON field %r is %s, expected %s"
                               % (opts["json_field"], shown, clip(json.dumps(opts["json_value"]), RESULT_LIMIT // 4)),
                               latency_ms=latency)
        if opts.get("max_latency_ms") and latency > opts["max_latency_ms"]:
            return Outcome(False, value="%.1f ms" % latency, error="latency %.1f ms over %s ms" % (latency, opts["max_latency_ms"]), latency_ms=latency)
        return Outcome(True, value="HTTP %s" % status, latency_ms=latency)

    return _guarded(run, opts)


# ---------------------------------------------------------------- tcp


def tcp_check(opts):
    def run(budget=None):
        start = time.monotonic()
        try:
            sock = socket.create_connection((opts["host"], opts["port"]), timeout=_limit(opts, budget))
            sock.close()
        except (OSError, socket.timeout) as exc:
            return Outcome(False, error="cannot connect to %s:%s: %s" % (opts["host"], opts["port"], exc), latency_ms=_ms(start))
        return Outcome(True, value="connected", latency_ms=_ms(start))

    return _guarded(run, opts)


# ---------------------------------------------------------------- docker


def docker_check(opts, docker_module=None):
    """The container's own health status (its HEALTHCHECK); running without one is not healthy."""
    def run(budget=None):
        sdk = docker_module
        if sdk is None:
            import docker as sdk  # availability is checked by build() before the gate starts
        start = time.monotonic()
        try:
            client = sdk.DockerClient(base_url=opts.get("docker_host") or "unix:///var/run/docker.sock", timeout=_limit(opts, budget))
            try:
                state = client.api.inspect_container(opts["container"])["State"]
            finally:
                client.close()
        except Exception as exc:
            return Outcome(False, error="cannot inspect container %s: %s" % (opts["container"], exc), latency_ms=_ms(start))
        health = (state.get("Health") or {}).get("Status")
        value = "%s/%s" % (state.get("Status"), health or "no healthcheck")
        if health == "healthy":
            return Outcome(True, value=value, latency_ms=_ms(start))
        return Outcome(False, value=value, error="container %s is %s" % (opts["container"], value), latency_ms=_ms(start))

    return _guarded(run, opts)


# ---------------------------------------------------------------- postgresql

# What a replica reports about itself. The WAL receiver's row exists only while it runs; its
# status is visible to superusers and members of pg_read_all_stats (pg_monitor) only.
REPLICA_QUERY = (
    "SELECT pg_is_in_recovery(),"
    " pg_last_wal_receive_lsn()::text,"
    " pg_last_wal_replay_lsn()::text,"
    " EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float,"
    " (SELECT pid FROM pg_stat_wal_receiver LIMIT 1),"
    " (SELECT status FROM pg_stat_wal_receiver LIMIT 1),"
    " (SELECT latest_end_lsn::text FROM pg_stat_wal_receiver LIMIT 1),"
    " CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END"
)
PRIMARY_QUERY = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END"


def lsn_to_int(lsn):
    """``16/B374D848`` -> its byte position (None stays None)."""
    if lsn is None:
        return None
    high, low = str(lsn).split("/")
    return (int(high, 16) << 32) + int(low, 16)


def _pg_connect(pg, opts, host, port, timeout):
    kwargs = dict(
        host=host or "localhost", port=port or 5432, user=opts.get("user"), password=opts.get("password"),
        dbname=opts.get("database") or "postgres", sslmode=opts.get("sslmode") or "prefer",
        # libpq waits at least 2 s to connect; the gate does not wait for a late answer anyway.
        connect_timeout=max(2, int(math.ceil(timeout))),
        # Every statement is bounded, and the session cannot write.
        options="-c statement_timeout=%d -c default_transaction_read_only=on" % max(1, int(timeout * 1000)),
        application_name="keel-health-gate",
    )
    if opts.get("ca_file"):
        kwargs["sslrootcert"] = opts["ca_file"]
    return pg.connect(**kwargs)


def _pg_query(pg, opts, host, port, timeout, sql):
    conn = _pg_connect(pg, opts, host, port, timeout)
    try:
        cur = conn.cursor()
        cur.execute(sql)
        return cur.fetchone()
    finally:
        conn.close()


def _lag_verdict(opts, row, primary_lsn):
    """(ok, value, error) of a replica's lag check from REPLICA_QUERY's row.

    Caught up means: the WAL receiver is streaming, and the replica has replayed everything
    the primary has written (``primary_lsn``, read from the primary just before) or, without
    the primary, everything it has received or the primary last told it about.
    """
    _in_recovery, receive, replay, since_replay, pid, status, latest_end, paused = row
    replay_pos = lsn_to_int(replay)
    if primary_lsn is not None:
        reference, against = lsn_to_int(primary_lsn), "the primary's current position"
    else:
        reference = max(p for p in (lsn_to_int(receive), lsn_to_int(latest_end), replay_pos, 0) if p is not None)
        against = "received WAL"
    lag_bytes = max(0, reference - (replay_pos or 0))
    # Nothing left to replay: no lag, however long ago the last transaction was (idle primary).
    if lag_bytes == 0:
        lag_seconds = 0.0
    else:
        lag_seconds = since_replay
    receiver = status or ("running (status not visible: grant pg_monitor)" if pid else "not running")
    value = "replica, lag %d bytes / %s behind %s, WAL receiver %s%s" % (
        lag_bytes, "%.1f s" % lag_seconds if lag_seconds is not None else "unknown s", against, receiver,
        ", replay paused" if paused else "")
    if status != "streaming":
        if pid and not status:
            return False, value, "cannot see the WAL receiver's status; the check's user needs pg_monitor (or pg_read_all_stats)"
        return False, value, ("WAL receiver is %s: the replica is not streaming from a primary, so it cannot be"
                              " caught up" % receiver)
    if opts.get("max_lag_bytes") is not None and lag_bytes > opts["max_lag_bytes"]:
        return False, value, "replay lag %d bytes over %d (behind %s)" % (lag_bytes, opts["max_lag_bytes"], against)
    if opts.get("max_lag_seconds") is not None:
        if lag_seconds is None:
            return False, value, "replay lag unknown: %d bytes behind and no transaction replayed yet" % lag_bytes
        if lag_seconds > opts["max_lag_seconds"]:
            return False, value, "replay lag %.1f s over %s s (behind %s)" % (lag_seconds, opts["max_lag_seconds"], against)
    return True, value, None


def postgresql_check(opts, driver=None):
    """Ready (answers a query), optionally in a role, optionally with bounded replication lag."""
    lag_check = opts.get("max_lag_bytes") is not None or opts.get("max_lag_seconds") is not None

    def run(budget=None):
        pg = driver
        if pg is None:
            import psycopg2 as pg  # availability is checked by build() before the gate starts
        start = time.monotonic()
        timeout = _limit(opts, budget)
        primary_lsn = None
        if lag_check and opts.get("primary_host"):
            # The primary first: whatever the replica has replayed after this is caught up.
            try:
                p_recovery, primary_lsn = _pg_query(pg, opts, opts["primary_host"], opts.get("primary_port") or opts.get("port"),
                                                    timeout, PRIMARY_QUERY)
            except Exception as exc:
                return Outcome(False, error="cannot read the primary's position (%s): %s" % (opts["primary_host"], str(exc).strip()),
                               latency_ms=_ms(start))
            if p_recovery:
                return Outcome(False, error="primary_host %s is itself in recovery (a replica)" % opts["primary_host"],
                               latency_ms=_ms(start))
            timeout = max(0.001, timeout - (time.monotonic() - start))
        try:
            conn = _pg_connect(pg, opts, opts.get("host"), opts.get("port"), timeout)
        except Exception as exc:
            return Outcome(False, error="cannot connect: %s" % str(exc).strip(), latency_ms=_ms(start))
        try:
            cur = conn.cursor()
            cur.execute(REPLICA_QUERY)
            row = cur.fetchone()
        except Exception as exc:
            return Outcome(False, error="query failed: %s" % str(exc).strip(), latency_ms=_ms(start))
        finally:
            conn.close()
        latency = _ms(start)
        role = "replica" if row[0] else "primary"
        wanted = opts.get("role") or "any"
        if role == "primary":
            value = "primary"
        else:
            ok, value, error = _lag_verdict(opts, row, primary_lsn)
        if wanted != "any" and wanted != role:
            return Outcome(False, value=value, error="server is a %s, expected a %s" % (role, wanted), latency_ms=latency)
        if role == "replica" and lag_check and not ok:
            return Outcome(False, value=value, error=error, latency_ms=latency)
        return Outcome(True, value=value, latency_ms=latency)

    return _guarded(run, opts)


# ---------------------------------------------------------------- redis


class RedisError(Exception):
    pass


def _redis_call(sock, reader, *args):
    """Send one command in RESP and read one reply (the subset Redis' PING/AUTH/INFO use)."""
    payload = b"*%d\r\n" % len(args)
    for arg in args:
        data = str(arg).encode("utf-8")
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    sock.sendall(payload)
    line = reader.readline()
    if not line:
        raise RedisError("connection closed")
    kind, rest = line[:1], line[1:].rstrip(b"\r\n")
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        length = int(rest)
        if length < 0:
            return None
        data = reader.read(length + 2)
        return data[:-2].decode("utf-8", "replace")
    raise RedisError("unexpected reply %r" % line[:40])


def redis_check(opts):
    """PING (after AUTH), then the replication role and, for replicas, the master link."""
    def run(budget=None):
        start = time.monotonic()
        try:
            sock = socket.create_connection((opts.get("host") or "localhost", opts.get("port") or 6379), timeout=_limit(opts, budget))
        except (OSError, socket.timeout) as exc:
            return Outcome(False, error="cannot connect: %s" % exc, latency_ms=_ms(start))
        try:
            if opts.get("tls"):
                sock = _tls_context(opts).wrap_socket(sock, server_hostname=opts.get("host") or "localhost")
            reader = sock.makefile("rb")
            if opts.get("password"):
                if opts.get("username"):
                    _redis_call(sock, reader, "AUTH", opts["username"], opts["password"])
                else:
                    _redis_call(sock, reader, "AUTH", opts["password"])
            pong = _redis_call(sock, reader, "PING")
            info = _redis_call(sock, reader, "INFO", "replication") or ""
        except (RedisError, OSError, socket.timeout) as exc:
            return Outcome(False, error="redis: %s" % (exc or type(exc).__name__), latency_ms=_ms(start))
        finally:
            sock.close()
        latency = _ms(start)
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        role = "replica" if fields.get("role") == "slave" else fields.get("role", "unknown")
        link = fields.get("master_link_status")
        value = role + (", master link %s" % link if link else "")
        if pong != "PONG":
            return Outcome(False, value=str(pong), error="PING answered %r" % pong, latency_ms=latency)
        wanted = opts.get("role") or "any"
        if wanted != "any" and wanted != role:
            return Outcome(False, value=value, error="server is a %s, expected a %s" % (role, wanted), latency_ms=latency)
        if opts.get("require_master_link") and role == "replica" and link != "up":
            return Outcome(False, value=value, error="master link is %s" % link, latency_ms=latency)
        return Outcome(True, value=value, latency_ms=latency)

    return _guarded(run, opts)


# ---------------------------------------------------------------- command


def _drain(stream, keep):
    """Read ``stream`` to its end, keeping its first ``keep`` bytes; returns [kept, total]."""
    state = [b"", 0]

    def reader():
        while True:
            chunk = stream.read(65536)
            if not chunk:
                break
            if len(state[0]) < keep:
                state[0] += chunk[:keep - len(state[0])]
            state[1] += len(chunk)

    thread = threading.Thread(target=reader)
    thread.daemon = True
    thread.start()
    return state, thread


# Process groups of command checks still running: killed when the gate returns and at exit, so
# a command the gate stopped waiting for is never left behind.
_RUNNING = {}
_RUNNING_LOCK = threading.Lock()


def kill_running():
    """Kill every command check's process group still running; returns how many were killed."""
    with _RUNNING_LOCK:
        procs = list(_RUNNING.values())
        _RUNNING.clear()
    for proc in procs:
        proc.keel_killed = True  # run_bounded reports it as killed (rc None), not by its signal
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=1.0)
        except (subprocess.TimeoutExpired, OSError):
            pass
    return len(procs)


_gate.on_return(kill_running)
atexit.register(kill_running)


def _margin(timeout):
    """How much earlier than its budget a command is stopped, so that it is stopped (and reported
    as not finished) before the gate stops waiting for it: a tenth, between 50 ms and 500 ms."""
    return min(0.5, max(0.05, timeout * 0.1))


def run_bounded(argv, timeout, keep=READ_LIMIT):
    """Run ``argv`` (no shell) for at most ``timeout`` seconds; its whole process group is killed
    after that. Returns (rc or None when killed, stdout, stderr, stdout_total_bytes); at most
    ``keep`` bytes of each stream are held. While it runs, its group is known to
    :func:`kill_running`."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=0, start_new_session=True)
    with _RUNNING_LOCK:
        _RUNNING[proc.pid] = proc
    try:
        return _wait_bounded(proc, timeout, keep)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(proc.pid, None)


def _wait_bounded(proc, timeout, keep):
    out, out_thread = _drain(proc.stdout, keep)
    err, err_thread = _drain(proc.stderr, keep)
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        rc = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.wait()
    if getattr(proc, "keel_killed", False):
        rc = None
    # Descendants that kept the pipes open were killed with the group (or are not waited for).
    out_thread.join(1.0)
    err_thread.join(1.0)
    proc.stdout.close()
    proc.stderr.close()
    return rc, out[0], err[0], out[1]


def command_check(opts, check_mode=False):
    if check_mode and not opts.get("read_only"):
        def skipped(budget=None):
            return Outcome(True, value="not run in check mode (mark the check read_only to run it)", skipped=True)

        return skipped

    def run(budget=None):
        start = time.monotonic()
        limit = _limit(opts, budget)
        if budget is not None and limit >= budget - _margin(budget):
            # Stopped a little before the gate stops waiting: reported as not finished, not as "no answer".
            limit = max(0.001, budget - _margin(budget))
        try:
            rc, stdout, stderr, total = run_bounded(opts["argv"], limit)
        except OSError as exc:
            return Outcome(False, error="cannot run %s: %s" % (opts["argv"][0], exc), latency_ms=_ms(start))
        latency = _ms(start)
        if rc is None:
            return Outcome(False, value="killed", error="%s did not finish within %.1f s" % (opts["argv"][0], limit), latency_ms=latency)
        out = to_text(stdout, errors="surrogate_or_replace").strip()
        expected = opts.get("expected_rc") or 0
        if rc != expected:
            err = to_text(stderr, errors="surrogate_or_replace").strip()
            return Outcome(False, value="rc=%d" % rc, error="exit code %d, expected %d%s"
                           % (rc, expected, (": " + err[-(RESULT_LIMIT // 2):]) if err else ""), latency_ms=latency)
        if opts.get("stdout_contains") and opts["stdout_contains"] not in out:
            note = " (first %d of %d bytes searched)" % (READ_LIMIT, total) if total > READ_LIMIT else ""
            return Outcome(False, value=out[-(RESULT_LIMIT // 2):], error="output does not contain %r%s" % (opts["stdout_contains"], note),
                           latency_ms=latency)
        return Outcome(True, value="rc=%d" % rc, latency_ms=latency)

    return _guarded(run, opts)


BUILDERS = {
    "http": http_check,
    "tcp": tcp_check,
    "docker": docker_check,
    "postgresql": postgresql_check,
    "redis": redis_check,
    "command": command_check,
}


def missing_library(kind):
    """``(library, traceback)`` when a check of ``kind`` cannot run for want of a library, else None."""
    library = LIBRARIES.get(kind)
    if library is None:
        return None
    try:
        __import__(library)
    except ImportError:
        return library, traceback.format_exc()
    return None


def build(checks, check_mode=False):
    """``[(name, kind, callable)]`` from the module's ``checks`` option; errors name the check.

    Raises :class:`CheckConfigError` for a bad check and :class:`MissingLibraryError` when a
    check needs a Python library that is not installed, before any check runs. In
    ``check_mode``, command checks not marked ``read_only`` are skipped.
    """
    out, names = [], set()
    for index, opts in enumerate(checks):
        kind = opts.get("type")
        name = opts.get("name") or "%s[%d]" % (kind, index)
        if kind not in BUILDERS:
            raise CheckConfigError("checks[%d]: unknown check type %r (one of %s)" % (index, kind, ", ".join(KINDS)))
        missing = [key for key in REQUIRED[kind] if opts.get(key) in (None, "", [])]
        if missing:
            raise CheckConfigError("checks[%d] (%s): a %s check needs %s" % (index, name, kind, ", ".join(missing)))
        if name in names:
            raise CheckConfigError("checks[%d]: the name %r is used twice" % (index, name))
        role = opts.get("role") or "any"
        if (kind == "postgresql" and role == "master") or (kind == "redis" and role == "primary") or \
                (kind not in ("postgresql", "redis") and role != "any"):
            raise CheckConfigError("checks[%d] (%s): role %r does not apply to a %s check" % (index, name, role, kind))
        if opts.get("timeout") is None or opts["timeout"] <= 0:
            raise CheckConfigError("checks[%d] (%s): timeout must be more than 0 seconds" % (index, name))
        for key in ("port", "primary_port"):
            if opts.get(key) is not None and not 0 < opts[key] < 65536:
                raise CheckConfigError("checks[%d] (%s): %s %d is not between 1 and 65535" % (index, name, key, opts[key]))
        if kind == "http":
            problem = _url_problem(opts["url"])
            if problem:
                raise CheckConfigError("checks[%d] (%s): %s" % (index, name, problem))
            scheme = urlsplit(opts["url"]).scheme.lower()
            if scheme == "https" and opts.get("host_header") and opts.get("use_proxy"):
                raise CheckConfigError("checks[%d] (%s): host_header on an https URL sets the TLS server name, which is"
                                       " not possible through a proxy; drop use_proxy or host_header" % (index, name))
        if kind == "postgresql" and opts.get("role") == "primary" and opts.get("primary_host"):
            raise CheckConfigError("checks[%d] (%s): primary_host is for checks of a replica's lag" % (index, name))
        lack = missing_library(kind)
        if lack:
            raise MissingLibraryError("checks[%d] (%s): a %s check needs the Python library %s, which cannot be imported"
                                      % (index, name, kind, lack[0]), lack[0], lack[1])
        names.add(name)
        if kind == "command":
            out.append((name, kind, command_check(opts, check_mode=check_mode)))
        else:
            out.append((name, kind, BUILDERS[kind](opts)))
    return out


# Argument spec shared by every module that gates on health (documented in the
# keel.platform.health_gate doc fragment).
CHECK_OPTIONS = dict(
    name=dict(type="str"),
    type=dict(type="str", required=True, choices=list(KINDS)),
    timeout=dict(type="float", default=5.0),
    # http
    url=dict(type="str"),
    method=dict(type="str", default="GET"),
    status_codes=dict(type="list", elements="int", default=[200]),
    body_contains=dict(type="str"),
    json_field=dict(type="str"),
    json_value=dict(type="raw"),
    max_latency_ms=dict(type="float"),
    ca_file=dict(type="path"),
    validate_certs=dict(type="bool", default=True),
    host_header=dict(type="str"),
    headers=dict(type="dict", no_log=True),
    use_proxy=dict(type="bool", default=False),
    use_netrc=dict(type="bool", default=False),
    # tcp, postgresql, redis
    host=dict(type="str"),
    port=dict(type="int"),
    # docker
    container=dict(type="str"),
    docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
    # postgresql, redis
    user=dict(type="str"),
    username=dict(type="str"),
    password=dict(type="str", no_log=True),
    database=dict(type="str", default="postgres"),
    sslmode=dict(type="str", default="prefer", choices=["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
    role=dict(type="str", choices=["any", "primary", "replica", "master"], default="any"),
    max_lag_bytes=dict(type="int"),
    max_lag_seconds=dict(type="float"),
    primary_host=dict(type="str"),
    primary_port=dict(type="int"),
    require_master_link=dict(type="bool", default=False),
    tls=dict(type="bool", default=False),
    # command
    argv=dict(type="list", elements="str"),
    expected_rc=dict(type="int", default=0),
    stdout_contains=dict(type="str"),
    read_only=dict(type="bool", default=False),
)

GATE_OPTIONS = dict(
    checks=dict(type="list", elements="dict", default=[], options=CHECK_OPTIONS),
    success_threshold=dict(type="int", default=1),
    failure_threshold=dict(type="int", default=0),
    interval=dict(type="float", default=2.0),
    timeout=dict(type="float", default=60.0),
)
