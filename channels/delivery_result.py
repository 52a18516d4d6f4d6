"""What a delivery attempt means for the outbox (pure): sent, retry later, or give up."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class DeliveryResult:
    outcome: Outcome
    error: str | None = None
    retry_after_s: float | None = None  # the platform's own Retry-After, when it sent one

    @classmethod
    def sent(cls) -> DeliveryResult:
        return cls(Outcome.SENT)

    @classmethod
    def retry(cls, error: str, retry_after_s: float | None = None) -> DeliveryResult:
        return cls(Outcome.RETRY, error, retry_after_s)

    @classmethod
    def permanent(cls, error: str) -> DeliveryResult:
        return cls(Outcome.PERMANENT, error)


def classify_response(status: int, retry_after: str | None) -> DeliveryResult:
    """2xx sent; 408, 425, 429 and 5xx retried (honouring Retry-After); other 4xx final."""
    if 200 <= status < 300:
        return DeliveryResult.sent()
    error = f"HTTP {status}"
    if status in (408, 425, 429) or status >= 500:
        return DeliveryResult.retry(error, _seconds(retry_after))
    return DeliveryResult.permanent(error)


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None  # an HTTP-date; fall back to our own backoff


def backoff_s(attempt: int, initial_s: float, max_s: float) -> float:
    """Delay before retry number `attempt` (1-based): initial * 2^(attempt-1), capped."""
    return float(min(max_s, initial_s * (2 ** max(0, attempt - 1))))
