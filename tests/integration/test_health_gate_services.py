"""health_gate against real services the tests start: HTTP, TCP, PostgreSQL 15 with a
streaming replica, Redis with a replica, a command, and a Docker container's HEALTHCHECK."""

import contextlib
import json
import subprocess
import threading
import time

import pytest

from ansible_collections.keel.platform.plugins.modules import health_gate
from tests.support import services
from tests.support.seaweedfs import free_port

FAST = {"interval": 0.2, "timeout": 10}


def gate(run_module, checks, **kw):
    args = dict(FAST, checks=checks)
    args.update(kw)
    return run_module(health_gate.main, args)


def test_http_status_body_json_latency_and_host_header(run_module):
    routes = {
        "/health": (200, {"status": "ok", "db": {"up": True}}, 0),
        "/sick": (503, "maintenance", 0),
        "/slow": (200, "ok", 0.3),
        "/host": (200, lambda req: "host=%s" % req.headers.get("Host"), 0),
    }
    with services.http_server(routes) as url:
        failed, result = gate(run_module, [
            {"name": "api", "type": "http", "url": url + "/health", "json_field": "db.up", "json_value": True},
            {"name": "vhost", "type": "http", "url": url + "/host", "host_header": "shop.example", "body_contains": "host=shop.example"},
        ], success_threshold=3)
        assert not failed and result["healthy"] and result["rounds"] == 3
        assert result["checks"][0]["latency_p50_ms"] is not None and result["checks"][0]["last_value"] == "HTTP 200"

        failed, result = gate(run_module, [{"name": "api", "type": "http", "url": url + "/sick"}], timeout=1)
        assert failed and "api (http): status 503, expected [200] [last value: HTTP 503]" in result["msg"]

        failed, result = gate(run_module, [{"type": "http", "url": url + "/slow", "max_latency_ms": 100}], timeout=1)
        assert failed and "over 100.0 ms" in result["msg"]

        failed, result = gate(run_module, [{"type": "http", "url": url + "/health", "json_field": "status", "json_value": "down"}], timeout=1)
        assert failed and 'JSON field \'status\' is "ok", expected "down"' in result["msg"]


def test_gate_waits_for_a_service_that_comes_up(run_module):
    port = free_port()

    # A plain listener that appears a second after the gate starts.
    import socket
    sock = socket.socket()

    def listen():
        time.sleep(1.0)
        sock.bind(("127.0.0.1", port))
        sock.listen(8)

    thread = threading.Thread(target=listen)
    thread.start()
    try:
        failed, result = gate(run_module, [{"name": "late", "type": "tcp", "host": "127.0.0.1", "port": port, "timeout": 1}], success_threshold=2)
        assert not failed and result["healthy"]
        assert result["checks"][0]["attempts"] > result["checks"][0]["passes"] >= 2
    finally:
        thread.join()
        sock.close()


def test_tcp_refused_fails_with_failure_threshold(run_module):
    with services.tcp_listener() as open_port:
        pass  # closed again: nothing listens there now
    failed, result = gate(run_module, [{"name": "gone", "type": "tcp", "host": "127.0.0.1", "port": open_port, "timeout": 1}],
                          failure_threshold=2, timeout=30)
    assert failed and result["rounds"] == 2 and "consecutive failing" in result["msg"]


@pytest.fixture(scope="module")
def pg():
    with services.postgresql_pair() as pair:
        yield pair


def pg_check(pg, which, **kw):
    check = {"type": "postgresql", "host": "127.0.0.1", "port": pg[which], "user": pg["user"], "password": pg["password"], "timeout": 3}
    check.update(kw)
    return check


def test_postgresql_primary_and_replica_roles(run_module, pg):
    failed, result = gate(run_module, [pg_check(pg, "primary", name="primary", role="primary"),
                                       pg_check(pg, "replica", name="replica", role="replica", max_lag_bytes=16 * 1024 * 1024)])
    assert not failed, result.get("msg")
    assert result["checks"][0]["last_value"] == "primary" and result["checks"][1]["last_value"].startswith("replica, lag")
    assert pg["password"] not in str(result)

    failed, result = gate(run_module, [pg_check(pg, "primary", name="wrong", role="replica")], timeout=1)
    assert failed and "wrong (postgresql): server is a primary, expected a replica" in result["msg"]


def test_postgresql_bad_password(run_module, pg):
    failed, result = gate(run_module, [pg_check(pg, "primary", password="wrong-password")], timeout=1)
    assert failed and "password authentication failed" in result["msg"] and "wrong-password" not in result["msg"]


