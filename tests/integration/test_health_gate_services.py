"""health_gate against real services the tests start: HTTP, TCP, PostgreSQL 15 with a
streaming replica, Redis with a replica, a command, and a Docker container's HEALTHCHECK."""

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


def test_postgresql_replication_lag_in_seconds(run_module, pg):
    # After a replayed write and an idle second and a half, the last replayed transaction is
    # that old: a replica required to be under one second behind fails, one under a minute passes.
    sql(pg, "primary", "CREATE TABLE IF NOT EXISTS lag_seconds (x int); INSERT INTO lag_seconds VALUES (1)")
    failed, result = gate(run_module, [pg_check(pg, "replica", max_lag_bytes=0)], timeout=10)
    assert not failed, result.get("msg")
    time.sleep(1.5)
    failed, result = gate(run_module, [pg_check(pg, "replica", name="replica", max_lag_seconds=1)], timeout=0.5)
    assert failed and "replica (postgresql): replay lag" in result["msg"] and "s over 1.0 s" in result["msg"]
    failed, result = gate(run_module, [pg_check(pg, "replica", max_lag_seconds=60)], timeout=1)
    assert not failed


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
