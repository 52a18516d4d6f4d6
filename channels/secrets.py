"""Channel secrets come from environment variables named in the tenant file, never
from the file itself, so config can be reviewed and shipped without leaking them."""

from __future__ import annotations

import os


def read_secret(env_name: str) -> str | None:
    return os.environ.get(env_name) or None