def sql(pg, which, statement):
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=pg[which], user=pg["user"], password=pg["password"], dbname="postgres")
    conn.autocommit = True
    try:
        cur = conn.cursor()
        cur.execute(statement)
        return cur.fetchone() if cur.description else None
    finally:
        conn.close()


def test_postgresql_replication_lag_in_bytes(run_module, pg):
    sql(pg, "replica", "SELECT pg_wal_replay_pause()")
    try:
        sql(pg, "primary", "CREATE TABLE IF NOT EXISTS lag_bytes AS SELECT g FROM generate_series(1, 50000) g")
        # Streaming is asynchronous: wait until the replica has received what it may not replay.
        deadline = time.time() + 20
        while sql(pg, "replica", "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())")[0] <= 1024:
            assert time.time() < deadline, "the replica never received the new WAL"
            time.sleep(0.2)
        failed, result = gate(run_module, [pg_check(pg, "replica", name="replica", max_lag_bytes=1024)], timeout=3)
        assert failed and "replica (postgresql): replay lag" in result["msg"] and "bytes over 1024" in result["msg"]
    finally:
        sql(pg, "replica", "SELECT pg_wal_replay_resume()")
    failed, result = gate(run_module, [pg_check(pg, "replica", max_lag_bytes=1024)], timeout=10)
    assert not failed, result.get("msg")


def wait_caught_up(pg, timeout=30):
    """Until the replica streams and has replayed everything the primary has written."""
    deadline = time.time() + timeout
    while True:
        lsn = sql(pg, "primary", "SELECT pg_current_wal_lsn()::text")[0]
        row = sql(pg, "replica", "SELECT (SELECT status FROM pg_stat_wal_receiver),"
                  " pg_wal_lsn_diff('%s'::pg_lsn, pg_last_wal_replay_lsn()) <= 0" % lsn)
        if row == ("streaming", True):
            return
        assert time.time() < deadline, "the replica did not catch up: %r" % (row,)
        time.sleep(0.2)


def both_modes(pg, **kw):
    """The same lag check without the primary (receive vs replay) and against the primary."""
    return [pg_check(pg, "replica", name="alone", **kw),
            pg_check(pg, "replica", name="vs-primary", primary_host="127.0.0.1", primary_port=pg["primary"], **kw)]


def test_postgresql_idle_caught_up_replica_passes_a_seconds_check(run_module, pg):
    # Fault: the lag in seconds was the age of the last replayed transaction, so an idle replica
    # that had replayed everything failed after a second of quiet on the primary.
    sql(pg, "primary", "CREATE TABLE IF NOT EXISTS lag_seconds (x int); INSERT INTO lag_seconds VALUES (1)")
    wait_caught_up(pg)
    time.sleep(2.5)
    failed, result = gate(run_module, [pg_check(pg, "replica", max_lag_seconds=1)], timeout=5)
    assert not failed, result.get("msg")
    failed, result = gate(run_module, both_modes(pg, max_lag_seconds=1, max_lag_bytes=0), timeout=5)
    assert not failed, result.get("msg")
    for check in result["checks"]:
        assert "lag 0 bytes / 0.0 s" in check["last_value"] and "WAL receiver streaming" in check["last_value"]


def test_postgresql_paused_replay_fails_bytes_and_seconds_in_both_modes(run_module, pg):
    wait_caught_up(pg)
    sql(pg, "replica", "SELECT pg_wal_replay_pause()")
    try:
        sql(pg, "primary", "INSERT INTO lag_seconds SELECT g FROM generate_series(1, 20000) g")
        deadline = time.time() + 20
        while sql(pg, "replica", "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())")[0] <= 1024:
            assert time.time() < deadline, "the replica never received the new WAL"
            time.sleep(0.2)
        failed, result = gate(run_module, both_modes(pg, max_lag_bytes=1024), timeout=2)
        assert failed and "alone (postgresql): replay lag" in result["msg"] and "vs-primary (postgresql): replay lag" in result["msg"]
        assert "behind the primary's current position" in result["msg"] and "replay paused" in result["msg"]
        time.sleep(1.5)
        failed, result = gate(run_module, both_modes(pg, max_lag_seconds=1), timeout=2)
        assert failed and "alone (postgresql): replay lag" in result["msg"] and "s over 1.0 s" in result["msg"]
        assert "vs-primary (postgresql): replay lag" in result["msg"]
    finally:
        sql(pg, "replica", "SELECT pg_wal_replay_resume()")
    failed, result = gate(run_module, both_modes(pg, max_lag_bytes=0), timeout=20)
    assert not failed, result.get("msg")


