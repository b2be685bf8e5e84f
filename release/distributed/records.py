"""Unit records: what a unit (release/distributed/jobs.py) staged, from which inputs, and where; and the
promotion record finish leaves behind.

A job commits each of its units' outputs to the branch `release-<release>-<unit>` of every destination
repo the unit writes and, in the same commit on each of those branches, `.release/<unit>.json`:

    {"format": "moe-release/unit-record/1", "release": "v4", "unit": "gguf-q4_k_m", "key": "<sha256>",
     "tool_version": "0.1.0",
     "artifacts": [{…the built Artifact…, "inputs": "<input hash>", "repo": "owner/name-GGUF"}],
     "git_sha1": {"<repo>/<path>": "<git blob sha1>"},       # files small enough to be stored in git
     "ollama_blobs": {"ollama:Q4_K_M": "sha256:<hex>"}}       # model blobs pushed to the registry

A record exists only once everything it names is on the branch (and the registry), so a record is a
promise that a reader checks against the Hub's tree metadata (size, LFS sha256, git blob id) without
downloading any weights. `key` hashes everything the unit's outputs are made from (never the job that
ran it, nor how units were packed); a rerun with the same key and its files intact on the branch does
nothing.

Once finish has promoted, it writes `.release/finish.json` on `release-<release>-finish` of the
release's first repo: the definition's key and the git tag's message. It is the evidence that the
release is promoted once the units' branches are gone: a rerun of finish on a fresh machine makes the
git tag from it, a rerun of a job does nothing. `release clean NAME --staging` removes it.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RemoteError
from ..manifest import Artifact
from ..publish.gitsha import git_blob_sha1_file
from ..publish.hubplan import REGULAR_MAX

if TYPE_CHECKING:
    from ..pipeline import Context
    from ..publish.hub import HubPublisher
    from .jobs import Unit

FORMAT = "moe-release/unit-record/1"
PROMOTION_FORMAT = "moe-release/promotion-record/1"
RECORD_DIR = ".release"
PROMOTION = "finish"  # the promotion record's branch and file take the name of the stage that writes it


def staging_branch(release: str, unit_id: str) -> str:
    return f"release-{release}-{unit_id}"


def staging_prefix(release: str) -> str:
    """Every branch a release stages on, in any run, starts with this."""
    return staging_branch(release, "")


def record_path(unit_id: str) -> str:
    return f"{RECORD_DIR}/{unit_id}.json"


def stage_repo(ctx: Context, a: Artifact) -> str | None:
    """The repo an artifact is staged in: its destination, or for an unpublished GGUF (the baseline
    when it is not published) the GGUF repo, since other machines make the tiers from it; for another
    unpublished artifact (a quality reference or measurement, a derived drop map) the repo of the first
    thing it is made from, so it travels beside what it describes, else the release's first repo."""
    if a.destination is not None and a.destination.kind == "hub":
        return a.destination.repo
    d = ctx.release.definition
    if a.kind == "gguf" and d.gguf is not None:
        return d.gguf.repo
    for n in a.needs:
        if n in ctx.artifacts:
            repo = stage_repo(ctx, ctx.artifacts[n])
            if repo is not None:
                return repo
    return next((s.repo for s in (d.bf16, d.gguf, d.nvfp4) if s is not None), None)


def path_in_repo(a: Artifact, path: str) -> str:
    prefix = a.destination.path_in_repo if a.destination is not None else ""
    return posixpath.normpath(posixpath.join(prefix or "", path))


@dataclass
class UnitRecord:
    release: str
    unit: str
    key: str
    tool_version: str
    artifacts: list[Artifact]
    inputs: dict[str, str]  # artifact id → input hash (as state.json records it)
    repos: dict[str, str]  # artifact id → staging repo
    git_sha1: dict[str, str] = field(default_factory=dict)  # "<repo>/<path>" → git blob sha1
    ollama_blobs: dict[str, str] = field(default_factory=dict)  # ollama:<tag> → model blob digest

    @property
    def branch(self) -> str:
        return staging_branch(self.release, self.unit)

    def staged_files(self) -> list[tuple[str, str, Artifact, int, str | None]]:
        """(repo, path in repo, artifact, size, sha256) of every file the record promises."""
        return [(self.repos[a.id], path_in_repo(a, f.path), a, f.size or 0, f.sha256)
                for a in self.artifacts for f in a.files]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "release": self.release, "unit": self.unit, "key": self.key,
                "tool_version": self.tool_version,
                "artifacts": [{**a.to_json(), "inputs": self.inputs.get(a.id), "repo": self.repos[a.id]}
                              for a in self.artifacts],
                "git_sha1": self.git_sha1, "ollama_blobs": self.ollama_blobs}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> UnitRecord:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise RemoteError(f"{where}: not a unit record ({FORMAT})")
        try:
            arts = [Artifact.from_json({k: v for k, v in a.items() if k not in ("inputs", "repo")})
                    for a in data["artifacts"]]
            return cls(release=data["release"], unit=data["unit"], key=data["key"],
                       tool_version=data["tool_version"], artifacts=arts,
                       inputs={a["id"]: a["inputs"] for a in data["artifacts"]},
                       repos={a["id"]: a["repo"] for a in data["artifacts"]},
                       git_sha1=dict(data.get("git_sha1", {})), ollama_blobs=dict(data.get("ollama_blobs", {})))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RemoteError(f"{where}: malformed unit record ({exc})") from None


