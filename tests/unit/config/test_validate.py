"""`turnstile config validate` catches, before deploy, what processes would refuse."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from workers.cli import cli

PACKAGED = Path(__file__).resolve().parents[3] / "config" / "files"


@pytest.fixture
def deployed(tmp_path: Path) -> Path:
    folder = tmp_path / "deployed"
    shutil.copytree(PACKAGED, folder)
    return folder


@pytest.fixture
def candidate(tmp_path: Path, deployed: Path) -> Path:
    folder = tmp_path / "candidate"
    shutil.copytree(deployed, folder)
    return folder


def run(candidate: Path, deployed: Path) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli, ["config", "validate", str(candidate), "--against", str(deployed)]
    )
    return result.exit_code, result.output


def edit_demo(folder: Path, **changes: object) -> None:
    path = folder / "tenants" / "demo.yaml"
    document = yaml.safe_load(path.read_text())
    document.update(changes)
    path.write_text(yaml.safe_dump(document))


def test_unchanged_files_pass(candidate: Path, deployed: Path) -> None:
    code, output = run(candidate, deployed)
    assert code == 0, output
    assert "ok" in output


def test_a_raised_version_passes(candidate: Path, deployed: Path) -> None:
    edit_demo(candidate, version=2, agent={"kind": "echo", "prefix": "new"})
    assert run(candidate, deployed)[0] == 0


def test_broken_yaml_fails(candidate: Path, deployed: Path) -> None:
    (candidate / "tenants" / "demo.yaml").write_text("version: [2\n")
    code, output = run(candidate, deployed)
    assert code == 1
    assert "not valid YAML" in output


def test_schema_error_names_the_exact_field(candidate: Path, deployed: Path) -> None:
    edit_demo(candidate, version=2, session={"history_turns": 0})
    code, output = run(candidate, deployed)
    assert code == 1
    assert "session.history_turns" in output


def test_lowered_version_fails(candidate: Path, deployed: Path) -> None:
    edit_demo(deployed, version=5)
    edit_demo(candidate, version=4, agent={"kind": "echo", "prefix": "x"})
    code, output = run(candidate, deployed)
    assert code == 1
    assert "version lowered from 5 to 4" in output


def test_same_version_with_other_content_fails(candidate: Path, deployed: Path) -> None:
    edit_demo(candidate, agent={"kind": "echo", "prefix": "sneaky"})
    code, output = run(candidate, deployed)
    assert code == 1
    assert "version 1 reused with other content" in output


def test_json_output_lists_every_file(candidate: Path, deployed: Path) -> None:
    (candidate / "tenants" / "Bad Name.yaml").write_text("version: 1\n")
    result = CliRunner().invoke(
        cli, ["config", "validate", str(candidate), "--against", str(deployed), "--json"]
    )
    report = json.loads(result.output)
    assert result.exit_code == 1
    assert report["ok"] is False
    assert any("not a valid tenant id" in (f["error"] or "") for f in report["files"])
    assert any(f["path"].endswith("global.yaml") and f["error"] is None for f in report["files"])


def test_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TURNSTILE_CONFIG_DIR", str(PACKAGED))
    monkeypatch.setenv("TURNSTILE_DEMO_SECRET", "do-not-print-me")
    result = CliRunner().invoke(cli, ["config", "show", "demo", "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    generic = document["channels"]["generic"]
    assert generic["secret_env"] == "TURNSTILE_DEMO_SECRET"
    assert generic["secret"] == "set"
    assert "do-not-print-me" not in result.output
    assert document["prompt"]["system_prompt"] == ""  # inherited from global defaults
    assert document["versions"] == {"tenant": 1, "global": 1}
