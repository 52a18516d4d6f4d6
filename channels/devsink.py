"""A reply receiver for `make dev` (TURNSTILE_DEV_SINK=1), never mounted in production.

The demo tenant's callback_url points here, so the whole path (outbox, signed delivery,
signature check) runs on a fresh clone with no receiver of your own. It keeps the last
replies in this process's memory only, and `turnstile send` long-polls it to show the
reply a user would see.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from channels import generic
from channels.errors import WebhookError
from channels.secrets import read_secret
from channels.signing import SignatureError
from workers.runtime import Runtime

MAX_REPLIES = 1000
MAX_WAIT_S = 30.0


class DevSink:
    def __init__(self) -> None:
        self._replies: deque[dict[str, Any]] = deque(maxlen=MAX_REPLIES)
        self._lock = threading.Lock()

    def add(self, reply: dict[str, Any]) -> None:
        with self._lock:
            self._replies.append(reply)

    def find(self, tenant: str, conversation_id: str, after_seq: int) -> list[dict[str, Any]]:
        with self._lock:
            return [
                r
                for r in self._replies
                if r.get("tenant") == tenant
                and r.get("conversation_id") == conversation_id
                and int(r.get("seq", 0)) > after_seq
            ]


def mount_dev_sink(app: FastAPI, rt: Runtime, sink: DevSink) -> None:
    @app.post("/dev/sink/{tenant}")
    async def receive(tenant: str, request: Request) -> JSONResponse:
        config = rt.config.tenant(tenant)
        channel = config.channels.generic if config is not None else None
        secret = read_secret(channel.secret_env) if channel is not None else None
        if secret is None:
            raise WebhookError(404, "unknown_tenant", f"no tenant {tenant!r} with a secret")
        body = await request.body()
        try:
            generic.verify_request(secret, request.headers, body)
        except SignatureError as exc:
            raise WebhookError(401, "bad_signature", str(exc)) from None
        sink.add(json.loads(body))
        return JSONResponse({"received": True})

    @app.get("/dev/sink/{tenant}/{conversation_id}")
    async def replies(
        tenant: str, conversation_id: str, after_seq: int = 0, wait_s: float = 0.0
    ) -> JSONResponse:
        deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
        while True:
            found = sink.find(tenant, conversation_id, after_seq)
            if found or time.monotonic() >= deadline:
                return JSONResponse({"replies": found})
            await asyncio.sleep(0.05)
