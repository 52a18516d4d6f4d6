"""`turnstile config validate`: check a config folder before it ships.

Every file must parse and validate, and, compared with the folder now deployed
(`against`), a changed file must raise its version: exactly the rules every running
process applies, so what passes here is what processes will accept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from config.registry import ConfigError, parse_config_file
from config.schema import TENANT_ID_PATTERN, GlobalConfig, TenantConfig
from config.versioning import version_change_error


@dataclass(frozen=True)
class FileReport:
    path: Path
    version: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def validate_dir(directory: Path, against: Path | None = None) -> list[FileReport]:
    reports = [_check(directory / "global.yaml", GlobalConfig, against, "global.yaml")]
    tenants = sorted((directory / "tenants").glob("*.yaml"))
    for path in tenants:
        if not TENANT_ID_PATTERN.match(path.stem):
            reports.append(FileReport(path, None, f"{path}: not a valid tenant id {path.stem!r}"))
            continue
        reports.append(_check(path, TenantConfig, against, f"tenants/{path.name}"))
    return reports


def _check(path: Path, model: type[BaseModel], against: Path | None, relative: str) -> FileReport:
    if not path.exists():
        return FileReport(path, None, f"{path}: missing")
    try:
        version: int = getattr(parse_config_file(path, model), "version")  # noqa: B009
    except ConfigError as exc:
        return FileReport(path, None, str(exc))
    deployed = against / relative if against is not None else None
    if deployed is None or not deployed.exists():
        return FileReport(path, version, None)
    try:
        old_version: int = getattr(parse_config_file(deployed, model), "version")  # noqa: B009
    except ConfigError:
        return FileReport(path, version, None)  # what is deployed is broken; the new one is fine
    refusal = version_change_error(old_version, _digest(deployed), version, _digest(path))
    if refusal is not None:
        return FileReport(path, version, f"{path}: version: {refusal[1]} (deployed: {deployed})")
    return FileReport(path, version, None)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
