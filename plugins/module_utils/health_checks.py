# -*- coding: utf-8 -*-
# Copyright: Keel maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The kinds of health check a gate can run. Each builder takes one check's options and
returns a callable that runs the check once and returns an :class:`Outcome`.

Nothing here changes the target: checks only connect, read and query.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.six.moves.urllib.error import HTTPError
from ansible.module_utils.urls import open_url

from ansible_collections.keel.platform.plugins.module_utils.gate import Outcome

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


class CheckConfigError(ValueError):
    pass


def _ms(start):
    return (time.monotonic() - start) * 1000.0


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


def http_check(opts):
    expected = opts.get("status_codes") or [200]

    def run():
        headers = dict(opts.get("headers") or {})
        if opts.get("host_header"):
            headers["Host"] = opts["host_header"]
        start = time.monotonic()
        try:
            response = open_url(
                opts["url"], method=opts.get("method") or "GET", headers=headers, timeout=opts["timeout"],
                validate_certs=opts.get("validate_certs", True), ca_path=opts.get("ca_file"), follow_redirects="none",
            )
            status, body = response.getcode(), response.read()
        except HTTPError as exc:
            status, body = exc.code, exc.read() if hasattr(exc, "read") else b""
        except Exception as exc:
            return Outcome(False, error="request failed: %s" % exc, latency_ms=_ms(start))
        latency = _ms(start)
        text = to_text(body, errors="surrogate_or_replace")
        if status not in expected:
            return Outcome(False, value="HTTP %s" % status, error="status %s, expected %s" % (status, expected), latency_ms=latency)
        if opts.get("body_contains") and opts["body_contains"] not in text:
            return Outcome(False, value=text[:200], error="body does not contain %r" % opts["body_contains"], latency_ms=latency)
        if opts.get("json_field"):
            try:
                found = _json_field(json.loads(text), opts["json_field"])
            except (ValueError, KeyError):
                return Outcome(False, value=text[:200], error="no JSON field %r in the body" % opts["json_field"], latency_ms=latency)
            if "json_value" in opts and opts["json_value"] is not None and found != opts["json_value"]:
                return Outcome(False, value=json.dumps(found), error="JSON field %r is %s, expected %s"
                               % (opts["json_field"], json.dumps(found), json.dumps(opts["json_value"])), latency_ms=latency)
        if opts.get("max_latency_ms") and latency > opts["max_latency_ms"]:
            return Outcome(False, value="%.1f ms" % latency, error="latency %.1f ms over %s ms" % (latency, opts["max_latency_ms"]), latency_ms=latency)
        return Outcome(True, value="HTTP %s" % status, latency_ms=latency)

    return run


def tcp_check(opts):
    def run():
        start = time.monotonic()
        try:
            sock = socket.create_connection((opts["host"], opts["port"]), timeout=opts["timeout"])
            sock.close()
        except (OSError, socket.timeout) as exc:
            return Outcome(False, error="cannot connect to %s:%s: %s" % (opts["host"], opts["port"], exc), latency_ms=_ms(start))
        return Outcome(True, value="connected", latency_ms=_ms(start))

    return run


def docker_check(opts, docker_module=None):
    """The container's own health status (its HEALTHCHECK); running without one is not healthy."""
    def run():
        sdk = docker_module
        if sdk is None:
            import docker as sdk  # availability is checked by the module before the gate starts
        start = time.monotonic()
        try:
            client = sdk.DockerClient(base_url=opts.get("docker_host") or "unix:///var/run/docker.sock", timeout=opts["timeout"])
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

    return run