@contextlib.contextmanager
def primary_conninfo(pg, conninfo):
    """The replica's primary_conninfo set to ``conninfo`` (reloaded), then restored."""
    original = sql(pg, "replica", "SHOW primary_conninfo")[0]
    sql(pg, "replica", "ALTER SYSTEM SET primary_conninfo = %s" % psycopg2_literal(conninfo))
    sql(pg, "replica", "SELECT pg_reload_conf()")
    try:
        deadline = time.time() + 20
        while sql(pg, "replica", "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'")[0]:
            assert time.time() < deadline, "the WAL receiver did not stop"
            time.sleep(0.2)
        yield
    finally:
        sql(pg, "replica", "ALTER SYSTEM SET primary_conninfo = %s" % psycopg2_literal(original))
        sql(pg, "replica", "SELECT pg_reload_conf()")
        wait_caught_up(pg)


def psycopg2_literal(text):
    return "'%s'" % text.replace("'", "''")


def test_postgresql_replica_with_its_receiver_stopped_fails_every_lag_check(run_module, pg):
    # Fault: with the receiver down, received == replayed, so "0 bytes of lag" passed.
    wait_caught_up(pg)
    with primary_conninfo(pg, ""):
        failed, result = gate(run_module, [pg_check(pg, "replica", name="alone", max_lag_bytes=0)], timeout=2)
        assert failed and "alone (postgresql): WAL receiver is not running" in result["msg"]
        failed, result = gate(run_module, both_modes(pg, max_lag_bytes=0), timeout=2)
        assert failed and "alone (postgresql): WAL receiver is not running" in result["msg"]
        assert "vs-primary (postgresql): WAL receiver is not running" in result["msg"]
        failed, result = gate(run_module, both_modes(pg, max_lag_seconds=60), timeout=2)
        assert failed and result["msg"].count("WAL receiver is not running") == 2
        # Still a replica for a role check, which does not ask about lag.
        failed, result = gate(run_module, [pg_check(pg, "replica", role="replica")], timeout=2)
        assert not failed and "WAL receiver not running" in result["checks"][0]["last_value"]


def test_postgresql_replica_that_never_connects_fails_a_lag_check(run_module, pg):
    with services.tcp_listener() as closed_port:
        pass
    wait_caught_up(pg)
    conninfo = "host=127.0.0.1 port=%d user=postgres password=%s connect_timeout=2" % (closed_port, pg["password"])
    with primary_conninfo(pg, conninfo):
        failed, result = gate(run_module, [pg_check(pg, "replica", name="alone", max_lag_bytes=0)], timeout=2)
        assert failed and "alone (postgresql): WAL receiver is" in result["msg"]
        failed, result = gate(run_module, both_modes(pg, max_lag_bytes=0, max_lag_seconds=60), timeout=2)
        assert failed and result["msg"].count("(postgresql): WAL receiver is") == 2, result["msg"]


def test_postgresql_sslmode_is_passed_to_libpq(run_module, pg):
    failed, result = gate(run_module, [pg_check(pg, "primary", name="tls", sslmode="require")], timeout=1)
    assert failed and "server does not support SSL" in result["msg"]
    failed, result = gate(run_module, [pg_check(pg, "primary", sslmode="disable")], timeout=5)
    assert not failed, result.get("msg")


def test_three_slow_real_services_with_timeout_4_return_in_under_7_seconds(run_module):
    # A web server that answers after 30 s, and a PostgreSQL and a Redis "server" that accept
    # the connection and never answer. One after the other, at 5 s each, they took about 17 s.
    with services.http_server({"/slow": (200, "ok", 30)}) as url, \
            services.tcp_listener() as silent_pg, services.tcp_listener() as silent_redis:
        checks = [{"name": "web", "type": "http", "url": url + "/slow"},
                  {"name": "db", "type": "postgresql", "host": "127.0.0.1", "port": silent_pg, "user": "x", "password": "y"},
                  {"name": "cache", "type": "redis", "host": "127.0.0.1", "port": silent_redis}]
        started = time.monotonic()
        failed, result = run_module(health_gate.main, {"checks": checks, "timeout": 4})
        took = time.monotonic() - started
    print("3 slow checks (http, postgresql, redis), timeout: 4 -> returned after %.2f s" % took)
    assert failed and took < 7, took
    assert [c["status"] for c in result["checks"]] == ["failing"] * 3


