import os
import signal
import socket
import sys
import threading
import time

import pytest

from ansible_collections.keel.platform.plugins.module_utils import gate
from ansible_collections.keel.platform.plugins.module_utils import health_checks as hc


def opts(**kw):
    base = {"timeout": 2.0, "role": "any"}
    base.update(kw)
    return base


@pytest.mark.parametrize(
    "checks,message",
    [
        ([{"type": "ftp", "timeout": 1}], r"checks\[0\]: unknown check type 'ftp'"),
        ([opts(type="http")], r"checks\[0\] \(http\[0\]\): a http check needs url"),
        ([opts(type="tcp", host="x")], "a tcp check needs port"),
        ([opts(type="command", argv=[])], "a command check needs argv"),
        ([opts(type="tcp", host="x", port=1, name="a"), opts(type="tcp", host="x", port=2, name="a")], r"checks\[1\]: the name 'a' is used twice"),
        ([opts(type="tcp", host="x", port=1, timeout=0)], "timeout must be more than 0"),
        ([opts(type="postgresql", role="master")], "role 'master' does not apply to a postgresql check"),
        ([opts(type="redis", role="primary")], "role 'primary' does not apply to a redis check"),
        ([opts(type="tcp", host="x", port=1, role="replica")], "does not apply to a tcp check"),
    ],
)
def test_build_rejects_bad_checks_naming_them(checks, message):
    with pytest.raises(hc.CheckConfigError, match=message):
        hc.build(checks)


def test_json_field_paths():
    doc = {"status": {"db": "up"}, "items": [{"ok": True}]}
    assert hc._json_field(doc, "status.db") == "up"
    assert hc._json_field(doc, "items.0.ok") is True
    with pytest.raises(KeyError):
        hc._json_field(doc, "items.3.ok")


def fake_redis(replies):
    """A socket peer that answers each command with the next scripted RESP reply."""
    server, client = socket.socketpair()
    seen = []

    def serve():
        reader = server.makefile("rb")
        for reply in replies:
            count = int(reader.readline()[1:])
            args = []
            for _index in range(count):
                length = int(reader.readline()[1:])
                args.append(reader.read(length + 2)[:-2].decode())
            seen.append(args)
            server.sendall(reply)
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return client, seen


def test_redis_protocol_auth_ping_info(monkeypatch):
    info = b"# Replication\r\nrole:slave\r\nmaster_link_status:down\r\n"
    client, seen = fake_redis([b"+OK\r\n", b"+PONG\r\n", b"$%d\r\n%s\r\n" % (len(info), info)])
    monkeypatch.setattr(hc.socket, "create_connection", lambda *a, **k: client)
    outcome = hc.redis_check(opts(type="redis", password="s3cret", role="replica", require_master_link=True))()
    assert seen == [["AUTH", "s3cret"], ["PING"], ["INFO", "replication"]]
    assert not outcome.ok and outcome.error == "master link is down" and outcome.value == "replica, master link down"


def test_redis_tls_wraps_the_socket_with_the_ca(monkeypatch):
    info = b"# Replication\r\nrole:master\r\n"
    client, seen = fake_redis([b"+OK\r\n", b"+PONG\r\n", b"$%d\r\n%s\r\n" % (len(info), info)])
    monkeypatch.setattr(hc.socket, "create_connection", lambda *a, **k: client)
    wrapped = []

    class FakeContext(object):
        def wrap_socket(self, sock, server_hostname=None):
            wrapped.append(server_hostname)
            return sock

    monkeypatch.setattr(hc, "_tls_context", lambda o: wrapped.append(o["ca_file"]) or FakeContext())
    outcome = hc.redis_check(opts(type="redis", host="10.0.0.41", password="s3cret", username="admin", tls=True,
                                  ca_file="/etc/keel/pki/redis/ca.pem", role="master"))()
    assert wrapped == ["/etc/keel/pki/redis/ca.pem", "10.0.0.41"]
    assert seen[0] == ["AUTH", "admin", "s3cret"] and outcome.ok


def test_redis_tls_handshake_failure_is_reported(monkeypatch):
    client, _seen = fake_redis([])
    monkeypatch.setattr(hc.socket, "create_connection", lambda *a, **k: client)

    class FailingContext(object):
        def wrap_socket(self, sock, server_hostname=None):
            raise hc.ssl.SSLError("certificate verify failed")

    monkeypatch.setattr(hc, "_tls_context", lambda o: FailingContext())
    outcome = hc.redis_check(opts(type="redis", tls=True))()
    assert not outcome.ok and "certificate verify failed" in outcome.error


def test_redis_auth_error_is_reported(monkeypatch):
    client, _seen = fake_redis([b"-WRONGPASS invalid username-password pair\r\n"])
    monkeypatch.setattr(hc.socket, "create_connection", lambda *a, **k: client)
    outcome = hc.redis_check(opts(type="redis", password="nope"))()
    assert not outcome.ok and "WRONGPASS" in outcome.error


