"""A tiny web app for rollout tests: / answers with its version, /health says whether it is
healthy (APP_HEALTHY=0 makes a version whose health check always fails). ``/health?delay=N``
answers after N seconds: a slow health endpoint, to hold a gate open."""

import http.server
import json
import os
import time
import urllib.parse

VERSION = os.environ.get("APP_VERSION", "0")
HEALTHY = os.environ.get("APP_HEALTHY", "1") == "1"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        delay = urllib.parse.parse_qs(url.query).get("delay")
        if delay:
            time.sleep(float(delay[0]))
        if url.path == "/health":
            status, body = (200, {"status": "ok", "version": VERSION}) if HEALTHY else (500, {"status": "broken"})
        else:
            status, body = 200, {"version": VERSION}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("0.0.0.0", 8000), Handler).serve_forever()