def test_https_with_host_header_sends_its_name_as_sni_and_verifies_it(run_module):
    routes = {"/health": (200, lambda req: "host=%s" % req.headers.get("Host"), 0)}
    with services.https_server(routes, ["shop.example.test"]) as tls:
        failed, result = gate(run_module, [{"name": "vhost", "type": "http", "url": tls["url"] + "/health", "ca_file": tls["ca_file"],
                                            "host_header": "shop.example.test", "body_contains": "host=shop.example.test"}])
        assert not failed, result.get("msg")
        assert tls["server_names"][-1] == "shop.example.test"
        # Without the Host header the certificate (for shop.example.test) does not match 127.0.0.1.
        failed, result = gate(run_module, [{"name": "by-ip", "type": "http", "url": tls["url"] + "/health", "ca_file": tls["ca_file"]}], timeout=1)
        assert failed and "CERTIFICATE_VERIFY_FAILED" in result["msg"]
        # A Host header naming another site is verified against that name, and refused.
        failed, result = gate(run_module, [{"name": "other", "type": "http", "url": tls["url"] + "/health", "ca_file": tls["ca_file"],
                                            "host_header": "other.example.test:8443"}], timeout=1)
        assert failed and "CERTIFICATE_VERIFY_FAILED" in result["msg"] and tls["server_names"][-1] == "other.example.test"


class ProxyRecorder(dict):
    """Routes for http_server acting as a proxy: every request is recorded and answered 502."""

    def __init__(self):
        dict.__init__(self)
        self.seen = []

    def get(self, path, default=None):
        self.seen.append(path)
        return (502, "from the proxy", 0)


def test_no_proxy_and_no_netrc_unless_asked(run_module, monkeypatch, tmp_path):
    proxy = ProxyRecorder()
    routes = {"/auth": (200, lambda req: "auth=%s" % req.headers.get("Authorization"), 0)}
    with services.http_server(proxy) as proxy_url, services.http_server(routes) as url:
        netrc = tmp_path / "netrc"
        netrc.write_text("machine 127.0.0.1 login netrc-user password netrc-password\n")
        netrc.chmod(0o600)
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
            monkeypatch.setenv(name, proxy_url)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.setenv("NETRC", str(netrc))
        failed, result = gate(run_module, [{"name": "direct", "type": "http", "url": url + "/auth", "body_contains": "auth=None"}], timeout=2)
        assert not failed, result.get("msg")
        assert proxy.seen == []
        failed, result = gate(run_module, [{"name": "netrc", "type": "http", "url": url + "/auth", "use_netrc": True,
                                            "body_contains": "auth=Basic"}], timeout=2)
        assert not failed, result.get("msg")
        failed, result = gate(run_module, [{"name": "proxied", "type": "http", "url": url + "/auth", "use_proxy": True}], timeout=1)
        assert failed and "status 502" in result["msg"] and proxy.seen and set(proxy.seen) == {url + "/auth"}


def test_bodies_in_results_are_bounded(run_module):
    big = {"status": "x" * 300000, "items": ["y" * 1000] * 300}
    with services.http_server({"/big": (200, big, 0)}) as url:
        failed, result = gate(run_module, [{"name": "text", "type": "http", "url": url + "/big", "body_contains": "never there"},
                                           {"name": "json", "type": "http", "url": url + "/big", "json_field": "status", "json_value": "ok"}],
                              timeout=1)
    assert failed
    for check in result["checks"]:
        assert len(check["last_value"]) <= 4096 and len(check["last_error"]) <= 4096
    assert "(first 1048576 bytes of the body)" not in result["checks"][0]["last_error"]  # 600 kB: read whole
    assert len(json.dumps(result)) < 40000


@pytest.fixture(scope="module")
def redis():
    with services.redis_pair() as pair:
        yield pair


def redis_check(redis, which, **kw):
    check = {"type": "redis", "host": "127.0.0.1", "port": redis[which], "password": redis["password"], "timeout": 2}
    check.update(kw)
    return check


def test_redis_master_and_replica_link(run_module, redis):
    failed, result = gate(run_module, [redis_check(redis, "master", name="master", role="master"),
                                       redis_check(redis, "replica", name="replica", role="replica", require_master_link=True)],
                          timeout=20)
    assert not failed, result.get("msg")
    assert result["checks"][1]["last_value"] == "replica, master link up"

    failed, result = gate(run_module, [redis_check(redis, "master", password="not-it")], timeout=1)
    assert failed and "WRONGPASS" in result["msg"] and "not-it" not in result["msg"]


def test_redis_replica_fails_when_its_master_goes_away(run_module, redis):
    master = redis["procs"][0]
    master.terminate()
    master.wait(timeout=10)
    failed, result = gate(run_module, [redis_check(redis, "replica", name="replica", require_master_link=True)], timeout=15, failure_threshold=3)
    assert failed and "replica (redis): master link is down" in result["msg"]


