"""`turnstile config validate | show | status`: the operator's view of config."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from redis import Redis
from rich.console import Console
from rich.table import Table

from config.effective import EffectiveConfig
from config.registry import ConfigRegistry
from config.validate import validate_dir
from state.processes import list_processes


def validate(directory: Path, against: Path | None, as_json: bool) -> int:
    """Print a line per file; 1 if any file would be refused."""
    reports = validate_dir(directory, against)
    ok = all(report.ok for report in reports)
    if as_json:
        files = [{"path": str(r.path), "version": r.version, "error": r.error} for r in reports]
        print(json.dumps({"ok": ok, "files": files}))
    else:
        for report in reports:
            if report.ok:
                print(f"ok     {report.path} (version {report.version})")
            else:
                print(f"error  {report.error}")
    return 0 if ok else 1


def show(registry: ConfigRegistry, tenant_id: str, as_json: bool) -> int:
    config = registry.effective(tenant_id)
    if config is None:
        print(f"turnstile: no tenant {tenant_id!r} in {registry.config_dir}")
        return 1
    document = effective_document(config)
    if as_json:
        print(json.dumps(document))
    else:
        Console().print_json(json.dumps(document))
    return 0


def effective_document(config: EffectiveConfig) -> dict[str, Any]:
    """The effective config as JSON; every `*_env` secret shows its variable's name and
    whether it is set, never a value."""
    document: dict[str, Any] = {
        "tenant": config.tenant_id,
        "versions": {"tenant": config.tenant_version, "global": config.global_version},
    }
    for name in ("agent", "prompt", "session", "compliance", "channels", "models"):
        document[name] = _mask(getattr(config, name))
    document["allowed_tools"] = list(config.allowed_tools)
    document["workflows"] = {k: v.model_dump(mode="json") for k, v in config.workflows.items()}
    return document


def _mask(section: BaseModel) -> Any:
    import os

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            masked: dict[str, Any] = {}
            for key, item in value.items():
                masked[key] = walk(item)
                if key.endswith("_env") and isinstance(item, str):
                    masked[key[: -len("_env")]] = "set" if os.environ.get(item) else "not set"
            return masked
        return value

    return walk(section.model_dump(mode="json"))


def status(client: Redis, as_json: bool) -> int:
    processes = list_processes(client)
    if as_json:
        print(json.dumps([vars(p) for p in processes]))
        return 0
    table = Table(title="config versions by process")
    for column in ("role", "process", "global", "tenants", "reported"):
        table.add_column(column)
    now = time.time()
    for p in processes:
        tenants = ", ".join(f"{t}={v}" for t, v in sorted(p.tenants.items())) or "-"
        table.add_row(
            p.role,
            f"{p.host}:{p.pid}",
            "-" if p.global_version is None else str(p.global_version),
            tenants,
            f"{now - p.at:.0f} s ago",
        )
    Console().print(table)
    skew = _skew(processes)
    for tenant, versions in skew.items():
        print(f"skew: {tenant} runs versions {sorted(versions)}")
    return 0


def _skew(processes: list[Any]) -> dict[str, set[int]]:
    seen: dict[str, set[int]] = {}
    for p in processes:
        for tenant, version in p.tenants.items():
            seen.setdefault(tenant, set()).add(version)
        if p.global_version is not None:
            seen.setdefault("(global)", set()).add(p.global_version)
    return {tenant: versions for tenant, versions in seen.items() if len(versions) > 1}
