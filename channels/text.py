"""Text normalisation at the edge (pure)."""

from __future__ import annotations

import re

# C0 controls, except tab (\x09) and newline (\x0a). NUL breaks PostgreSQL text;
# the others are invisible and make transcripts unreadable.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f]")


def clean_text(raw: str) -> str:
    """The text as sent, minus NUL and other C0 control characters (tab and newline kept)."""
    return _CONTROL.sub("", raw)
