#!/usr/bin/env python3
"""A local stand-in for the APIs the example exporters read (stdlib only).

It replaces, on 127.0.0.1 only, the two services of seed 003:

- Jenkins' JSON API: `GET /api/json` answers `jenkins.json` (next to this file);
- the application's health endpoint: `GET /health` answers 200 `{"status": "ok"}`,
  or 500 after `GET /health/fail` (until `GET /health/recover`), so the health
  exporter's Enum can be seen switching state.

    python3 examples/exporters/exporters/_standin/api.py --port 8081
    JENKINS_URL=http://127.0.0.1:8081 HITL_URL=http://127.0.0.1:8081/health \
        httpsd serve examples/exporters/targets --exporters examples/exporters/exporters

With `--port 0` it picks a free port. Either way its first line on stdout is
`listening on 127.0.0.1:PORT` (the tests read it). The directory's name starts with
`_`, so httpsd never serves this file as an exporter.
"""

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))


class State:
    """Whether /health reports a failure; toggled by /health/fail and /health/recover."""

    lock = threading.Lock()
    healthy = True


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "/api/json":
            with open(os.path.join(HERE, "jenkins.json"), "rb") as f:
                self.answer(200, f.read())
        elif path == "/health":
            with State.lock:
                healthy = State.healthy
            if healthy:
                self.answer(200, b'{"status": "ok", "database": "connected"}')
            else:
                self.answer(500, b'{"status": "error", "database": "connection refused"}')
        elif path in ("/health/fail", "/health/recover"):
            with State.lock:
                State.healthy = path == "/health/recover"
            self.answer(200, json.dumps({"healthy": State.healthy}).encode())
        else:
            self.answer(404, b'{"error": "not found"}')

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8081, help="port on 127.0.0.1 (0: any free port)")
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening on 127.0.0.1:{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
