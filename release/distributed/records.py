"""Job records: what a job staged, from which inputs, and where.

A job commits its outputs to the branch `release-<release>-<job>` of every destination repo it
writes and, in the same commit on each of those branches, `.release/<job>.json`:

    {"format": "moe-release/job-record/1", "release": "v4", "job": "gguf-q4_k_m", "key": "<sha256>",
     "tool_version": "0.1.0",
     "artifacts": [{…the built Artifact…, "inputs": "<input hash>", "repo": "owner/name-GGUF"}],
     "git_sha1": {"<repo>/<path>": "<git blob sha1>"},       # files small enough to be stored in git
     "ollama_blobs": {"ollama:Q4_K_M": "sha256:<hex>"}}       # model blobs pushed to the registry

A record exists only once everything it names is on the branch (and the registry), so a record is a
promise that a reader checks against the Hub's tree metadata (size, LFS sha256, git blob id) without
downloading any weights. `key` hashes everything the job's outputs are made from; a rerun of the job
with the same key and its files intact on the branch does nothing.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RemoteError
from ..manifest import Artifact
from ..publish.hubplan import REGULAR_MAX

if TYPE_CHECKING:
    from ..pipeline import Context
    from ..publish.hub import HubPublisher
    from .jobs import Job

FORMAT = "moe-release/job-record/1"
RECORD_DIR = ".release"


def staging_branch(release: str, job_id: str) -> str:
    return f"release-{release}-{job_id}"


def record_path(job_id: str) -> str:
    return f"{RECORD_DIR}/{job_id}.json"


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
class JobRecord:
    release: str
    job: str
    key: str
    tool_version: str
    artifacts: list[Artifact]
    inputs: dict[str, str]  # artifact id → input hash (as state.json records it)
    repos: dict[str, str]  # artifact id → staging repo
    git_sha1: dict[str, str] = field(default_factory=dict)  # "<repo>/<path>" → git blob sha1
    ollama_blobs: dict[str, str] = field(default_factory=dict)  # ollama:<tag> → model blob digest

    @property
    def branch(self) -> str:
        return staging_branch(self.release, self.job)

    def staged_files(self) -> list[tuple[str, str, Artifact, int, str | None]]:
        """(repo, path in repo, artifact, size, sha256) of every file the record promises."""
        return [(self.repos[a.id], path_in_repo(a, f.path), a, f.size or 0, f.sha256)
                for a in self.artifacts for f in a.files]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "release": self.release, "job": self.job, "key": self.key,
                "tool_version": self.tool_version,
                "artifacts": [{**a.to_json(), "inputs": self.inputs.get(a.id), "repo": self.repos[a.id]}
                              for a in self.artifacts],
                "git_sha1": self.git_sha1, "ollama_blobs": self.ollama_blobs}

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> JobRecord:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise RemoteError(f"{where}: not a job record ({FORMAT})")
        try:
            arts = [Artifact.from_json({k: v for k, v in a.items() if k not in ("inputs", "repo")})
                    for a in data["artifacts"]]
            return cls(release=data["release"], job=data["job"], key=data["key"],
                       tool_version=data["tool_version"], artifacts=arts,
                       inputs={a["id"]: a["inputs"] for a in data["artifacts"]},
                       repos={a["id"]: a["repo"] for a in data["artifacts"]},
                       git_sha1=dict(data.get("git_sha1", {})), ollama_blobs=dict(data.get("ollama_blobs", {})))
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteError(f"{where}: malformed job record ({exc})") from None


def git_sha1s(ctx: Context, artifacts: list[Artifact]) -> dict[str, str]:
    """Git blob ids of the files the Hub may keep in git rather than LFS (tree metadata shows no
    sha256 for those)."""
    from ..publish.gitsha import git_blob_sha1_file

    out = {}
    for a in artifacts:
        repo = stage_repo(ctx, a)
        for f in a.files:
            if (f.size or 0) <= REGULAR_MAX:
                out[f"{repo}/{path_in_repo(a, f.path)}"] = git_blob_sha1_file(ctx.artifact_dir(a) / f.path)
    return out


def read_record(pub: HubPublisher, ctx: Context, job: Job) -> JobRecord | None:
    """The job's record from any repo it staged to (they hold the same record), or None."""
    branch = staging_branch(ctx.release.name, job.id)
    repos = dict.fromkeys(r for i in job.artifacts if (r := stage_repo(ctx, ctx.artifacts[i])))
    for repo in repos:
        if branch not in pub.branches(repo):
            continue
        try:
            path = pub.download(repo, record_path(job.id), branch, ctx.dist / ".hub-cache")
        except RemoteError:
            continue  # the branch exists but the record is not there yet: the job did not finish
        where = f"{repo}@{branch}:{record_path(job.id)}"
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise RemoteError(f"{where}: unreadable job record ({exc})") from None
        rec = JobRecord.from_json(data, where)
        if rec.job != job.id or rec.release != ctx.release.name:
            raise RemoteError(f"{where}: the record is of job {rec.job} of {rec.release}")
        return rec
    return None


def staged_problems(pub: HubPublisher, rec: JobRecord) -> list[str]:
    """What on the job's branches differs from its record, read from the tree metadata alone."""
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
