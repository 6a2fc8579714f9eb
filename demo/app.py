"""Keel's demo app: a small web service that shows the platform working end to end.

/health/live    the process answers
/health/ready   PostgreSQL (through the multi-host DSN, read-write) and Redis (through Sentinel)
                answer, each when configured; 503 with the reason otherwise
/version        the image's version
/items          POST {"text": ...} writes to PostgreSQL; GET reads the latest through Redis

`app.py worker` runs a background worker instead (no port): it beats a heartbeat file, and
`app.py worker-health` (its container health check) fails when the beat is older than 10 s.
With DEMO_DATA_DIR (a data volume) it also keeps its state there (worker-state.json: beats
counted across restarts and versions), the data the app role's volume backups carry.

Configuration from the environment; passwords from files (the app role delivers secrets as
files, never as environment variables):
  DEMO_PG_DSN                libpq DSN, e.g. "host=pg1,pg2 dbname=demo user=demo target_session_attrs=read-write"
  DEMO_PG_PASSWORD_FILE      file with the PostgreSQL password
  DEMO_REDIS_SENTINELS       "host:port,host:port"
  DEMO_REDIS_MASTER          Sentinel's master name (default keel)
  DEMO_REDIS_USER            ACL user; DEMO_REDIS_PASSWORD_FILE its password
  DEMO_REDIS_SENTINEL_PASSWORD_FILE   Sentinel's client password, when it has one
  DEMO_REDIS_CA_FILE         the CA of Redis' and Sentinel's TLS certificates: TLS on both when set
PostgreSQL's TLS is in the DSN (sslmode=verify-full&sslrootcert=...), as the postgresql_dsn
filter writes it.
The image sets DEMO_VERSION, and DEMO_BROKEN for the lab's deliberately broken versions, which
the rolling update drill uses: 1, readiness always fails; behind-proxy, readiness fails for a
request that came through a proxy (X-Forwarded-For) and passes when asked directly, so a
rollout's own gate passes and the gate through the load balancer fails.
"""

import json
import os
from contextlib import contextmanager
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = os.environ.get("DEMO_VERSION", "0")
BROKEN = os.environ.get("DEMO_BROKEN") == "1"
UNREADY_BEHIND_PROXY = os.environ.get("DEMO_BROKEN") == "behind-proxy"
# The app role names the host in KEEL_APP_HOST; the container's own name otherwise.
HOST = os.environ.get("KEEL_APP_HOST") or socket.gethostname()
HEARTBEAT = "/tmp/demo-worker-heartbeat"
DATA_DIR = os.environ.get("DEMO_DATA_DIR", "")


def _secret(name):
    path = os.environ.get(name)
    if not path:
        return None
    with open(path, encoding="utf-8") as handle:
        return handle.read().strip()


def _pg():
    import psycopg2  # only when PostgreSQL is configured
    return psycopg2.connect(os.environ["DEMO_PG_DSN"], password=_secret("DEMO_PG_PASSWORD_FILE"), connect_timeout=3)


@contextmanager
def _pg_cursor():
    """A cursor in a transaction (committed at the end, rolled back on an error), and the
    connection closed after it: psycopg2's "with conn" ends the transaction, not the connection."""
    conn = _pg()
    try:
        with conn, conn.cursor() as cur:
            yield cur
    finally:
        conn.close()


_REDIS = {}  # "master": the client, made on first use
_REDIS_LOCK = threading.Lock()


def _redis_configured():
    return bool(os.environ.get("DEMO_REDIS_SENTINELS", "").strip())


def _redis():
    """The master's client through Sentinel, one for the process: its connection pool is
    thread-safe and follows a failover (it asks Sentinel again when the master changes)."""
    from redis.sentinel import Sentinel
    with _REDIS_LOCK:
        if "master" not in _REDIS:
            sentinels = [(h.rsplit(":", 1)[0].strip("[]"), int(h.rsplit(":", 1)[1]))
                         for h in os.environ["DEMO_REDIS_SENTINELS"].split(",") if h.strip()]
            # TLS to the Sentinels and to the master they name, the certificate checked against the CA.
            tls = {"ssl": True, "ssl_ca_certs": os.environ["DEMO_REDIS_CA_FILE"]} if os.environ.get("DEMO_REDIS_CA_FILE") else {}
            sentinel = Sentinel(sentinels, socket_timeout=2,
                                sentinel_kwargs=dict(tls, password=_secret("DEMO_REDIS_SENTINEL_PASSWORD_FILE"), socket_timeout=2))
            _REDIS["master"] = sentinel.master_for(
                os.environ.get("DEMO_REDIS_MASTER", "keel"), socket_timeout=2,
                username=os.environ.get("DEMO_REDIS_USER"), password=_secret("DEMO_REDIS_PASSWORD_FILE"), **tls)
        return _REDIS["master"]


