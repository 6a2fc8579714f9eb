"""A client that writes through Sentinel discovery for a while and reports what it saw.

    python3 drill_client.py --sentinels h1:26379,h2:26379 --seconds 20 [--key-prefix drill] [--tls-ca CA.pem]
    (passwords from REDIS_APP_PASSWORD and REDIS_SENTINEL_PASSWORD)

With --tls-ca, every connection (to the Sentinels and to the master) is TLS, the server's
certificate verified with that CA (redis-py's ssl=True, ssl_ca_certs).

Every --interval it SETs a new key on the master Sentinel names (redis-py's Sentinel pool
asks again after a connection error or a READONLY answer). It prints one JSON line: writes
tried and acknowledged, the longest time without an acknowledged write (the client-observed
write outage), and how many acknowledged keys the master does not have at the end (lost).
"""

import argparse
import json
import os
import time

import redis
from redis.sentinel import Sentinel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentinels", required=True)
    parser.add_argument("--master-name", default="keel")
    parser.add_argument("--user", default="app")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=0.02)
    parser.add_argument("--key-prefix", default="drill")
    parser.add_argument("--tls-ca", help="TLS to the Sentinels and servers, verified with this CA file")
    args = parser.parse_args()
    tls = {"ssl": True, "ssl_ca_certs": args.tls_ca, "ssl_cert_reqs": "required"} if args.tls_ca else {}
    sentinels = [(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in args.sentinels.split(",")]
    sentinel = Sentinel(sentinels, socket_timeout=0.5, socket_connect_timeout=0.5,
                        sentinel_kwargs=dict({"password": os.environ["REDIS_SENTINEL_PASSWORD"],
                                              "socket_timeout": 0.5, "socket_connect_timeout": 0.5}, **tls))
    master = sentinel.master_for(args.master_name, username=args.user, password=os.environ["REDIS_APP_PASSWORD"],
                                 socket_timeout=0.5, socket_connect_timeout=0.5, **tls)
    prefix = "%s:%d" % (args.key_prefix, int(time.time()))
    start = time.monotonic()
    last_ack = start
    longest = 0.0
    tried = 0
    acked = []
    errors = {}
    masters = []
    while time.monotonic() - start < args.seconds:
        tried += 1
        key = "%s:%d" % (prefix, tried)
        try:
            master.set(key, "1")
            now = time.monotonic()
            longest = max(longest, now - last_ack)
            last_ack = now
            acked.append(key)
            address = master.connection_pool.get_master_address()
            if not masters or masters[-1] != "%s:%s" % address:
                masters.append("%s:%s" % address)
        except (redis.RedisError, OSError) as exc:
            name = type(exc).__name__
            errors[name] = errors.get(name, 0) + 1
        time.sleep(args.interval)
    longest = max(longest, time.monotonic() - last_ack)
    lost = None
    deadline = time.monotonic() + 10
    while lost is None and time.monotonic() < deadline:
        try:
            present = 0
            for i in range(0, len(acked), 500):
                present += sum(1 for v in master.mget(acked[i:i + 500]) if v is not None)
            lost = len(acked) - present
        except (redis.RedisError, OSError):
            time.sleep(0.2)
    print(json.dumps({"tried": tried, "acknowledged": len(acked), "lost": lost, "outage_s": round(longest, 3),
                      "errors": errors, "masters": masters}))


if __name__ == "__main__":
    main()
