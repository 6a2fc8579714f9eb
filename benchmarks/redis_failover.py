"""Unplanned Redis master loss: client-observed write outage and acknowledged writes lost,
with the redis role's Sentinel defaults beside stock Sentinel settings, in one run.

Each setup starts, on loopback, three ``redis-server`` (one master, two replicas) and three
Sentinels (quorum 2), then a client that discovers the master through the Sentinels and SETs a
new key every 10 ms. After 3 s the master is killed (SIGKILL: a crash, not a clean stop). The
client keeps writing until it has seen a new master for 3 s; it then reads every key it had
acknowledged back from the new master.

* ``keel``: the role's defaults (down-after-milliseconds 2000, failover-timeout 10000,
  parallel-syncs 1) and ``min-replicas-to-write 1`` (``min-replicas-max-lag 10``), as the
  Molecule scenario and the example production inventory set it.
* ``stock``: Sentinel's stock settings (down-after-milliseconds 30000, failover-timeout 180000),
  no min-replicas-to-write.

Usage: python3 benchmarks/redis_failover.py [--tls] [keel] [stock]   (needs redis-server on
PATH, Debian's redis-server package; Sentinel runs as ``redis-server --sentinel``). About a
minute. Figures only; nothing is asserted.

``--tls`` runs every setup as the role does with ``redis_tls``: servers and Sentinels on
``tls-port`` only (``port 0``), ``tls-replication yes``, ``tls-auth-clients no``, with a
throwaway CA and certificate made by ``openssl``; the client verifies them with that CA.
"""

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

SETUPS = {
    "keel": {"down_after": 2000, "failover_timeout": 10000, "min_replicas": 1},
    "stock": {"down_after": 30000, "failover_timeout": 180000, "min_replicas": 0},
}


# Set by --tls: (directory of ca.pem, cert.pem, key.pem; the client's SSL context).
TLS = {}


class RespError(Exception):
    pass


def connect(address, timeout=0.5):
    """A connection to a server or Sentinel, TLS (verified with the throwaway CA) under --tls."""
    sock = socket.create_connection(address, timeout=timeout)
    if TLS:
        try:
            return TLS["context"].wrap_socket(sock, server_hostname=address[0])
        except OSError:
            sock.close()
            raise
    return sock


def make_tls(directory):
    """A CA and a certificate for 127.0.0.1 signed by it (openssl), and the client's context."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ca, cert, key = (os.path.join(directory, n) for n in ("ca.pem", "cert.pem", "key.pem"))
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-subj", "/CN=bench CA", "-keyout", os.path.join(directory, "ca.key"), "-out", ca)
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", key, "-out", os.path.join(directory, "req.pem"))
    ext = os.path.join(directory, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    run("x509", "-req", "-in", os.path.join(directory, "req.pem"), "-CA", ca, "-CAkey", os.path.join(directory, "ca.key"),
        "-CAcreateserial", "-days", "1", "-extfile", ext, "-out", cert)
    TLS.update(dir=directory, ca=ca, cert=cert, key=key, context=ssl.create_default_context(cafile=ca))


def tls_args():
    """Server and Sentinel settings of the role's redis_tls (as "name value" pairs)."""
    if not TLS:
        return []
    return [("tls-cert-file", TLS["cert"]), ("tls-key-file", TLS["key"]), ("tls-ca-cert-file", TLS["ca"]),
            ("tls-auth-clients", "no"), ("tls-replication", "yes")]


def call(address, *args, timeout=0.5):
    """One command on a new connection, in RESP; returns the reply (errors raise RespError)."""
    with connect(address, timeout=timeout) as sock:
        payload = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (str(x).encode() for x in args))
        sock.sendall(payload)
        return _read(sock.makefile("rb"))


def _read(reader):
    line = reader.readline()
    if not line:
        raise RespError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        raise RespError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        length = int(rest)
        return None if length < 0 else reader.read(length + 2)[:-2].decode()
    if kind == b"*":
        count = int(rest)
        return None if count < 0 else [_read(reader) for index in range(count)]
    raise RespError("bad reply %r" % line)


class Client(object):
    """Asks the Sentinels for the master, keeps one connection to it, rediscovers on any error."""

    def __init__(self, sentinels):
        self.sentinels = sentinels
        self.sock = None
        self.master = None

    def _discover(self):
        for address in self.sentinels:
            try:
                reply = call(address, "SENTINEL", "get-master-addr-by-name", "keel")
                if reply:
                    return (reply[0], int(reply[1]))
            except (OSError, RespError):
                continue
        raise RespError("no Sentinel names a master")

    def command(self, *args):
        try:
            if self.sock is None:
                self.master = self._discover()
                self.sock = connect(self.master)
                self.reader = self.sock.makefile("rb")
                # A replica that says it is a master is not one: check the role first.
                self.sock.sendall(b"*1\r\n$4\r\nROLE\r\n")
                if _read(self.reader)[0] != "master":
                    raise RespError("not a master yet")
            self.sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in (str(x).encode() for x in args)))
            return _read(self.reader)
        except (OSError, RespError):
            if self.sock is not None:
                self.sock.close()
            self.sock = None
            raise


