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
def http_server(routes, server_class=http.server.ThreadingHTTPServer):
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

    server = server_class(("127.0.0.1", 0), Handler)
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


def make_tls_files(directory, names):
    """A throwaway CA and a server certificate for ``names`` (DNS names), written as PEM files
    into ``directory``; returns (ca_file, cert_file, key_file)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Keel test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = [os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key")]
    with open(paths[0], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths[1], "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(paths[2], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return tuple(paths)


@contextlib.contextmanager
def https_server(routes, names):
    """Like :func:`http_server`, over TLS with a certificate for ``names`` from a throwaway CA.

    Yields a dict: ``url`` (https://127.0.0.1:PORT), ``ca_file``, and ``server_names``, the TLS
    server name (SNI) each handshake sent (None when the client sent none).
    """
    import ssl

    directory = tempfile.mkdtemp(prefix="keel-tls-")
    server_names = []
    try:
        ca_file, cert_file, key_file = make_tls_files(directory, names)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.sni_callback = lambda sslobj, name, ctx: server_names.append(name)

        class Server(http.server.ThreadingHTTPServer):
            def get_request(self):
                sock, addr = self.socket.accept()
                # The handshake happens in the request's thread, on its first read.
                return context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass  # handshakes that clients refuse are part of the tests

        with http_server(routes, server_class=Server) as url:
            yield {"url": url.replace("http://", "https://"), "ca_file": ca_file, "server_names": server_names}
    finally:
        shutil.rmtree(directory, ignore_errors=True)
