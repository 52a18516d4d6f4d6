"""The versioned-file registry: tenant and global config, cached and hot-reloaded.

Each file is re-checked at most every `check_interval_s` (one `stat`); a changed file
is parsed and validated, and swapped in only if its `version` went up. A file that
fails validation, lowers its version, or keeps its version with other content is
refused: one log line, a metric, and the last good snapshot stays in service. Readers
get immutable pydantic objects, so a turn that holds one sees a single version from
start to end.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import structlog
import yaml
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from config.effective import EffectiveConfig, effective_config
from config.schema import TENANT_ID_PATTERN, GlobalConfig, TenantConfig
from config.versioning import version_change_error

log = structlog.get_logger(__name__)

CONFIG_REFUSED = Counter(
    "turnstile_config_refused_total",
    "Config files refused (invalid, version lowered, or same version with other content).",
    ["kind", "reason"],
)

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file that cannot be used; `str()` names the file and the exact field."""


@dataclass(frozen=True)
class _Signature:
    mtime_ns: int
    size: int
    inode: int


@dataclass
class _Entry(Generic[M]):
    path: Path
    checked_at: float
    signature: _Signature | None
    model: M | None
    good_digest: str | None = None
    refused_digest: str | None = None


def parse_config_file(path: Path, model: type[M]) -> M:
    """Parse and validate one file; ConfigError names the file and the failing field."""
    try:
        raw = yaml.safe_load(path.read_bytes())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must be a mapping of keys to values")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        raise ConfigError(f"{path}: {where}: {first['msg']}") from None


class ConfigRegistry:
    """Process-wide cache of config snapshots, safe to share between threads."""

    def __init__(
        self,
        config_dir: Path,
        *,
        check_interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dir = config_dir
        self._interval_s = check_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._tenants: dict[str, _Entry[TenantConfig]] = {}
        self._global: _Entry[GlobalConfig] | None = None
        self._effective: dict[str, EffectiveConfig] = {}

    @property
    def config_dir(self) -> Path:
        return self._dir

    def global_config(self) -> GlobalConfig:
        """The current global snapshot; raises ConfigError only if none was ever valid."""
        with self._lock:
            if self._global is None:
                self._global = _Entry(self._dir / "global.yaml", float("-inf"), None, None)
            model = self._refresh(self._global, GlobalConfig, "global")
        if model is None:
            raise ConfigError(f"{self._dir / 'global.yaml'}: no valid global config")
        return model

    def tenant(self, tenant_id: str) -> TenantConfig | None:
        """The tenant's current snapshot, or None for an unknown (or deleted) tenant."""
        if not TENANT_ID_PATTERN.match(tenant_id):
            return None
        with self._lock:
            entry = self._tenants.get(tenant_id)
            if entry is None:
                path = self._dir / "tenants" / f"{tenant_id}.yaml"
                entry = self._tenants[tenant_id] = _Entry(path, float("-inf"), None, None)
            return self._refresh(entry, TenantConfig, "tenant")

    def effective(self, tenant_id: str) -> EffectiveConfig | None:
        """The tenant's file over global defaults, or None for an unknown tenant.

        Cached per tenant and recomputed only when the tenant's or global's version
        changes, so an edit of one tenant never touches another tenant's snapshot.
        """
        tenant = self.tenant(tenant_id)
        if tenant is None:
            return None
        global_ = self.global_config()
        with self._lock:
            cached = self._effective.get(tenant_id)
            if (
                cached is None
                or cached.tenant_version != tenant.version
                or cached.global_version != global_.version
            ):
                cached = self._effective[tenant_id] = effective_config(tenant_id, tenant, global_)
            return cached

    def loaded_versions(self) -> tuple[int | None, dict[str, int]]:
        """(global version, {tenant: version}) this process currently serves."""
        with self._lock:
            global_version = (
                self._global.model.version if self._global and self._global.model else None
            )
            tenants = {
                tenant_id: entry.model.version
                for tenant_id, entry in self._tenants.items()
                if entry.model is not None
            }
        return global_version, tenants

    def _refresh(self, entry: _Entry[M], model: type[M], kind: str) -> M | None:
        now = self._clock()
        if now - entry.checked_at < self._interval_s:
            return entry.model
        entry.checked_at = now
        try:
            st = entry.path.stat()
        except FileNotFoundError:
            if entry.model is not None and kind == "tenant":
                log.warning("config.tenant_removed", path=str(entry.path))
                entry.model, entry.signature, entry.good_digest = None, None, None
            return entry.model if kind == "global" else None
        signature = _Signature(st.st_mtime_ns, st.st_size, st.st_ino)
        if signature != entry.signature:
            entry.signature = signature
            self._reload(entry, model, kind)
        return entry.model

    def _reload(self, entry: _Entry[M], model: type[M], kind: str) -> None:
        digest = hashlib.sha256(entry.path.read_bytes()).hexdigest()
        if digest in (entry.good_digest, entry.refused_digest):
            return
        try:
            candidate = parse_config_file(entry.path, model)
        except ConfigError as exc:
            self._refuse(entry, kind, "invalid", str(exc), digest)
            return
        current = entry.model
        new_version: int = getattr(candidate, "version")  # noqa: B009 - both models have it
        if current is not None and entry.good_digest is not None:
            old_version: int = getattr(current, "version")  # noqa: B009
            refusal = version_change_error(old_version, entry.good_digest, new_version, digest)
            if refusal is not None:
                self._refuse(entry, kind, *refusal, digest)
                return
        entry.model, entry.good_digest, entry.refused_digest = candidate, digest, None
        log.info("config.loaded", kind=kind, path=str(entry.path), version=new_version)

    @staticmethod
    def _refuse(entry: _Entry[M], kind: str, reason: str, detail: str, digest: str) -> None:
        # Remember the refused content so it is reported once, not on every check.
        entry.refused_digest = digest
        CONFIG_REFUSED.labels(kind=kind, reason=reason).inc()
        log.error(
            "config.refused",
            kind=kind,
            path=str(entry.path),
            reason=reason,
            detail=detail,
            serving_version=getattr(entry.model, "version", None),
        )
