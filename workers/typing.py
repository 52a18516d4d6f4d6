"""Typing indicators while a turn runs (chat channels, best effort).

Shown only once a turn has run for `typing_after_ms`, so instant replies do not flash
an indicator, and refreshed every `typing_every_s` (platforms expire them) until the
turn ends. Failures are logged and forgotten: an indicator is never worth a retry.
"""

from __future__ import annotations

import httpx
import structlog

from channels.delivery_result import Outcome
from channels.generic import callback_body, send_typing
from channels.secrets import read_secret
from config.schema import GenericChannelConfig
from state.models import ClaimedMessage
from workers.background import BlockThread

log = structlog.get_logger(__name__)

TYPING_TIMEOUT_S = 2.0


class TypingIndicator(BlockThread):
    """Context manager around a turn; does nothing if the channel has no indicator."""

    thread_name = "typing"

    def __init__(
        self,
        http: httpx.Client,
        channel: GenericChannelConfig | None,
        message: ClaimedMessage,
    ) -> None:
        super().__init__()
        self._http = http
        self._channel = channel
        self._message = message

    def _wanted(self) -> bool:
        return self._channel is not None and self._channel.typing_after_ms is not None

    def _run(self) -> None:
        channel = self._channel
        if channel is None or channel.typing_after_ms is None:
            return
        if self._stop.wait(channel.typing_after_ms / 1000):
            return
        secret = read_secret(channel.secret_env)
        if secret is None:
            return
        m = self._message
        body = callback_body(
            m.tenant, m.conversation_external_id, m.platform_message_id, m.seq, "typing", ""
        )
        while True:
            result = send_typing(
                self._http, str(channel.callback_url), secret, body, TYPING_TIMEOUT_S
            )
            if result.outcome is not Outcome.SENT:
                log.info("typing.failed", error=result.error)
            if self._stop.wait(channel.typing_every_s):
                return