class FakeCursor(object):
    def __init__(self, row):
        self.row = row

    def execute(self, sql):
        self.sql = sql

    def fetchone(self):
        return self.row


class FakePg(object):
    def __init__(self, row=None, error=None):
        self.row, self.error = row, error

    def connect(self, **kw):
        if self.error:
            raise self.error
        pg = self

        class Conn(object):
            def cursor(self):
                return FakeCursor(pg.row)

            def close(self):
                pass

        return Conn()


def replica_row(receive="0/3000100", replay="0/3000100", since_replay=120.0, status="streaming", latest_end=None, paused=False):
    """A row of REPLICA_QUERY for a replica."""
    return (True, receive, replay, since_replay, 4242 if status else None, status, latest_end or receive, paused)


PRIMARY_ROW = (False, None, None, None, None, None, None, False)


@pytest.mark.parametrize(
    "row,check,ok,text",
    [
        (PRIMARY_ROW, {"role": "primary"}, True, "primary"),
        (PRIMARY_ROW, {"role": "replica"}, False, "server is a primary, expected a replica"),
        (replica_row(receive="0/3000164"), {"role": "replica", "max_lag_bytes": 1000}, True, "replica, lag 100 bytes"),
        (replica_row(receive="0/3001488"), {"role": "replica", "max_lag_bytes": 1000}, False, "replay lag 5000 bytes over 1000"),
        (replica_row(receive="0/3000101", since_replay=42.0), {"max_lag_seconds": 30}, False, "replay lag 42.0 s over 30"),
        # Idle and caught up: the last replayed transaction is old, but nothing is left to replay.
        (replica_row(since_replay=3600.0), {"max_lag_seconds": 1}, True, "lag 0 bytes / 0.0 s"),
        # The primary told the replica about WAL it has not received yet.
        (replica_row(latest_end="0/3000200"), {"max_lag_bytes": 0}, False, "replay lag 256 bytes over 0"),
        # A receiver that is down or never connected: nothing to replay, and still not caught up.
        (replica_row(status=None), {"max_lag_bytes": 0}, False, "WAL receiver is not running"),
        (replica_row(status=None), {"max_lag_seconds": 60}, False, "WAL receiver is not running"),
        (replica_row(status="waiting"), {"max_lag_bytes": 1000}, False, "WAL receiver is waiting"),
        # Role checks alone do not need the receiver.
        (replica_row(status=None), {"role": "replica"}, True, "WAL receiver not running"),
        # Visible pid, hidden status: the user lacks pg_monitor.
        ((True, "0/1", "0/1", 1.0, 4242, None, None, False), {"max_lag_bytes": 0}, False, "needs pg_monitor"),
        # Behind with nothing replayed yet: the lag in seconds is unknown, which fails.
        (replica_row(receive="0/3000200", since_replay=None), {"max_lag_seconds": 60}, False, "replay lag unknown"),
    ],
)
def test_postgresql_roles_and_lag(row, check, ok, text):
    outcome = hc.postgresql_check(opts(type="postgresql", **check), driver=FakePg(row))()
    assert outcome.ok is ok and text in ((outcome.error or "") + " " + (outcome.value or ""))


class ScriptedPg(FakePg):
    """Answers by port: the primary's position on one, the replica's row on the other."""

    def __init__(self, rows):
        FakePg.__init__(self)
        self.rows, self.calls = rows, []

    def connect(self, **kw):
        self.calls.append(kw)
        self.row = self.rows[kw["port"]]
        return FakePg.connect(self, **kw)


def test_postgresql_lag_against_the_primary():
    # The replica has replayed all it received, but the primary has written 4096 bytes more.
    driver = ScriptedPg({5432: (False, "0/3001100"), 5433: replica_row()})
    check = opts(type="postgresql", host="pg2", port=5433, primary_host="pg1", primary_port=5432, max_lag_bytes=1000)
    outcome = hc.postgresql_check(check, driver=driver)()
    assert not outcome.ok and "replay lag 4096 bytes over 1000 (behind the primary's current position)" in outcome.error
    assert [c["host"] for c in driver.calls] == ["pg1", "pg2"]
    driver = ScriptedPg({5432: (False, "0/3000100"), 5433: replica_row(since_replay=900.0)})
    outcome = hc.postgresql_check(dict(check, max_lag_seconds=1), driver=driver)()
    assert outcome.ok, outcome.error
    driver = ScriptedPg({5432: (True, None), 5433: replica_row()})
    outcome = hc.postgresql_check(check, driver=driver)()
    assert not outcome.ok and "primary_host pg1 is itself in recovery" in outcome.error


