from __future__ import annotations

import hashlib
import hmac

import pytest

from channels.signing import SignatureError, sign, verify

SECRET = "s3cret"
BODY = b'{"text":"hi"}'


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1_700_000_000, BODY) == f"v1={expected}"


def test_valid_signature_passes() -> None:
    verify(SECRET, "1000", sign(SECRET, 1000, BODY), BODY, now=1000)


def test_one_of_several_rotated_signatures_passes() -> None:
    header = f"v1={'0' * 64}, {sign(SECRET, 1000, BODY)}"
    verify(SECRET, "1000", header, BODY, now=1000)


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "now", "reason"),
    [
        (None, "v1=00", BODY, 1000, "missing"),
        ("1000", None, BODY, 1000, "missing"),
        ("yesterday", "v1=00", BODY, 1000, "unix seconds"),
        ("1000", sign(SECRET, 1000, BODY), BODY, 1301, "300 s"),
        ("1000", sign(SECRET, 1000, BODY), BODY, 699, "300 s"),
        ("1000", sign("other", 1000, BODY), BODY, 1000, "does not match"),
        ("1000", sign(SECRET, 1000, BODY), BODY + b" ", 1000, "does not match"),
        ("1001", sign(SECRET, 1000, BODY), BODY, 1000, "does not match"),
    ],
)
def test_refusals_say_why(
    timestamp: str | None, signature: str | None, body: bytes, now: float, reason: str
) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify(SECRET, timestamp, signature, body, now=now)


def test_window_edges_are_inclusive() -> None:
    verify(SECRET, "1000", sign(SECRET, 1000, BODY), BODY, now=1300)
    verify(SECRET, "1000", sign(SECRET, 1000, BODY), BODY, now=700)
