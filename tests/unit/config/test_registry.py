from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.registry import ConfigError, ConfigRegistry, parse_config_file
from config.schema import GlobalConfig, TenantConfig

PACKAGED = Path(__file__).resolve().parents[3] / "config" / "files"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def tenant_doc(version: int, prefix: str = "") -> dict[str, object]:
    return {
        "version": version,
        "agent": {"kind": "echo", "prefix": prefix},
        "channels": {
            "generic": {"secret_env": "ACME_SECRET", "callback_url": "https://acme.example/r"}
        },
    }


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "tenants").mkdir()
    (tmp_path / "global.yaml").write_text("version: 1\n")
    return tmp_path


def write(path: Path, document: object) -> None:
    path.write_text(yaml.safe_dump(document))


def test_packaged_files_are_valid() -> None:
    assert parse_config_file(PACKAGED / "global.yaml", GlobalConfig).version >= 1
    demo = parse_config_file(PACKAGED / "tenants" / "demo.yaml", TenantConfig)
    assert demo.channels.generic is not None


def test_unknown_keys_and_bad_values_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    write(path, {**tenant_doc(1), "agentt": {}})
    with pytest.raises(ConfigError, match="agentt"):
        parse_config_file(path, TenantConfig)
    write(path, {"version": 1, "agent": {"kind": "echo", "latency_ms": [50, 10]}})
    with pytest.raises(ConfigError, match="latency_ms"):
        parse_config_file(path, TenantConfig)
    path.write_text("version: [1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_config_file(path, TenantConfig)


def test_unknown_and_unsafe_tenant_ids_are_none(config_dir: Path) -> None:
    registry = ConfigRegistry(config_dir)
    assert registry.tenant("nobody") is None
    assert registry.tenant("../global") is None


def test_new_version_is_picked_up_after_the_check_interval(config_dir: Path) -> None:
    clock = Clock()
    registry = ConfigRegistry(config_dir, check_interval_s=1.0, clock=clock)
    path = config_dir / "tenants" / "acme.yaml"
    write(path, tenant_doc(1, "v1:"))
    assert registry.tenant("acme").agent.prefix == "v1:"  # type: ignore[union-attr]
    write(path, tenant_doc(2, "v2:"))
    clock.now = 0.5
    assert registry.tenant("acme").agent.prefix == "v1:"  # type: ignore[union-attr]
    clock.now = 1.5
    assert registry.tenant("acme").agent.prefix == "v2:"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "bad",
    [
        "version: [2\n",  # broken YAML
        yaml.safe_dump({**tenant_doc(2), "agent": {"kind": "gpt"}}),  # schema error
        yaml.safe_dump(tenant_doc(0)),  # version lowered (and invalid)
        yaml.safe_dump(tenant_doc(1, "edited")),  # same version, other content
    ],
)
def test_refused_edits_keep_the_last_good_snapshot(config_dir: Path, bad: str) -> None:
    clock = Clock()
    registry = ConfigRegistry(config_dir, check_interval_s=1.0, clock=clock)
    path = config_dir / "tenants" / "acme.yaml"
    write(path, tenant_doc(1, "good"))
    assert registry.tenant("acme").agent.prefix == "good"  # type: ignore[union-attr]
    path.write_text(bad)
    clock.now = 2
    assert registry.tenant("acme").agent.prefix == "good"  # type: ignore[union-attr]


def test_lowered_version_is_refused(config_dir: Path) -> None:
    clock = Clock()
    registry = ConfigRegistry(config_dir, check_interval_s=1.0, clock=clock)
    path = config_dir / "tenants" / "acme.yaml"
    write(path, tenant_doc(5, "five"))
    assert registry.tenant("acme").version == 5  # type: ignore[union-attr]
    write(path, tenant_doc(4, "four"))
    clock.now = 2
    assert registry.tenant("acme").version == 5  # type: ignore[union-attr]
    write(path, tenant_doc(6, "six"))
    clock.now = 4
    assert registry.tenant("acme").version == 6  # type: ignore[union-attr]


def test_deleted_tenant_file_stops_the_tenant(config_dir: Path) -> None:
    clock = Clock()
    registry = ConfigRegistry(config_dir, check_interval_s=1.0, clock=clock)
    path = config_dir / "tenants" / "acme.yaml"
    write(path, tenant_doc(1))
    assert registry.tenant("acme") is not None
    path.unlink()
    clock.now = 2
    assert registry.tenant("acme") is None


def test_global_without_a_valid_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "global.yaml").write_text("version: zero\n")
    with pytest.raises(ConfigError, match="no valid global config"):
        ConfigRegistry(tmp_path).global_config()


def test_a_tenant_edit_recomputes_only_that_tenant(config_dir: Path) -> None:
    clock = Clock()
    registry = ConfigRegistry(config_dir, check_interval_s=1.0, clock=clock)
    write(config_dir / "tenants" / "acme.yaml", tenant_doc(1, "a1"))
    write(config_dir / "tenants" / "beta.yaml", tenant_doc(1, "b1"))
    acme, beta = registry.effective("acme"), registry.effective("beta")
    write(config_dir / "tenants" / "acme.yaml", tenant_doc(2, "a2"))
    clock.now = 2
    assert registry.effective("acme") is not acme
    assert registry.effective("acme").agent.prefix == "a2"  # type: ignore[union-attr]
    assert registry.effective("beta") is beta  # untouched: same cached object


def test_a_global_edit_recomputes_what_derives_from_it_only(config_dir: Path) -> None:
    clock = Clock()
    registry = ConfigRegistry(config_dir, check_interval_s=1.0, clock=clock)
    write(config_dir / "tenants" / "acme.yaml", tenant_doc(1))
    tenant_before = registry.tenant("acme")
    effective_before = registry.effective("acme")
    write(config_dir / "global.yaml", {"version": 2, "models": {"chat": "model-b"}})
    clock.now = 2
    after = registry.effective("acme")
    assert after is not effective_before
    assert after is not None
    assert (after.global_version, after.models.chat) == (2, "model-b")
    assert registry.tenant("acme") is tenant_before  # the tenant file was not re-read


def test_loaded_versions_report_what_this_process_serves(config_dir: Path) -> None:
    registry = ConfigRegistry(config_dir)
    write(config_dir / "tenants" / "acme.yaml", tenant_doc(7))
    registry.effective("acme")
    assert registry.loaded_versions() == (1, {"acme": 7})