def postgresql_check(opts, driver=None):
    """Ready (answers a query), optionally in a role, optionally with bounded replication lag."""
    def run():
        pg = driver
        if pg is None:
            import psycopg2 as pg  # availability is checked by the module before the gate starts
        start = time.monotonic()
        try:
            conn = pg.connect(
                host=opts.get("host") or "localhost", port=opts.get("port") or 5432, user=opts.get("user"),
                password=opts.get("password"), dbname=opts.get("database") or "postgres", connect_timeout=max(1, int(opts["timeout"])),
            )
        except Exception as exc:
            return Outcome(False, error="cannot connect: %s" % str(exc).strip(), latency_ms=_ms(start))
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT pg_is_in_recovery(),"
                " COALESCE(pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()), 0)::bigint,"
                " COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)::float"
            )
            in_recovery, lag_bytes, lag_seconds = cur.fetchone()
        except Exception as exc:
            return Outcome(False, error="query failed: %s" % str(exc).strip(), latency_ms=_ms(start))
        finally:
            conn.close()
        latency = _ms(start)
        role = "replica" if in_recovery else "primary"
        value = role if role == "primary" else "replica, lag %d bytes / %.1f s" % (lag_bytes, lag_seconds)
        wanted = opts.get("role") or "any"
        if wanted != "any" and wanted != role:
            return Outcome(False, value=value, error="server is a %s, expected a %s" % (role, wanted), latency_ms=latency)
        if role == "replica":
            if opts.get("max_lag_bytes") is not None and lag_bytes > opts["max_lag_bytes"]:
                return Outcome(False, value=value, error="replay lag %d bytes over %d" % (lag_bytes, opts["max_lag_bytes"]), latency_ms=latency)
            if opts.get("max_lag_seconds") is not None and lag_seconds > opts["max_lag_seconds"]:
                return Outcome(False, value=value, error="replay lag %.1f s over %s s" % (lag_seconds, opts["max_lag_seconds"]), latency_ms=latency)
        return Outcome(True, value=value, latency_ms=latency)

    return run


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
    def run():
        start = time.monotonic()
        try:
            sock = socket.create_connection((opts.get("host") or "localhost", opts.get("port") or 6379), timeout=opts["timeout"])
        except (OSError, socket.timeout) as exc:
            return Outcome(False, error="cannot connect: %s" % exc, latency_ms=_ms(start))
        try:
            reader = sock.makefile("rb")
            if opts.get("password"):
                if opts.get("username"):
                    _redis_call(sock, reader, "AUTH", opts["username"], opts["password"])
                else:
                    _redis_call(sock, reader, "AUTH", opts["password"])
            pong = _redis_call(sock, reader, "PING")
            info = _redis_call(sock, reader, "INFO", "replication") or ""
        except (RedisError, OSError, socket.timeout) as exc:
            return Outcome(False, error="redis: %s" % exc, latency_ms=_ms(start))
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

    return run


def command_check(opts):
    def run():
        start = time.monotonic()
        try:
            proc = subprocess.run(opts["argv"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=opts["timeout"], check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return Outcome(False, error="cannot run %s: %s" % (opts["argv"][0], exc), latency_ms=_ms(start))
        latency = _ms(start)
        out = to_text(proc.stdout, errors="surrogate_or_replace").strip()
        expected = opts.get("expected_rc") or 0
        if proc.returncode != expected:
            err = to_text(proc.stderr, errors="surrogate_or_replace").strip()
            return Outcome(False, value="rc=%d" % proc.returncode, error="exit code %d, expected %d%s"
                           % (proc.returncode, expected, (": " + err[-200:]) if err else ""), latency_ms=latency)
        if opts.get("stdout_contains") and opts["stdout_contains"] not in out:
            return Outcome(False, value=out[-200:], error="output does not contain %r" % opts["stdout_contains"], latency_ms=latency)
        return Outcome(True, value="rc=%d" % proc.returncode, latency_ms=latency)

    return run


BUILDERS = {
    "http": http_check,
    "tcp": tcp_check,
    "docker": docker_check,
    "postgresql": postgresql_check,
    "redis": redis_check,
    "command": command_check,
}


def build(checks):
    """``[(name, kind, callable)]`` from the module's ``checks`` option; errors name the check."""
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
        names.add(name)
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
    headers=dict(type="dict"),
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
    role=dict(type="str", choices=["any", "primary", "replica", "master"], default="any"),
    max_lag_bytes=dict(type="int"),
    max_lag_seconds=dict(type="float"),
    require_master_link=dict(type="bool", default=False),
    # command
    argv=dict(type="list", elements="str"),
    expected_rc=dict(type="int", default=0),
    stdout_contains=dict(type="str"),
)

GATE_OPTIONS = dict(
    checks=dict(type="list", elements="dict", default=[], options=CHECK_OPTIONS),
    success_threshold=dict(type="int", default=1),
    failure_threshold=dict(type="int", default=0),
    interval=dict(type="float", default=2.0),
    timeout=dict(type="float", default=60.0),
)
