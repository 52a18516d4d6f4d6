"""HMAC signatures of the generic channel, both directions (pure functions).

signature = "v1=" + hex(HMAC-SHA256(secret, f"{timestamp}.{raw body}")). The timestamp
is unix seconds; a request further than the tolerance from now, either way, is refused,
so a captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """Why a signature was refused; the text is safe to return to the caller."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(
    secret: str,
    timestamp_header: str | None,
    signature_header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> None:
    """Raise SignatureError unless the headers sign `body` within the time tolerance."""
    if not timestamp_header or not signature_header:
        raise SignatureError("missing X-Turnstile-Timestamp or X-Turnstile-Signature")
    try:
        timestamp = int(timestamp_header)
    except ValueError:
        raise SignatureError("X-Turnstile-Timestamp must be unix seconds") from None
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(f"timestamp is more than {tolerance_s} s from now")
    expected = sign(secret, timestamp, body)
    # Several signatures may be sent during a secret rotation: "v1=<a>,v1=<b>".
    candidates = [part.strip() for part in signature_header.split(",")]
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("signature does not match")
