#!/usr/bin/env python3
"""A webhook receiver for the tests, independent of Nommer's code: it verifies each
delivery with the Standard Webhooks algorithm (HMAC-SHA256 over "id.timestamp.body" with
the base64 key after "whsec_"), answers 500 to the first FAIL_FIRST attempts of every
webhook-id, and logs each verified delivery as a JSON line.

usage: webhook_receiver.py PORT_FILE SECRET FAIL_FIRST LOG_FILE [PORT]
"""
import base64
import hashlib
import hmac
import http.server
import json
import os
import sys
import time

port_file, secret, fail_first, log_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
key = base64.b64decode(secret[len("whsec_"):])
attempts = {}


def verify(headers, body):
    msg_id = headers.get("webhook-id", "")
    ts = headers.get("webhook-timestamp", "")
    sigs = headers.get("webhook-signature", "")
    if not msg_id or not ts.isdigit() or abs(time.time() - int(ts)) > 300:
        return False
    expected = base64.b64encode(
        hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256).digest()
    ).decode()
    return any(
        s.startswith("v1,") and hmac.compare_digest(s[3:], expected) for s in sigs.split(" ")
    )


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        msg_id = self.headers.get("webhook-id", "")
        n = attempts.get(msg_id, 0) + 1
        attempts[msg_id] = n
        ok = verify(self.headers, body)
        with open(log_file, "a") as f:
            f.write(json.dumps({"id": msg_id, "attempt": n, "verified": ok,
                                "answered": 307 if os.environ.get("RECEIVER_REDIRECT") else (500 if n <= fail_first else (200 if ok else 401)),
                                "event": json.loads(body or b"null")}) + "\n")
        redirect = os.environ.get("RECEIVER_REDIRECT")
        if redirect:
            self.send_response(307)
            self.send_header("location", redirect)
        elif n <= fail_first:
            self.send_response(500)
        elif ok:
            self.send_response(200)
        else:
            self.send_response(401)
        self.end_headers()

    def log_message(self, *args):
        pass


port = int(sys.argv[5]) if len(sys.argv) > 5 else 0
# "closed until FILE exists": the port is bound (so it is ours, and nobody else can take
# it) but not listening, so connections are refused, as when a receiver is down; once
# FILE appears the server listens on that same port.
closed_until = sys.argv[6] if len(sys.argv) > 6 else None
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
server.server_bind()
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
if closed_until:
    while not os.path.exists(closed_until):
        time.sleep(0.05)
server.server_activate()
server.serve_forever()
