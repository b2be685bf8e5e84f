"""`release check --dist` and numeric options (issue 13, items 20 and 27): usage errors exit 2 and write
nothing; check reports a DIST/NAME the writing commands could not use, and writes nothing itself."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import cli

ROOT = Path(__file__).resolve().parents[1]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_check_takes_dist_and_writes_nothing(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    result = CliRunner().invoke(cli, ["check", "demo", "--dist", str(dist), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output[result.output.index("{"):])
    assert doc["ok"] is True and doc["dist"] == str(dist / "demo")
    assert not dist.exists(), "check writes nothing"


def test_check_refuses_a_dist_name_that_is_a_file(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "demo").write_text("in the way")
    before = _tree(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "release", "check", "demo", "--dist", str(dist)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert f"error: --dist: {dist / 'demo'} is a file, not a folder" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _tree(tmp_path) == before


def test_check_refuses_a_dist_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "dist").write_text("a file")
    result = CliRunner().invoke(cli, ["check", "demo", "--dist", str(tmp_path / "dist")])
    assert result.exit_code == 2
    assert "--dist" in result.output and "is a file" in result.output


def test_default_dist_in_the_way_is_a_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Validating (say, in CI on a read-only checkout) must not depend on dist/, unless asked."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dist").mkdir()
    (tmp_path / "dist" / "demo").write_text("in the way")
    result = CliRunner().invoke(cli, ["check", "demo"])
    assert result.exit_code == 0, result.output
    assert "warning: --dist: dist/demo is a file, not a folder (the default" in result.output


# A release name that does not resolve: were an option accepted, the command would stop at the name
# (and the message would say so) instead of building or publishing anything.
NO_RELEASE = "no-such-release"


@pytest.mark.parametrize("value", ["-5", "0", "nan", "inf", "-inf", "1e400", "many"])
@pytest.mark.parametrize("command", ["build", "publish"])
def test_max_memory_must_be_a_finite_positive_number(command: str, value: str, tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    result = CliRunner().invoke(cli, [command, NO_RELEASE, "--dist", str(dist), f"--max-memory={value}"])
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--max-memory'" in result.output, result.output
    assert not dist.exists()


@pytest.mark.parametrize("value", ["0", "-1", "100000"])
def test_jobs_is_bounded(value: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", NO_RELEASE, "--dist", str(tmp_path / "d"), f"--jobs={value}"])
    assert result.exit_code == 2 and "Invalid value for '--jobs'" in result.output


def test_a_valid_max_memory_is_accepted(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["build", NO_RELEASE, "--dist", str(tmp_path / "d"), "--max-memory=2.5"])
    assert result.exit_code == 2 and "no release 'no-such-release'" in result.output


def test_a_release_without_bf16_is_refused_at_check(tmp_path: Path) -> None:
    """GGUF and NVFP4 are made from the pruned BF16 checkpoint: a definition without [bf16] was accepted by
    `check` and `plan` and crashed `build` with a KeyError traceback."""
    import re
    import shutil

    folder = tmp_path / "no-bf16"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = (folder / "release.toml").read_text()
    (folder / "release.toml").write_text(re.sub(r"\n\[bf16\]\n(?:[^\[\n][^\n]*\n|\n)*", "\n", toml))
    for args in (["check", str(folder)], ["build", str(folder), "--dist", str(tmp_path / "dist")]):
        proc = subprocess.run([sys.executable, "-m", "release", *args], capture_output=True, text=True)
        assert proc.returncode == 2, proc.stderr
        assert "release.toml: gguf: is made from the pruned BF16 checkpoint" in proc.stderr
        assert "release.toml: nvfp4: is made from the pruned BF16 checkpoint" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "dist").exists()