def start(setup, base):
    conf = SETUPS[setup]
    procs = []
    ports = [base + i for i in range(3)]
    for i, port in enumerate(ports):
        d = tempfile.mkdtemp(prefix="keel-redis-bench-")
        listen = ["--port", "0", "--tls-port", str(port)] if TLS else ["--port", str(port)]
        args = ["redis-server"] + listen + [
            "--bind", "127.0.0.1", "--dir", d, "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec", "--min-replicas-to-write", str(conf["min_replicas"]), "--min-replicas-max-lag", "10",
            "--daemonize", "no", "--logfile", os.path.join(d, "log")]
        for name, value in tls_args():
            args += ["--" + name, value]
        if i > 0:
            args += ["--replicaof", "127.0.0.1", str(ports[0])]
        procs.append((subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), d))
    time.sleep(1)
    sentinels = []
    for i in range(3):
        d = tempfile.mkdtemp(prefix="keel-sentinel-bench-")
        path = os.path.join(d, "sentinel.conf")
        with open(path, "w") as f:
            if TLS:
                f.write("port 0\ntls-port %d\n" % (base + 100 + i))
                f.writelines("%s %s\n" % pair for pair in tls_args())
            else:
                f.write("port %d\n" % (base + 100 + i))
            f.write("bind 127.0.0.1\ndir %s\nlogfile %s/log\n" % (d, d))
            f.write("sentinel monitor keel 127.0.0.1 %d 2\n" % ports[0])
            f.write("sentinel down-after-milliseconds keel %d\n" % conf["down_after"])
            f.write("sentinel failover-timeout keel %d\n" % conf["failover_timeout"])
            f.write("sentinel parallel-syncs keel 1\n")
        procs.append((subprocess.Popen(["redis-server", path, "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), d))
        sentinels.append(("127.0.0.1", base + 100 + i))
    # Replicas in sync and the Sentinels aware of each other.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            info = call(("127.0.0.1", ports[0]), "INFO", "replication")
            known = call(sentinels[0], "SENTINEL", "MASTER", "keel")
            fields = dict(zip(known[0::2], known[1::2]))
            if "connected_slaves:2" in info and fields.get("num-other-sentinels") == "2":
                break
        except (OSError, RespError):
            pass
        time.sleep(0.2)
    return procs, sentinels


def run(setup, base):
    procs, sentinels = start(setup, base)
    client = Client(sentinels)
    acked, tried, longest = [], 0, 0.0
    start_t = time.monotonic()
    last_ack = start_t
    killed_at = None
    new_master_since = None
    first_master = None
    try:
        while time.monotonic() - start_t < 120:
            tried += 1
            key = "bench:%d" % tried
            try:
                client.command("SET", key, "1")
                now = time.monotonic()
                longest = max(longest, now - last_ack)
                last_ack = now
                acked.append(key)
                first_master = first_master or client.master
                if killed_at and client.master != first_master:
                    new_master_since = new_master_since or now
                    if now - new_master_since > 3:
                        break
            except (OSError, RespError):
                pass
            if killed_at is None and time.monotonic() - start_t > 3:
                procs[0][0].send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
            time.sleep(0.01)
        lost = None
        deadline = time.monotonic() + 10
        while lost is None and time.monotonic() < deadline:
            try:
                present = 0
                for i in range(0, len(acked), 500):
                    present += sum(1 for v in client.command("MGET", *acked[i:i + 500]) if v is not None)
                lost = len(acked) - present
            except (OSError, RespError):
                time.sleep(0.2)
        return {"setup": setup, "outage_s": round(longest, 2), "acknowledged": len(acked), "lost": lost,
                "new_master": new_master_since is not None}
    finally:
        for proc, d in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            shutil.rmtree(d, ignore_errors=True)


def main():
    if not shutil.which("redis-server"):
        sys.exit("redis-server not found (apt-get install redis-server)")
    args = sys.argv[1:]
    if "--tls" in args:
        args.remove("--tls")
        make_tls(tempfile.mkdtemp(prefix="keel-redis-bench-tls-"))
    setups = args or ["keel", "stock"]
    print("%-6s %-24s %-12s %-10s %s" % ("setup", "settings", "outage (s)", "acked", "acked lost"))
    for i, setup in enumerate(setups):
        r = run(setup, 27100 + 1000 * i)
        conf = SETUPS[setup]
        settings = "down-after %d, min-rep %d" % (conf["down_after"], conf["min_replicas"])
        note = "" if r["new_master"] else " (no new master seen)"
        name = setup + ("+tls" if TLS else "")
        print("%-6s %-24s %-12s %-10d %s%s" % (name, settings, r["outage_s"], r["acknowledged"], r["lost"], note), flush=True)
    if TLS:
        shutil.rmtree(TLS["dir"], ignore_errors=True)


if __name__ == "__main__":
    main()
