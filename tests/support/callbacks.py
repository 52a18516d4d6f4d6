"""A real HTTP server on loopback that plays a tenant's callback endpoint.

It verifies each reply's signature with the production verifier, records what it
received, and can be told to fail (a status per attempt) to exercise retries.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from channels.signing import SignatureError, verify


@dataclass
class Received:
    body: dict[str, Any]
    at: float
    signature_ok: bool


@dataclass
class CallbackServer:
    secret: str
    received: list[Received] = field(default_factory=list)
    attempts: int = 0
    _failures: deque[int] = field(default_factory=deque)
    _always_fail: int | None = None
    _failing_conversations: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    def start(self) -> CallbackServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = owner._next_status(json.loads(body).get("conversation_id"))
                if status == 200:
                    owner._record(body, self.headers)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, format: str, *args: object) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/replies"

    def fail_next(self, *statuses: int) -> None:
        with self._lock:
            self._failures.extend(statuses)

    def fail_always(self, status: int | None) -> None:
        with self._lock:
            self._always_fail = status

    def fail_conversation(self, conversation_id: str, status: int | None) -> None:
        """Fail every POST for one conversation with `status` (None: heal it)."""
        with self._lock:
            if status is None:
                self._failing_conversations.pop(conversation_id, None)
            else:
                self._failing_conversations[conversation_id] = status

    def _next_status(self, conversation_id: str | None) -> int:
        with self._lock:
            self.attempts += 1
            if self._always_fail is not None:
                return self._always_fail
            if conversation_id in self._failing_conversations:
                return self._failing_conversations[conversation_id]
            return self._failures.popleft() if self._failures else 200

    def _record(self, body: bytes, headers: Any) -> None:
        try:
            verify(
                self.secret,
                headers.get("X-Turnstile-Timestamp"),
                headers.get("X-Turnstile-Signature"),
                body,
                now=time.time(),
            )
            ok = True
        except SignatureError:
            ok = False
        with self._lock:
            self.received.append(Received(json.loads(body), time.time(), ok))

    def messages(
        self, conversation_id: str | None = None, kind: str = "message"
    ) -> list[dict[str, Any]]:
        """Received bodies of type `kind` (replies by default, or "typing")."""
        with self._lock:
            return [
                r.body
                for r in self.received
                if r.body["type"] == kind
                and (conversation_id is None or r.body["conversation_id"] == conversation_id)
            ]

    def wait_for(self, count: int, timeout_s: float = 15.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.messages()
            if len(found) >= count:
                return found
            time.sleep(0.02)
        return self.messages()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