@dataclass
class PromotionRecord:
    release: str
    key: str  # the definition's key (release/distributed/keys.py) the promotion was made for
    message: str  # the git tag's message
    repos: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"format": PROMOTION_FORMAT, "release": self.release, "key": self.key, "repos": self.repos,
                "message": self.message}

    @classmethod
    def from_json(cls, data: Any, where: str) -> PromotionRecord:
        try:
            if data.get("format") != PROMOTION_FORMAT:
                raise ValueError(f"not a promotion record ({PROMOTION_FORMAT})")
            return cls(release=str(data["release"]), key=str(data["key"]), message=str(data["message"]),
                       repos=[str(r) for r in data["repos"]])
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RemoteError(f"{where}: {exc}") from None


def git_sha1s(ctx: Context, artifacts: list[Artifact]) -> dict[str, str]:
    """Git blob ids of the files the Hub may keep in git rather than LFS (tree metadata shows no
    sha256 for those)."""
    out = {}
    for a in artifacts:
        repo = stage_repo(ctx, a)
        for f in a.files:
            if (f.size or 0) <= REGULAR_MAX:
                out[f"{repo}/{path_in_repo(a, f.path)}"] = git_blob_sha1_file(ctx.artifact_dir(a) / f.path)
    return out


def unit_repos(ctx: Context, unit: Unit) -> list[str]:
    """The repos a unit stages to (its branch is made in each)."""
    return list(dict.fromkeys(r for i in unit.artifacts if (r := stage_repo(ctx, ctx.artifacts[i]))))


def read_record(pub: HubPublisher, ctx: Context, unit: Unit) -> UnitRecord | None:
    """The unit's record from any repo it staged to (they hold the same record), or None. A record that
    is there but cannot be read is a RemoteError naming it."""
    branch = staging_branch(ctx.release.name, unit.id)
    for repo in unit_repos(ctx, unit):
        data = _read_json(pub, ctx, repo, branch, record_path(unit.id))
        if data is None:
            continue
        where = f"{repo}@{branch}:{record_path(unit.id)}"
        rec = UnitRecord.from_json(data, where)
        if rec.unit != unit.id or rec.release != ctx.release.name:
            raise RemoteError(f"{where}: the record is of unit {rec.unit} of {rec.release}")
        return rec
    return None


def promotion_repo(ctx: Context) -> str | None:
    """Where the promotion record lives: the release's first destination repo."""
    repos = sorted({a.destination.repo for a in ctx.artifacts if a.destination is not None
                    and a.destination.kind == "hub"})
    return repos[0] if repos else None


def read_promotion(pub: HubPublisher, ctx: Context) -> PromotionRecord | None:
    """The promotion record of this release, or None (none there, or one that cannot be read: a finish that
    cannot read it promotes again, which its own checks make safe)."""
    repo = promotion_repo(ctx)
    if repo is None:
        return None
    branch = staging_branch(ctx.release.name, PROMOTION)
    try:
        data = _read_json(pub, ctx, repo, branch, record_path(PROMOTION))
        return None if data is None else PromotionRecord.from_json(data, f"{repo}@{branch}:{record_path(PROMOTION)}")
    except RemoteError as exc:
        ctx.say(f"ignoring the promotion record: {exc}")
        return None


def _read_json(pub: HubPublisher, ctx: Context, repo: str, branch: str, path: str) -> Any:
    """The JSON file `path` of `repo`@`branch`; None when the branch or the file is not there."""
    head = pub.branches(repo).get(branch)
    if head is None or path not in pub.tree(repo, head):
        return None  # no branch, or a branch without its record yet: the unit did not finish
    local = pub.download(repo, path, head, ctx.dist / ".hub-cache")
    try:
        return json.loads(Path(local).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RemoteError(f"{repo}@{branch}:{path}: unreadable record ({exc})") from None


def staged_problems(pub: HubPublisher, rec: UnitRecord) -> list[str]:
    """What on the unit's branches differs from its record, read from the tree metadata alone."""
    problems: list[str] = []
    trees: dict[str, dict[str, Any]] = {}
    for repo, path, a, size, sha256 in rec.staged_files():
        if repo not in trees:
            head = pub.branches(repo).get(rec.branch)
            trees[repo] = pub.tree(repo, head) if head else {}
        remote = trees[repo].get(path)
        where = f"{repo}@{rec.branch}/{path}"
        if remote is None:
            problems.append(f"{where}: missing ({a.id})")
        elif int(remote.size or 0) != size:
            problems.append(f"{where}: {remote.size} bytes, the record says {size}")
        elif remote.lfs is not None and remote.lfs.sha256 != sha256:
            problems.append(f"{where}: sha256 {remote.lfs.sha256[:12]}…, the record says {str(sha256)[:12]}…")
        elif remote.lfs is None and remote.blob_id != rec.git_sha1.get(f"{repo}/{path}"):
            problems.append(f"{where}: git blob {remote.blob_id[:12]}… differs from the record")
    return problems
