"""Real services on loopback for integration tests, each started and removed by the test.

PostgreSQL 15 and Redis come from Debian's packages (scripts/setup installs them); the HTTP
server and TCP listener are Python's own. Every port is chosen free on 127.0.0.1.
"""

import contextlib
import http.server
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from tests.support.seaweedfs import free_port

PG_BIN = "/usr/lib/postgresql/15/bin"


def wait_for_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("nothing listens on 127.0.0.1:%d after %ss" % (port, timeout))


@contextlib.contextmanager
def http_server(routes):
    """Serve ``routes`` ({path: (status, body, delay_seconds)}) on a free loopback port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            status, body, delay = routes.get(self.path, (404, "not found", 0))
            if callable(body):
                body = body(self)
            time.sleep(delay)
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield "http://127.0.0.1:%d" % server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def tcp_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _as_postgres(argv, **kw):
    user = pwd.getpwnam("postgres")

    def demote():
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return subprocess.run(argv, preexec_fn=demote, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


@contextlib.contextmanager
def postgresql_pair(password="keel-monitor-pw"):
    """A PostgreSQL 15 primary and a streaming replica; yields their ports and the login."""
    base = tempfile.mkdtemp(prefix="keel-pg-")
    os.chmod(base, 0o755)
    shutil.chown(base, "postgres", "postgres")
    primary, replica = os.path.join(base, "primary"), os.path.join(base, "replica")
    p_port, r_port = free_port(), free_port()
    started = []
    try:
        pwfile = os.path.join(base, "pw")
        with open(pwfile, "w") as f:
            f.write(password)
        shutil.chown(pwfile, "postgres", "postgres")
        _as_postgres([PG_BIN + "/initdb", "-D", primary, "-U", "postgres", "--auth=scram-sha-256", "--pwfile=" + pwfile])
        with open(os.path.join(primary, "pg_hba.conf"), "a") as f:
            f.write("host replication postgres 127.0.0.1/32 scram-sha-256\n")
        opts = "-c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c port=%d" % (base, p_port)
        _as_postgres([PG_BIN + "/pg_ctl", "-D", primary, "-o", opts, "-l", primary + ".log", "-w", "start"])
        started.append(primary)
        env = dict(os.environ, PGPASSWORD=password)
        _as_postgres([PG_BIN + "/pg_basebackup", "-h", "127.0.0.1", "-p", str(p_port), "-U", "postgres", "-D", replica, "-R", "-X", "stream"], env=env)
        opts = "-c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c port=%d" % (base, r_port)
        _as_postgres([PG_BIN + "/pg_ctl", "-D", replica, "-o", opts, "-l", replica + ".log", "-w", "start"])
        started.append(replica)
        yield {"primary": p_port, "replica": r_port, "user": "postgres", "password": password, "replica_dir": replica}
    finally:
        for data in reversed(started):
            try:
                pg_ctl(data, "stop")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(base, ignore_errors=True)


def pg_ctl(data, action):
    _as_postgres([PG_BIN + "/pg_ctl", "-D", data, "-m", "immediate", "-w", action])


@contextlib.contextmanager
def redis_pair(password="keel-redis-pw"):
    """A Redis master and a replica with AUTH; yields their ports and the password."""
    base = tempfile.mkdtemp(prefix="keel-redis-")
    m_port, r_port = free_port(), free_port()
    procs = []
    try:
        common = ["--bind", "127.0.0.1", "--requirepass", password, "--save", "", "--appendonly", "no", "--dir", base]
        procs.append(subprocess.Popen(["redis-server", "--port", str(m_port)] + common, stdout=subprocess.DEVNULL))
        wait_for_port(m_port)
        procs.append(subprocess.Popen(["redis-server", "--port", str(r_port), "--replicaof", "127.0.0.1", str(m_port),
                                       "--masterauth", password] + common, stdout=subprocess.DEVNULL))
        wait_for_port(r_port)
        yield {"master": m_port, "replica": r_port, "password": password, "procs": procs}
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(base, ignore_errors=True)
