"""Signing and posting generic webhooks the way a tenant's backend does."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from channels.signing import sign


def payload(
    conversation_id: str = "conv-1", text: str = "hello", message_id: str | None = None
) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "user_id": "user-1",
        "message_id": message_id or uuid.uuid4().hex,
        "text": text,
    }


def signed_headers(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "X-Turnstile-Timestamp": str(ts),
        "X-Turnstile-Signature": sign(secret, ts, body),
    }


def post_signed(
    client: httpx.Client, tenant: str, secret: str, document: dict[str, Any]
) -> httpx.Response:
    body = json.dumps(document).encode()
    return client.post(
        f"/webhooks/{tenant}/generic", content=body, headers=signed_headers(secret, body)
    )
