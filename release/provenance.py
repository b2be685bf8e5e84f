"""Where a release came from: tool version, the pipelines repo's commit, hashes of every input."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from . import __version__
from .fsutil import sha256_file
from .spec.load import PROJECT_ROOT, Release

TEMPLATES_DIR = PROJECT_ROOT / "cards"


def pipelines_git(path: Path) -> dict[str, Any]:
    """Commit and dirty flag of the git repo holding `path` (None outside a repo). Plain `git` calls: every
    command records this, and importing a git library would cost more than the calls."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "--no-optional-locks", "-C", str(path), *args], capture_output=True,
                              text=True, check=True, timeout=60).stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        rel = str(path.resolve().relative_to(top.resolve()))
    except (OSError, ValueError, subprocess.SubprocessError):
        # not a repo, git missing, detached worktree oddities: provenance is best effort
        return {"commit": None, "dirty": None, "path": str(path)}
    try:
        commit: str | None = git("rev-parse", "--verify", "-q", "HEAD")
    except subprocess.SubprocessError:
        commit = None  # a repository without a commit yet
    try:
        dirty: bool | None = bool(git("status", "--porcelain", "--untracked-files=all", "--", "."))
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return {"commit": commit, "dirty": dirty, "path": rel}


def templates_sha256() -> str:
    h = hashlib.sha256()
    for p in sorted(TEMPLATES_DIR.rglob("*")) if TEMPLATES_DIR.exists() else []:
        if p.is_file():
            h.update(str(p.relative_to(TEMPLATES_DIR)).encode() + b"\0")
            h.update(p.read_bytes())
    return h.hexdigest()


def input_hashes(release: Release) -> dict[str, str]:
    out = {rel: sha256_file(p) for rel, p in release.input_files().items() if p.is_file()}
    out["base.revision"] = release.definition.base.revision
    out["drop_map"] = release.drop_map.sha256
    out["cards/templates"] = templates_sha256()
    return out


def provenance(release: Release) -> dict[str, Any]:
    git = pipelines_git(release.dir)
    return {
        "tool_version": __version__,
        "pipelines_commit": git["commit"],
        "pipelines_dirty": git["dirty"],
        "base_repo": release.definition.base.repo,
        "base_revision": release.definition.base.revision,
        "drop_map_sha256": release.drop_map.sha256,
    }
