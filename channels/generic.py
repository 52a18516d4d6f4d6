"""The generic JSON channel: signed webhook in, signed callback out.

Inbound: `{"conversation_id", "user_id", "message_id", "text"}`, signed with the
tenant's secret (see channels.signing). Outbound: a POST to the tenant's
`callback_url` with `{"tenant", "conversation_id", "in_reply_to", "seq", "type",
"text"}`, signed the same way, so receivers verify replies with the code they already
use to sign requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Annotated, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from channels.delivery_result import DeliveryResult, classify_response
from channels.signing import sign, verify
from channels.text import clean_text
from state.models import InboundMessage, OutboxItem

CHANNEL = "generic"

# Bounds on identifiers: they become database keys and log fields.
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class GenericWebhook(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    conversation_id: Identifier
    user_id: Identifier
    message_id: Identifier
    text: Annotated[str, Field(max_length=64_000)]


class PayloadError(ValueError):
    """A malformed body; the text names the field and is safe to return."""


def verify_request(secret: str, headers: Mapping[str, str], body: bytes) -> None:
    """Raise SignatureError unless the X-Turnstile headers sign `body`, now."""
    verify(
        secret,
        headers.get("x-turnstile-timestamp"),
        headers.get("x-turnstile-signature"),
        body,
        now=time.time(),
    )


def parse_webhook(tenant: str, body: bytes) -> InboundMessage:
    try:
        decoded = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from None
    try:
        payload = GenericWebhook.model_validate(decoded)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise PayloadError(f"{where}: {first['msg']}") from None
    return InboundMessage(
        tenant=tenant,
        channel=CHANNEL,
        conversation_external_id=clean_text(payload.conversation_id),
        user_external_id=clean_text(payload.user_id),
        platform_message_id=clean_text(payload.message_id),
        text=clean_text(payload.text),
    )


def callback_body(
    tenant: str,
    conversation_id: str,
    in_reply_to: str,
    seq: int,
    kind: Literal["message", "typing"],
    text: str,
) -> bytes:
    return json.dumps(
        {
            "tenant": tenant,
            "conversation_id": conversation_id,
            "in_reply_to": in_reply_to,
            "seq": seq,
            "type": kind,
            "text": text,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def send_reply(
    http: httpx.Client, callback_url: str, secret: str, item: OutboxItem, timeout_s: float
) -> DeliveryResult:
    """POST one signed reply; the result says whether to retry and when."""
    body = callback_body(
        item.tenant,
        item.conversation_external_id,
        item.in_reply_to,
        item.seq,
        "message",
        item.text,
    )
    # Stable across retries: a receiver that saw the reply already can drop it.
    delivery_id = f"{item.tenant}:{item.conversation_id}:{item.seq}"
    return _post(http, callback_url, secret, body, timeout_s, delivery_id)


def send_typing(
    http: httpx.Client, callback_url: str, secret: str, body: bytes, timeout_s: float
) -> DeliveryResult:
    """POST a typing indicator (best effort: never retried, never stored)."""
    return _post(http, callback_url, secret, body, timeout_s, None)


def _post(
    http: httpx.Client,
    url: str,
    secret: str,
    body: bytes,
    timeout_s: float,
    delivery_id: str | None,
) -> DeliveryResult:
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "X-Turnstile-Timestamp": str(timestamp),
        "X-Turnstile-Signature": sign(secret, timestamp, body),
    }
    if delivery_id is not None:
        headers["X-Turnstile-Delivery-Id"] = delivery_id
    try:
        response = http.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        return DeliveryResult.retry(f"{type(exc).__name__}: {exc}")
    return classify_response(response.status_code, response.headers.get("Retry-After"))
