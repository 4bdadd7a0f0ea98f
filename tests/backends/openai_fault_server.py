"""A small OpenAI-compatible chat server on loopback that injects faults on request.

Each request takes the next fault from a queue (429, 500, timeout, drop, badjson, empty,
trickle: a proper reply sent one byte every `trickle_s` for up to `hang_s`, then the rest;
echo_auth: HTTP 401 whose error text repeats the Authorization header and the key);
when the queue is empty it answers properly. Answers are deterministic: the text names the
last user message's first word, the seed and the choice index.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FaultServer:
    """Serve /v1/chat/completions on 127.0.0.1 in a thread; use as a context manager."""

    def __init__(self, faults=(), honour_n=True, fail_after=None, hang_s=3.0, trickle_s=0.5):
        self.faults = list(faults)
        self.honour_n = honour_n
        self.fail_after = fail_after  # answer this many requests, then only HTTP 500
        self.hang_s = hang_s
        self.trickle_s = trickle_s
        self.lock = threading.Lock()
        self.log: list[tuple[str, dict]] = []  # (what happened, request body)
        self.auth: list[str] = []  # Authorization headers received
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()

    def next_action(self, body: dict) -> str:
        with self.lock:
            served = sum(1 for what, _ in self.log if what == "ok")
            if self.faults:
                action = self.faults.pop(0)
            elif self.fail_after is not None and served >= self.fail_after:
                action = "500"
            else:
                action = "ok"
            self.log.append((action, body))
        return action

    def count(self, what: str) -> int:
        return sum(1 for w, _ in self.log if w == what)

    def reply(self, body: dict) -> dict:
        n = int(body.get("n") or 1) if self.honour_n else 1
        word = body["messages"][-1]["content"].split()[0]
        seed = body.get("seed")
        texts = [
            f"{word} seed={seed} choice={i} answer {seed % 10 if seed else 0}" for i in range(n)
        ]
        return {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": i,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": t},
                }
                for i, t in enumerate(texts)
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4 * n, "total_tokens": 3 + 4 * n},
        }


def _handler(server: FaultServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep test output quiet
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.auth.append(self.headers.get("Authorization", ""))
            action = server.next_action(body)
            if action in ("429", "500"):
                # retry-after-ms keeps the client's (honoured) backoff short in tests.
                self._send(
                    int(action), b'{"error": {"message": "injected"}}', {"retry-after-ms": "5"}
                )
            elif action == "timeout":
                time.sleep(server.hang_s)
                self.close_connection = True
            elif action == "drop":
                self.close_connection = True  # close the socket without any reply
            elif action == "trickle":
                self._trickle(json.dumps(server.reply(body)).encode())
            elif action == "echo_auth":
                auth = self.headers.get("Authorization", "")
                message = f"rejected {auth}; key {auth.split()[-1]} is revoked"
                self._send(401, json.dumps({"error": {"message": message}}).encode(), {})
            elif action == "badjson":
                self._send(200, b'{"id": "x", "choices": [', {})
            elif action == "empty":
                self._send(200, json.dumps({**server.reply(body), "choices": []}).encode(), {})
            else:
                self._send(200, json.dumps(server.reply(body)).encode(), {})

        def _trickle(self, payload):
            # Each byte arrives well within any per-read timeout; the whole reply does not.
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            end = time.monotonic() + server.hang_s
            try:
                while payload and time.monotonic() < end:
                    self.wfile.write(payload[:1])
                    self.wfile.flush()
                    payload = payload[1:]
                    time.sleep(server.trickle_s)
                self.wfile.write(payload)
            except OSError:  # the client gave up and closed the connection
                self.close_connection = True

        def _send(self, status, payload, headers):
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

    return Handler