def test_command_check(run_module):
    failed, result = gate(run_module, [{"type": "command", "argv": ["sh", "-c", "echo ready"], "stdout_contains": "ready"}])
    assert not failed
    failed, result = gate(run_module, [{"name": "probe", "type": "command", "argv": ["false"]}], timeout=0.5)
    assert failed and "probe (command): exit code 1, expected 0" in result["msg"]


@pytest.fixture
def container_with_healthcheck():
    """A container from the lab's base image whose HEALTHCHECK passes once /tmp/healthy exists."""
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    image = subprocess.run(["bash", os.path.join(root, "lab/image/build.sh"), "bookworm"], check=True,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout.split()[-1]
    name = "keel-it-health-%d" % free_port()
    subprocess.run(["docker", "run", "-d", "--name", name, "--health-cmd", "test -e /tmp/healthy",
                    "--health-interval", "1s", "--health-retries", "1", image, "sleep", "infinity"],
                   check=True, stdout=subprocess.DEVNULL)
    try:
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)


def test_docker_container_health(run_module, container_with_healthcheck):
    name = container_with_healthcheck
    failed, result = gate(run_module, [{"name": "web", "type": "docker", "container": name}], timeout=3)
    assert failed and "web (docker): container %s is running/" % name in result["msg"]
    subprocess.run(["docker", "exec", name, "touch", "/tmp/healthy"], check=True)
    failed, result = gate(run_module, [{"name": "web", "type": "docker", "container": name}], timeout=20)
    assert not failed, result.get("msg")
    assert result["checks"][0]["last_value"] == "running/healthy"

    failed, result = gate(run_module, [{"name": "ghost", "type": "docker", "container": name + "-missing"}], timeout=0.5)
    assert failed and "cannot inspect container %s-missing" % name in result["msg"]


def test_no_secret_in_the_whole_output_of_a_real_run(pg, tmp_path):
    """ansible-playbook -vvv runs the module with a real PostgreSQL password, an HTTP basic-auth
    URL whose server echoes the password back, and a secret header; none of them may appear in
    anything the run prints (results, invocation, warnings, stderr)."""
    import base64
    import os
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    web_password, api_key = "web-pw-7f3a9c1e", "api-key-5d2b8e0a"

    def echo(req):
        auth = req.headers.get("Authorization") or ""
        decoded = base64.b64decode(auth.split()[-1]).decode() if auth.startswith("Basic ") else ""
        return "credentials=%s key=%s" % (decoded, req.headers.get("X-Api-Key"))

    with services.http_server({"/echo": (200, echo, 0)}) as url:
        (tmp_path / "secrets.yml").write_text(
            "pg_password: %s\nweb_password: %s\napi_key: %s\n" % (json.dumps(pg["password"]), web_password, api_key))
        playbook = tmp_path / "gate.yml"
        playbook.write_text("""
- hosts: localhost
  gather_facts: false
  vars_files: [secrets.yml]
  tasks:
    - name: Replica caught up, with the real password
      keel.platform.health_gate:
        checks:
          - {type: postgresql, host: 127.0.0.1, port: %(replica)d, user: postgres, password: "{{ pg_password }}",
             role: replica, max_lag_bytes: 100000}
        timeout: 20
    - name: Wrong password for the same server
      keel.platform.health_gate:
        checks:
          - {type: postgresql, host: 127.0.0.1, port: %(replica)d, user: postgres, password: "{{ pg_password }}-not"}
        timeout: 1
      ignore_errors: true
    - name: Basic auth URL and a secret header, answered with both echoed back
      keel.platform.health_gate:
        checks:
          - type: http
            url: "%(scheme)s//monitor:{{ web_password }}@%(rest)s/echo"
            headers: {X-Api-Key: "{{ api_key }}"}
            body_contains: never there
        timeout: 1
      ignore_errors: true
""" % dict(replica=pg["replica"], scheme=url.split("//")[0], rest=url.split("//")[1]))
        env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(root, "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=os.path.join(root, "collections"),
                   ANSIBLE_NOCOLOR="1")
        proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-vvv", "-i", "localhost,",
                               "-c", "local", "-e", "ansible_python_interpreter=" + sys.executable, str(playbook)],
                              cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=300,
                              check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "ok=3" in output and "ignored=2" in output, output[-3000:]
    for secret in (pg["password"], web_password, api_key, base64.b64encode(("monitor:" + web_password).encode()).decode()):
        assert secret not in output, "secret %r leaked" % secret
    # The secrets were really used: the checks ran, and what echoed them was masked.
    assert "password authentication failed" in output and "credentials=******** key=********" in output
    assert "replica, lag 0 bytes" in output