def test_postgresql_connection_options_bound_the_query_and_pass_sslmode():
    driver = ScriptedPg({5432: PRIMARY_ROW})
    hc.postgresql_check(opts(type="postgresql", timeout=10.0, sslmode="verify-full", ca_file="/ca.pem"), driver=driver)(budget=3.2)
    kw = driver.calls[0]
    assert kw["sslmode"] == "verify-full" and kw["sslrootcert"] == "/ca.pem"
    assert kw["connect_timeout"] == 4 and "statement_timeout=3200" in kw["options"]
    assert "default_transaction_read_only=on" in kw["options"]


def test_postgresql_connection_error():
    outcome = hc.postgresql_check(opts(type="postgresql"), driver=FakePg(error=RuntimeError("FATAL: password authentication failed")))()
    assert not outcome.ok and "password authentication failed" in outcome.error


class FakeDocker(object):
    def __init__(self, state):
        self.state = state

    def DockerClient(self, **kw):
        state = self.state

        class Api(object):
            def inspect_container(self, name):
                if state is None:
                    raise RuntimeError("No such container: %s" % name)
                return {"State": state}

        class Client(object):
            api = Api()

            def close(self):
                pass

        return Client()


@pytest.mark.parametrize(
    "state,ok,value",
    [
        ({"Status": "running", "Health": {"Status": "healthy"}}, True, "running/healthy"),
        ({"Status": "running", "Health": {"Status": "starting"}}, False, "running/starting"),
        ({"Status": "running"}, False, "running/no healthcheck"),
    ],
)
def test_docker_health(state, ok, value):
    outcome = hc.docker_check(opts(type="docker", container="web"), docker_module=FakeDocker(state))()
    assert outcome.ok is ok and outcome.value == value


def test_docker_missing_container():
    outcome = hc.docker_check(opts(type="docker", container="ghost"), docker_module=FakeDocker(None))()
    assert not outcome.ok and "No such container: ghost" in outcome.error


def test_command_check():
    assert hc.command_check(opts(argv=["true"]))().ok
    outcome = hc.command_check(opts(argv=["sh", "-c", "echo oops >&2; exit 3"]))()
    assert not outcome.ok and outcome.value == "rc=3" and "oops" in outcome.error
    assert hc.command_check(opts(argv=["sh", "-c", "exit 3"], expected_rc=3))().ok
    outcome = hc.command_check(opts(argv=["echo", "degraded"], stdout_contains="running"))()
    assert not outcome.ok and outcome.value == "degraded"
    outcome = hc.command_check(opts(argv=["/nonexistent/bin"]))()
    assert not outcome.ok and "cannot run /nonexistent/bin" in outcome.error


def test_a_missing_library_fails_the_build_at_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg2", None)  # import psycopg2 now raises ImportError
    with pytest.raises(hc.MissingLibraryError, match=r"checks\[1\] \(db\): a postgresql check needs the Python library psycopg2") as info:
        hc.build([opts(type="tcp", host="x", port=1), opts(type="postgresql", name="db")])
    assert info.value.library == "psycopg2" and "psycopg2" in info.value.exception


def test_command_checks_are_skipped_in_check_mode_unless_read_only(tmp_path):
    marker = tmp_path / "touched"
    (name, kind, run), = hc.build([opts(type="command", argv=["touch", str(marker)])], check_mode=True)
    outcome = run()
    assert outcome.skipped and outcome.ok and not marker.exists()
    (name, kind, run), = hc.build([opts(type="command", argv=["touch", str(marker)], read_only=True)], check_mode=True)
    assert run().ok and marker.exists()


def test_command_output_is_bounded_in_memory_and_in_the_result():
    rc, out, err, total = hc.run_bounded(["sh", "-c", "head -c 5000000 /dev/zero; head -c 3000000 /dev/zero >&2"], 20, keep=65536)
    assert rc == 0 and len(out) == 65536 and len(err) == 65536 and total == 5000000
    outcome = hc.command_check(opts(argv=["sh", "-c", "yes oops | head -c 200000 >&2; exit 3"]))()
    assert not outcome.ok and len(outcome.error) <= 4096
    outcome = hc.command_check(opts(argv=["sh", "-c", "yes degraded | head -c 200000"], stdout_contains="running"))()
    assert not outcome.ok and len(outcome.value) <= 4096


def test_command_check_is_bounded_by_its_budget_with_its_children():
    started = time.monotonic()
    outcome = hc.command_check(opts(argv=["sh", "-c", "sleep 30; echo done"], timeout=10.0))(budget=0.5)
    assert not outcome.ok and "did not finish within 0." in outcome.error
    assert time.monotonic() - started < 3


def _processes(*argv):
    """PIDs whose command line is exactly ``argv``."""
    wanted = "\0".join(argv).encode() + b"\0"
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as handle:
                if handle.read() == wanted:
                    found.append(int(pid))
        except (OSError, ValueError):
            pass
    return found


