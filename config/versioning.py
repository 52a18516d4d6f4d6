"""The version rule of config files (pure), shared by every process and by
`turnstile config validate`: a new content must carry a higher version."""

from __future__ import annotations


def version_change_error(
    old_version: int, old_digest: str, new_version: int, new_digest: str
) -> tuple[str, str] | None:
    """(reason, detail) if replacing the old file by the new one must be refused."""
    if new_digest == old_digest:
        return None
    if new_version < old_version:
        return "version_lowered", f"version lowered from {old_version} to {new_version}"
    if new_version == old_version:
        return "version_reused", f"version {new_version} reused with other content"
    return None
