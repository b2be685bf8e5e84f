"""The release record in the pipelines repo: an annotated tag `release/<name>` whose message is the final
manifest (the workflow pushes it).

`git tag -a` needs an identity, and a hosted runner has none (no user.name or user.email anywhere), so the
tool gives git one for that one command (`git -c user.name=… -c user.email=…`), never writing a config.
The first of:

    1. the definition's `[release] git_tagger = "Name <email>"`;
    2. on GitHub Actions, the workflow's actor: GITHUB_ACTOR and GITHUB_ACTOR_ID →
       `NAME <ID+NAME@users.noreply.github.com>` (GitHub's no-reply address of that account);
    3. the identity git already has here (user.name and user.email, or GIT_COMMITTER_NAME/EMAIL);
    4. DEFAULT_TAGGER.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import WorkError

if TYPE_CHECKING:
    from .context import Context

DEFAULT_TAGGER = "moe-release <moe-release@localhost>"
_IDENTITY = re.compile(r"(?P<name>[^<>\n]*[^<>\s])\s+<(?P<email>[^<>\s@]+@[^<>\s@]+)>")
_GITHUB_LOGIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\[bot\])?")


@dataclass(frozen=True)
class Tagger:
    name: str
    email: str
    source: str  # where it came from, for the log line

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


def tagger_problem(value: str) -> str | None:
    """Why `[release] git_tagger` is not a git identity, or None."""
    if value and not _IDENTITY.fullmatch(value):
        return f"{value!r} is not a git identity: write it as \"Name <email@example.org>\""
    return None


def tagger(definition_tagger: str, repo_dir: Path) -> Tagger:
    """The identity the git tag is made with (see the module's docstring for the order)."""
    if definition_tagger:
        m = _IDENTITY.fullmatch(definition_tagger)
        assert m is not None, "validated at check"
        return Tagger(m["name"], m["email"], "[release] git_tagger")
    actor = os.environ.get("GITHUB_ACTOR", "")
    if actor and _GITHUB_LOGIN.fullmatch(actor):
        actor_id = os.environ.get("GITHUB_ACTOR_ID", "")
        local = f"{actor_id}+{actor}" if actor_id.isdigit() else actor
        return Tagger(actor, f"{local}@users.noreply.github.com", "GITHUB_ACTOR")
    name = os.environ.get("GIT_COMMITTER_NAME") or _config(repo_dir, "user.name")
    email = os.environ.get("GIT_COMMITTER_EMAIL") or _config(repo_dir, "user.email")
    if name and email:
        return Tagger(name, email, "git config")
    m = _IDENTITY.fullmatch(DEFAULT_TAGGER)
    assert m is not None
    return Tagger(m["name"], m["email"], "default")


def record_message(release: str, summary: Any, manifest: dict[str, Any]) -> str:
    """The tag's message: what the release sent, and its manifest."""
    record = {"release": release, "commits": summary.commits, "bytes_sent": summary.bytes_sent, "manifest": manifest}
    return f"Release {release}\n\n" + json.dumps(record, indent=1, sort_keys=True)


def tag_pipelines_repo(ctx: Context, message: str, *, move: bool = False) -> str | None:
    """Annotated tag `release/<name>` on HEAD of the repo holding the definition, with `message`. An
    existing tag on another commit is kept unless `move`. None when the definition is not in a git repo
    with a commit."""
    name = f"release/{ctx.release.name}"
    folder = ctx.release.dir
    top = _git(folder, "rev-parse", "--show-toplevel", check=False)
    if top is None:
        ctx.say("not in a git repository: no release tag")
        return None
    repo = Path(top.strip())
    head = _git(repo, "rev-parse", "--verify", "-q", "HEAD^{commit}", check=False)
    if head is None:
        ctx.say(f"{repo} has no commit yet: no release tag")
        return None
    head = head.strip()
    existing = _git(repo, "rev-parse", "--verify", "-q", f"refs/tags/{name}^{{commit}}", check=False)
    if existing is not None and existing.strip() == head and not move:
        return name
    if existing is not None and not move:
        ctx.say(f"git tag {name} exists on {existing.strip()[:12]}; not moved (HEAD is {head[:12]}; --move-tags "
                "moves it)")
        return name
    who = tagger(ctx.release.definition.release.git_tagger, repo)
    _git(repo, "-c", f"user.name={who.name}", "-c", f"user.email={who.email}", "tag", "-a",
         *(["-f"] if existing is not None else []), name, "-F", "-", stdin=message)
    ctx.say(f"git tag {name} at {head[:12]} by {who} ({who.source})")
    return name


def tag_message(repo_dir: Path, name: str) -> str | None:
    """The message of annotated tag `name`, or None when there is no such tag."""
    out = _git(repo_dir, "for-each-ref", f"refs/tags/{name}", "--format=%(contents)", check=False)
    return out.rstrip("\n") if out else None


def _config(repo_dir: Path, key: str) -> str:
    out = _git(repo_dir, "config", "--get", key, check=False)
    return out.strip() if out else ""


def _git(repo_dir: Path, *args: str, check: bool = True, stdin: str | None = None) -> str | None:
    """stdout of `git -C repo_dir ARGS`; None for a failure when not `check`, else a WorkError naming it."""
    try:
        proc = subprocess.run(["git", "-C", str(repo_dir), *args], capture_output=True, text=True, input=stdin,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        if not check:
            return None
        raise WorkError(f"git {args[-1] if args else ''}: {exc}") from None
    if proc.returncode != 0:
        if not check:
            return None
        what = " ".join(a for a in args if not a.startswith("user."))
        raise WorkError(f"git {what} in {repo_dir} failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout
