"""Placeholders (issue 19.13; release/spec/placeholders.py): the example revision pin, a `# PLACEHOLDER` text
and a drop map marked as one are warnings in `check` and in rehearsals (`publish --dry-run`, `--local`),
and errors in a real publish (`--job` and `--finish` included), before any work."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
V4_PLACEHOLDERS = ["v4/release.toml: base.revision: ", "v4/release.toml: quality.text: heldout.txt starts with",
                   "v4/release.toml: gguf.imatrix: calibration.txt starts with", "v4/dropmap.json: source: "]
CLOSED_PORT = "http://127.0.0.1:9"  # nothing listens there: a remote call would end in a network error (1)
TOKEN = "hf_placeholdertestplaceholdertest"


def _release(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300", "HF_TOKEN": TOKEN, "HF_HUB_DISABLE_XET": "1"}
    return subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env=env)


def _lines(stderr: str, kind: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith(f"{kind}:")]


def test_check_warns_about_each_placeholder_of_v4_and_passes() -> None:
    proc = _release("check", "v4")
    assert proc.returncode == 0, proc.stderr
    warnings = _lines(proc.stderr, "warning")
    for where in V4_PLACEHOLDERS:
        assert any(where in w and "placeholder" in w.lower() for w in warnings), (where, warnings)
    assert not _lines(proc.stderr, "error")


def test_the_demo_has_no_placeholder() -> None:
    """Its all-zero pin is no placeholder: its base is generated, there is no commit to pin."""
    proc = _release("check", "demo")
    assert proc.returncode == 0, proc.stderr
    assert "placeholder" not in proc.stderr.lower(), proc.stderr


@pytest.mark.parametrize("args", [
    ("publish", "v4"),
    ("publish", "v4", "--job", "prepare"),
    ("publish", "v4", "--finish"),
])
def test_a_real_publish_refuses_every_placeholder_before_any_work(tmp_path: Path, args: tuple[str, ...]) -> None:
    dist = tmp_path / "dist"
    proc = _release(*args, "--dist", str(dist), "--hub-endpoint", CLOSED_PORT)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "network" not in proc.stderr
    errors = _lines(proc.stderr, "error")
    for where in V4_PLACEHOLDERS:
        assert any(where in e for e in errors), (where, errors)
    assert len(errors) == len(V4_PLACEHOLDERS), errors
    assert all("--dry-run and --local rehearse" in e for e in errors)
    assert not dist.exists(), "a refused publish wrote into --dist"


def _demo_with_a_placeholder_text(tmp_path: Path) -> Path:
    copy = tmp_path / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", copy, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    text = copy / "heldout.txt"
    text.write_text("# PLACEHOLDER held-out text: replace it\n" + text.read_text())
    return copy


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["--dry-run", "--local"])
def test_rehearsals_only_warn(tmp_path: Path, mode: str) -> None:
    from release.localhub import LocalHub

    copy = _demo_with_a_placeholder_text(tmp_path)
    want = "demo/release.toml: quality.text: heldout.txt starts with a # PLACEHOLDER line"
    check = _release("check", str(copy))
    assert check.returncode == 0 and any(want in w for w in _lines(check.stderr, "warning")), check.stderr
    hub = LocalHub(tmp_path / "hub", {TOKEN: ["demo"]})
    extra = ("--hub-endpoint", hub.start()) if mode == "--dry-run" else ()
    try:
        proc = _release("publish", str(copy), mode, "--only", "bf16", "--dist", str(tmp_path / "dist"), *extra)
    finally:
        hub.stop()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(want in w for w in _lines(proc.stderr, "warning")), proc.stderr[-3000:]
    assert (tmp_path / "dist" / "demo" / "bf16" / "config.json").is_file()
