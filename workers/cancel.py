"""Cancellation token handed to the agent: set when the lease is lost or a turn is
interrupted, so a turn stops before its side effects instead of racing its successor."""

from __future__ import annotations

import threading


class TurnCancelled(Exception):
    """Raised by an agent that saw its token cancelled."""


class CancelToken:
    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None

    def cancel(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def sleep(self, seconds: float) -> None:
        """Wait up to `seconds`; raise TurnCancelled as soon as the token is cancelled."""
        if self._event.wait(seconds):
            raise TurnCancelled(self.reason or "cancelled")

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise TurnCancelled(self.reason or "cancelled")