def ready(headers=None):
    """(ok, details): each configured backend must answer."""
    if BROKEN:
        return False, {"demo": "this version is built broken on purpose"}
    if UNREADY_BEHIND_PROXY and headers is not None and headers.get("X-Forwarded-For"):
        return False, {"demo": "this version is built to fail readiness behind a proxy on purpose"}
    details = {}
    if os.environ.get("DEMO_PG_DSN"):
        try:
            with _pg_cursor() as cur:
                cur.execute("SELECT NOT pg_is_in_recovery()")
                details["postgresql"] = "ok" if cur.fetchone()[0] else "connected to a standby"
        except Exception as exc:  # any failure is "not ready", with its reason
            details["postgresql"] = "error: %s" % str(exc).splitlines()[0]
    if _redis_configured():
        try:
            details["redis"] = "ok" if _redis().ping() else "no answer"
        except Exception as exc:
            details["redis"] = "error: %s" % exc
    return all(v == "ok" for v in details.values()), details


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keel-demo"

    def _send(self, status, body):
        data = json.dumps(body).encode() + b"\n"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):  # one line per request on stderr (the container's log)
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        if self.path == "/health/live":
            self._send(200, {"status": "live"})
        elif self.path == "/health/ready":
            ok, details = ready(self.headers)
            self._send(200 if ok else 503, {"status": "ready" if ok else "not ready", "checks": details})
        elif self.path == "/version":
            self._send(200, {"version": VERSION, "host": HOST})
        elif self.path == "/items":
            self._items_get()
        elif self.path == "/":
            self._send(200, {"app": "keel-demo", "version": VERSION, "host": HOST})
        else:
            self._send(404, {"error": "not found"})

    def do_POST(self):
        if self.path != "/items":
            self._send(404, {"error": "not found"})
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            text = str(json.loads(self.rfile.read(length) or b"{}")["text"])[:200]
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": "expected JSON {\"text\": ...}"})
            return
        try:
            with _pg_cursor() as cur:
                cur.execute("CREATE TABLE IF NOT EXISTS items (id bigserial PRIMARY KEY, text text NOT NULL)")
                cur.execute("INSERT INTO items (text) VALUES (%s) RETURNING id", (text,))
                item_id = cur.fetchone()[0]
        except Exception as exc:
            self._send(503, {"error": "backend: %s" % str(exc).splitlines()[0]})
            return
        # The row is committed: a cache that could not be cleared is reported, not a failure
        # (it expires within 30 s).
        body = {"id": item_id, "text": text}
        if _redis_configured():
            try:
                _redis().delete("demo:latest")
            except Exception as exc:
                body["cache"] = "stale for up to 30 s: %s" % str(exc).splitlines()[0]
        self._send(201, body)

    def _items_get(self):
        try:
            cache = _redis() if _redis_configured() else None
            cached = cache.get("demo:latest") if cache is not None else None
            if cached is not None:
                self._send(200, {"items": json.loads(cached), "from": "redis"})
                return
            with _pg_cursor() as cur:
                cur.execute("SELECT id, text FROM items ORDER BY id DESC LIMIT 10")
                items = [{"id": r[0], "text": r[1]} for r in cur.fetchall()]
            if cache is not None:
                cache.set("demo:latest", json.dumps(items), ex=30)
        except Exception as exc:
            self._send(503, {"error": "backend: %s" % str(exc).splitlines()[0]})
            return
        self._send(200, {"items": items, "from": "postgresql"})


def worker():
    """A background worker: here it only proves it is alive, every 2 seconds."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    state_file = os.path.join(DATA_DIR, "worker-state.json") if DATA_DIR else ""
    state = {"beats": 0}
    if state_file and os.path.exists(state_file):
        with open(state_file, encoding="utf-8") as handle:
            state = json.load(handle)
    while not stopping.is_set():
        with open(HEARTBEAT, "w", encoding="utf-8") as handle:
            handle.write(VERSION)
        if state_file:
            state.update(beats=state.get("beats", 0) + 1, version=VERSION, host=HOST, at=int(time.time()))
            # Written aside and renamed: a reader (or a backup) never sees half a file.
            with open(state_file + ".new", "w", encoding="utf-8") as handle:
                json.dump(state, handle)
            os.replace(state_file + ".new", state_file)
        stopping.wait(2)


def worker_health():
    try:
        age = time.time() - os.stat(HEARTBEAT).st_mtime
    except OSError:
        return 1
    return 0 if age < 10 and not BROKEN else 1


def main():
    if sys.argv[1:] == ["worker"]:
        worker()
        return
    if sys.argv[1:] == ["worker-health"]:
        sys.exit(worker_health())
    server = ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("DEMO_PORT", "8000"))), Handler)
    server.daemon_threads = False
    server.block_on_close = True

    def stop(signum, frame):
        # Stop accepting; requests in flight finish (block_on_close) before the process ends.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
