"""The release's git tag on a machine with no git identity (a hosted runner: no global or system config,
no HOME config): the tool gives git the identity per command — the definition's `git_tagger`, else the
workflow's actor, else git's own, else the default — and writes no config."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from release.gittag import DEFAULT_TAGGER, tag_message, tag_pipelines_repo
from release.pipeline import Context, Options
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", "/dev/null")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "EMAIL",
                "GITHUB_ACTOR", "GITHUB_ACTOR_ID"):
        monkeypatch.delenv(var, raising=False)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def pipelines_repo(root: Path, toml_extra: str = "") -> Path:
    repo = root / "pipelines-repo"
    folder = repo / "pipelines" / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    if toml_extra:
        toml = (folder / "release.toml").read_text()
        (folder / "release.toml").write_text(toml.replace("[release]\n", f"[release]\n{toml_extra}\n", 1))
    git(root, "init", "-q", str(repo))
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "demo")
    return folder


def tagger_of(repo: Path, tag: str) -> str:
    return git(repo, "for-each-ref", f"refs/tags/{tag}", "--format=%(taggername) %(taggeremail)").strip()


def context(folder: Path) -> Context:
    return Context(load_release(str(folder)), Options(dist_root=folder.parent.parent / "dist", quiet=True))


def test_a_machine_without_identity_still_tags(tmp_path: Path, no_identity: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = pipelines_repo(tmp_path)
    repo = folder.parent.parent
    plain = subprocess.run(["git", "-C", str(repo), "tag", "-a", "plain", "-m", "x"], capture_output=True, text=True)
    assert plain.returncode != 0, "this machine has a git identity: the test would prove nothing"

    ctx = context(folder)
    assert tag_pipelines_repo(ctx, "Release demo\n\n{\"manifest\": 1}") == "release/demo"
    assert tagger_of(repo, "release/demo") == DEFAULT_TAGGER
    assert tag_message(repo, "release/demo") == "Release demo\n\n{\"manifest\": 1}"
    assert "user" not in (repo / ".git" / "config").read_text(), "a git identity was written to the config"

    # Again on the same HEAD: nothing to do. On a new HEAD: kept, unless asked to move it.
    assert tag_pipelines_repo(ctx, "other message") == "release/demo"
    assert tag_message(repo, "release/demo") == "Release demo\n\n{\"manifest\": 1}"
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "--allow-empty", "-m", "2")
    tag_pipelines_repo(ctx, "second")
    assert git(repo, "rev-parse", "release/demo^{commit}") != git(repo, "rev-parse", "HEAD")
    assert any("not moved" in line and "--move-tags" in line for line in ctx.log)
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    monkeypatch.setenv("GITHUB_ACTOR_ID", "583231")
    tag_pipelines_repo(ctx, "second", move=True)
    assert git(repo, "rev-parse", "release/demo^{commit}") == git(repo, "rev-parse", "HEAD")
    assert tag_message(repo, "release/demo") == "second"
    # The workflow's actor, by GitHub's no-reply address.
    assert tagger_of(repo, "release/demo") == "octocat <583231+octocat@users.noreply.github.com>"


def test_the_definition_names_the_tagger(tmp_path: Path, no_identity: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_ACTOR", "octocat")
    folder = pipelines_repo(tmp_path, 'git_tagger = "Release Bot <release-bot@example.org>"')
    tag_pipelines_repo(context(folder), "Release demo")
    assert tagger_of(folder.parent.parent, "release/demo") == "Release Bot <release-bot@example.org>"


def test_git_identity_configured_here_is_used(tmp_path: Path, no_identity: None) -> None:
    folder = pipelines_repo(tmp_path)
    repo = folder.parent.parent
    git(repo, "config", "user.name", "Local Person")
    git(repo, "config", "user.email", "local@example.org")
    tag_pipelines_repo(context(folder), "Release demo")
    assert tagger_of(repo, "release/demo") == "Local Person <local@example.org>"


@pytest.mark.parametrize("value", ["nobody", "Name <no-at-sign>", "<a@b.c>", "Name <a@b.c> trailing"])
def test_a_bad_git_tagger_is_refused_at_check(tmp_path: Path, value: str) -> None:
    folder = tmp_path / "demo"
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", ".base.demo.json"))
    toml = (folder / "release.toml").read_text()
    (folder / "release.toml").write_text(toml.replace("[release]\n", f'[release]\ngit_tagger = "{value}"\n', 1))
    proc = subprocess.run([sys.executable, "-m", "release", "check", str(folder)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "release.toml" in proc.stderr and "release.git_tagger" in proc.stderr and "Name <email" in proc.stderr
