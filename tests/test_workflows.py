"""The GitHub workflows lint clean with actionlint and zizmor (both from PyPI), and keep the
properties the release process relies on."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


def _tool(name: str) -> str:
    path = shutil.which(name) or str(Path(__import__("sys").executable).parent / name)
    if not Path(path).exists():
        pytest.fail(f"{name} is not installed (it comes with the [test] extra)")
    return path


def test_actionlint() -> None:
    proc = subprocess.run([_tool("actionlint"), *map(str, WORKFLOWS)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor() -> None:
    proc = subprocess.run([_tool("zizmor"), "--offline", "--no-progress", ".github/workflows"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_release_workflow_contract() -> None:
    wf = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as True
    assert on["pull_request"]["paths"][0] == "pipelines/**"
    assert set(on["workflow_dispatch"]["inputs"]) == {"release", "dry_run"}
    assert wf["concurrency"]["cancel-in-progress"] is False
    assert wf["permissions"] == {"contents": "read"}
    jobs = wf["jobs"]
    assert "secrets." not in yaml.safe_dump(jobs["dry-run"]), "pull requests get no secrets"
    # plan → prepare → fan-out → finish, each stage's matrix straight from `release plan --matrix --json`
    assert jobs["dropmap"]["needs"] == "plan" and jobs["prepare"]["needs"] == ["plan", "dropmap"]
    assert jobs["build"]["needs"] == ["plan", "prepare"]
    assert jobs["finish"]["needs"] == ["plan", "build"]
    for stage in ("dropmap", "prepare", "build"):
        assert jobs[stage]["strategy"]["matrix"] == f"${{{{ fromJSON(needs.plan.outputs.{stage}) }}}}"
        assert jobs[stage]["environment"] == "huggingface-release"
    assert jobs["finish"]["environment"] == "huggingface-release"
    # Weights travel through the Hub only: artifacts hold manifests, the cache holds the llama.cpp build.
    text = (ROOT / ".github/workflows/release.yml").read_text() + \
        (ROOT / ".github/actions/release-job/action.yml").read_text()
    for doc in (wf, yaml.safe_load((ROOT / ".github/actions/release-job/action.yml").read_text())):
        steps = [st for job in doc.get("jobs", {}).values() for st in job["steps"]] + \
            doc.get("runs", {}).get("steps", [])
        for step in steps:
            uses = step.get("uses", "")
            if "upload-artifact" in uses:
                assert step["with"]["path"] in ("manifests/", "dist/*/manifest.json"), step
            if "actions/cache" in uses:
                assert step["with"]["path"] == "~/.cache/moe-release", step
            assert "${{ inputs" not in step.get("run", ""), "inputs go through env:, never into run:"
    assert "download-artifact" not in text
