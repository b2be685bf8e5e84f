"""A definition never reaches outside its folder, and NAME means one folder (issue 13, items 5 and 27).

The field-by-field refusals (absolute, `..`, symlinks out, loops) are cases of test_bad_inputs; here:
the opt-in for a base checkpoint kept elsewhere, builders asking for a path after `check`, and how a
NAME that is also something in the current folder is resolved.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from release.cli import cli
from release.errors import InputError
from release.spec.load import load_release, resolve_pipeline_dir
from release.spec.paths import PathRefused, resolve_inside

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "pipelines" / "demo"


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines" / "demo"
    shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    return folder


def _use_outside_base(folder: Path, base: str, *, opt_in: bool) -> None:
    toml = folder / "release.toml"
    text = (DEMO / "release.toml").read_text().replace('generator = "tiny-gemma4"\n', "")
    text = text.replace('path = "base"\n', f'path = "{base}"\n' + ("path_outside = true\n" if opt_in else ""))
    toml.write_text(text)


def test_base_outside_needs_the_opt_in(pipeline: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "models" / "tiny"
    elsewhere.mkdir(parents=True)
    _use_outside_base(pipeline, str(elsewhere), opt_in=False)
    result = CliRunner().invoke(cli, ["check", str(pipeline)])
    assert result.exit_code == 2, result.output
    assert "demo/release.toml: base.path:" in result.output and "path_outside = true" in result.output

    _use_outside_base(pipeline, "../../models/tiny", opt_in=False)
    result = CliRunner().invoke(cli, ["check", str(pipeline)])
    assert result.exit_code == 2 and "contains '..'" in result.output, result.output


def test_base_outside_with_the_opt_in_is_used_and_named(pipeline: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "models" / "tiny"
    elsewhere.mkdir(parents=True)
    _use_outside_base(pipeline, "../../models/tiny", opt_in=True)
    result = CliRunner().invoke(cli, ["check", str(pipeline)])
    assert result.exit_code == 0, result.output
    assert f"the base checkpoint is read from {elsewhere}" in result.output
    assert load_release(str(pipeline)).base_path == elsewhere


def test_a_symlinked_base_inside_the_folder_needs_no_opt_in(pipeline: Path, tmp_path: Path) -> None:
    (pipeline / "real-base").mkdir()
    (pipeline / "base").symlink_to("real-base")
    _use_outside_base(pipeline, "base", opt_in=False)
    assert load_release(str(pipeline)).base_path == pipeline.resolve() / "real-base"


def test_release_path_refuses_what_check_refuses(pipeline: Path) -> None:
    """Builders read files through Release.path: the same resolver, so a path that slipped past
    check (or a symlink swapped after it) is still refused."""
    release = load_release(str(pipeline))
    (pipeline / "ollama" / "LICENSE").unlink()
    (pipeline / "ollama" / "LICENSE").symlink_to("/etc/passwd")
    with pytest.raises(InputError, match="outside the release folder"):
        release.path("ollama/LICENSE")
    for rel in ("/etc/passwd", "../demo/scores.json"):
        with pytest.raises(InputError):
            release.path(rel)


def test_resolver_rules(tmp_path: Path) -> None:
    folder = tmp_path / "r"
    (folder / "sub").mkdir(parents=True)
    (folder / "in.txt").write_text("x")
    (folder / "link-in").symlink_to("in.txt")
    (folder / "link-out").symlink_to(tmp_path)
    (folder / "loop").symlink_to("loop")
    assert resolve_inside(folder, "in.txt") == folder / "in.txt"
    assert resolve_inside(folder, "link-in") == folder / "in.txt"
    for rel, why in (("/etc/passwd", "absolute"), ("~/x", "absolute"), ("sub/../in.txt", "'..'"),
                     ("link-out", "outside the release folder"), ("link-out/other", "outside the release folder"),
                     ("loop", "symlink loop")):
        with pytest.raises(PathRefused, match=why):
            resolve_inside(folder, rel)
    assert resolve_inside(folder, str(tmp_path), allow_outside=True) == tmp_path


# ---- NAME ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("broken", ["empty-folder", "file", "loop"])
def test_bare_name_that_is_also_here_is_ambiguous(broken: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    here = tmp_path / "demo"
    if broken == "empty-folder":
        here.mkdir()
    elif broken == "file":
        here.write_text("not a release")
    else:
        here.symlink_to("demo")
    result = CliRunner().invoke(cli, ["check", "demo"])
    assert result.exit_code == 2, result.output
    assert "error: demo: ambiguous: ./demo exists here and pipelines/demo is a release" in result.output
    assert "✓" not in result.output, "nothing was checked"


def test_a_name_written_as_a_path_is_only_that_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "demo").mkdir()
    result = CliRunner().invoke(cli, ["check", "./demo"])
    assert result.exit_code == 2
    assert "error: ./demo: not a release folder (no release.toml in it)" in result.output
    result = CliRunner().invoke(cli, ["check", "./nowhere"])
    assert result.exit_code == 2 and "error: ./nowhere: no such folder" in result.output


def test_names_that_mean_one_folder(pipeline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In the folder that holds pipelines/: the bare name is the release there.
    assert resolve_pipeline_dir("demo", cwd=tmp_path) == pipeline.resolve()
    # Inside this project's pipelines/: ./demo and pipelines/demo are one folder, not an ambiguity.
    assert resolve_pipeline_dir("demo", cwd=DEMO.parent) == DEMO.resolve()
    # Inside another pipelines/ folder, its demo and this project's are two: say which.
    with pytest.raises(InputError, match="ambiguous"):
        resolve_pipeline_dir("demo", cwd=pipeline.parent)
    assert resolve_pipeline_dir("./demo", cwd=pipeline.parent) == pipeline.resolve()
    # A release folder here that is not under any pipelines/ is found by its bare name.
    other = tmp_path / "elsewhere"
    shutil.copytree(pipeline, other / "mine")
    assert resolve_pipeline_dir("mine", cwd=other) == (other / "mine").resolve()
    monkeypatch.chdir(other)
    assert CliRunner().invoke(cli, ["check", "mine"]).exit_code == 0