def test_a_command_cut_off_by_the_gate_timeout_leaves_no_process_and_did_not_finish():
    # Failed before: the command was given the whole time left, the gate stopped waiting for it
    # at the same instant and returned, and "sleep 3771" lived on after the module.
    checks = hc.build([opts(type="command", argv=["sleep", "3771"], timeout=30.0)])
    healthy, report = gate.run(checks, interval=0.5, timeout=1.0)
    try:
        assert not healthy and "did not finish" in report["checks"][0]["last_error"]
        assert _processes("sleep", "3771") == []
    finally:
        for pid in _processes("sleep", "3771"):
            os.kill(pid, signal.SIGKILL)


def test_commands_still_running_are_killed_when_the_gate_returns():
    # A command started by a check the gate no longer waits for is killed with its group on return.
    finished = []
    runner = threading.Thread(target=lambda: finished.append(hc.run_bounded(["sleep", "3772"], 60)))
    runner.daemon = True
    runner.start()
    try:
        deadline = time.monotonic() + 5
        while not _processes("sleep", "3772") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _processes("sleep", "3772")
        healthy, _report = gate.run([("ok", "command", lambda: hc.Outcome(True))], timeout=1.0)
        assert healthy
        runner.join(5)
        assert finished and finished[0][0] is None and _processes("sleep", "3772") == []
    finally:
        for pid in _processes("sleep", "3772"):
            os.kill(pid, signal.SIGKILL)


def test_secrets_are_masked_in_outcomes():
    check = opts(type="http", url="http://monitor:s3cr%40t-pw@127.0.0.1:9/health", headers={"X-Token": "tok-123456"})
    assert set(hc.secret_values(check)) >= {"s3cr%40t-pw", "s3cr@t-pw", "tok-123456"}
    assert hc.redact_url(check["url"]) == "http://monitor:********@127.0.0.1:9/health"
    outcome = hc.http_check(check)(budget=1)
    assert not outcome.ok and "s3cr" not in outcome.error and "monitor:********@127.0.0.1:9" in outcome.error
    leaky = hc._guarded(lambda budget: hc.Outcome(False, value="echo tok-123456", error="auth s3cr@t-pw refused"), check)
    outcome = leaky()
    assert outcome.value == "echo ********" and outcome.error == "auth ******** refused"


@pytest.mark.parametrize("url,message", [
    ("http://admin:zq-pw-1@[::1/h", "is malformed: Invalid IPv6 URL"),
    ("http://admin:zq-pw-1@host:99999/h", "is malformed: Port out of range"),
    ("http://admin:zq-pw-1@host:port/h", "is malformed: Port could not be cast"),
    ("http://admin:zq-pw-1@host:0/h", "port 0 is not between 1 and 65535"),
    ("http:///health", "has no host name"),
])
def test_malformed_urls_and_bad_ports_are_refused_before_the_gate(url, message):
    # Failed before: ValueError from urlsplit (a traceback) or a bad port retried until the timeout.
    with pytest.raises(hc.CheckConfigError, match=message) as info:
        hc.build([opts(type="http", url=url)])
    assert "zq-pw-1" not in str(info.value) and "checks[0] (http[0])" in str(info.value)
    assert set(hc.secret_values(opts(url=url))) >= ({"zq-pw-1"} if "zq-pw-1" in url else set())


@pytest.mark.parametrize("key", ["port", "primary_port"])
def test_ports_out_of_range_are_refused(key):
    with pytest.raises(hc.CheckConfigError, match="%s 70000 is not between 1 and 65535" % key):
        hc.build([opts(type="tcp", host="x", **dict({"port": 1}, **{key: 70000}))])


def test_query_values_are_masked_in_reported_urls():
    # Failed before: only user:password was masked; ?token=... appeared in messages.
    url = "http://mon:pw-123@127.0.0.1:9/health?access_token=tq-tok-777&verbose&format=json#frag"
    assert hc.redact_url(url) == "http://mon:********@127.0.0.1:9/health?access_token=********&********&format=********"
    assert "tq-tok-777" in hc.secret_values(opts(url=url)) and "json" not in hc.secret_values(opts(url=url))
    outcome = hc.http_check(opts(type="http", url=url))(budget=1)
    assert not outcome.ok and "tq-tok-777" not in outcome.error and "access_token=********" in outcome.error


def test_http_checks_refuse_other_schemes_and_sni_through_a_proxy():
    with pytest.raises(hc.CheckConfigError, match="url must start with http"):
        hc.build([opts(type="http", url="ftp://x/")])
    with pytest.raises(hc.CheckConfigError, match="TLS server name"):
        hc.build([opts(type="http", url="https://10.0.0.1/", host_header="shop.example", use_proxy=True)])
