"""The echo agent: replies `prefix + text` after a simulated thinking time.

It exists for benchmarks and ordering tests: the latency range makes turns overlap the
way real LLM turns do, and the prefix shows which config version produced a reply.
"""

from __future__ import annotations

import os
import random
import signal

from config.schema import EchoAgentConfig
from workers.agents.base import AgentReply, TurnInput
from workers.cancel import CancelToken


class EchoAgent:
    def __init__(self, config: EchoAgentConfig) -> None:
        self._config = config

    def run(self, turn: TurnInput, cancel: CancelToken) -> AgentReply:
        low_ms, high_ms = self._config.latency_ms
        if high_ms > 0:
            cancel.sleep(random.uniform(low_ms, high_ms) / 1000)
        cancel.raise_if_cancelled()
        if self._config.crash_marker is not None and self._config.crash_marker in turn.text:
            os.kill(os.getpid(), signal.SIGKILL)
        return AgentReply(text=self._config.prefix + turn.text)
