"""A daemon thread that lives exactly as long as a `with` block.

The lease keeper and the typing indicator both run beside a turn: started when the
block is entered, told to stop and joined when it is left, however it is left.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Self


class BlockThread:
    """Subclasses implement `_run`, which must return soon after `_stop` is set."""

    thread_name = "background"

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _wanted(self) -> bool:
        """Whether to start the thread at all (e.g. a feature switched off)."""
        return True

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        if self._wanted():
            self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
