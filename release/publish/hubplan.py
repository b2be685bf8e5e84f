"""What a Hub publish will do, decided before anything is uploaded: the plan and the result types.

A plan is per repo: the head commit it was computed against (the `parent_commit` of the first commit)
and one entry per file — upload, unchanged, delete (only with prune_remote) or keep (remote-only
files left alone). It serialises to JSON for the manifest and `--json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..manifest import Artifact, RemoteFile
from .gitsha import git_blob_sha1_file

Action = Literal["upload", "copy", "unchanged", "delete", "keep"]

LFS_SUFFIXES = frozenset({".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx", ".npz", ".npy", ".msgpack",
                          ".h5", ".model", ".zip", ".tar", ".gz", ".zst"})
REGULAR_MAX = 10 * 1024 * 1024


def short(sha: str | None) -> str:
    return sha[:8] if sha else "(none)"


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


@dataclass
class PlannedFile:
    path: str  # path in the repo
    action: Action
    size: int  # local size (upload/unchanged) or remote size (delete/keep)
    sha256: str | None = None
    local: Path | None = None
    artifact: str | None = None  # id of the artifact the file belongs to
    git_sha1: str | None = None  # filled when a regular file had to be compared by blob id
    source_revision: str | None = None  # copy: the branch of the same repo that holds the file
    last: bool = False  # rides in the repo's last commit (a record of what the others hold)

    @property
    def is_readme(self) -> bool:
        return self.path.rsplit("/", 1)[-1] == "README.md"

    @property
    def rides_last(self) -> bool:
        """Committed with (or after) everything else of its repo: a card or a record names the rest."""
        return self.last or self.is_readme

    def likely_lfs(self) -> bool:
        """Whether the Hub will store it in LFS; only used to order and size commits."""
        if self.size > REGULAR_MAX or Path(self.path).suffix in LFS_SUFFIXES:
            return True
        if self.local is None:
            return False
        with open(self.local, "rb") as fh:
            return b"\0" in fh.read(512)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "action": self.action, "size": self.size, "sha256": self.sha256,
                "artifact": self.artifact}


@dataclass
class RepoPlan:
    repo: str
    url: str
    exists: bool
    head: str | None  # head of `revision` when planned; None if the repo (or the branch) does not exist yet
    files: list[PlannedFile] = field(default_factory=list)
    revision: str = "main"
    branch_exists: bool = True  # False: `revision` is a branch still to be made from main
    uploaded: bool = False  # content sent (HubPublisher.upload); only commits remain

    def of(self, action: Action) -> list[PlannedFile]:
        return [f for f in self.files if f.action == action]

    @property
    def uploads(self) -> list[PlannedFile]:
        return self.of("upload")

    @property
    def deletes(self) -> list[PlannedFile]:
        return self.of("delete")

    @property
    def copies(self) -> list[PlannedFile]:
        return self.of("copy")

    @property
    def bytes_to_send(self) -> int:
        return sum(f.size for f in self.uploads)

    @property
    def changed(self) -> bool:
        return bool(self.uploads or self.copies or self.deletes or not self.exists or not self.branch_exists)

    def summary(self) -> str:
        counts = {a: len(self.of(a)) for a in ("upload", "copy", "unchanged", "delete", "keep")}
        parts = [f"{n} {a}" for a, n in counts.items() if n]
        where = "" if self.revision == "main" else f" [{self.revision}]"
        state = f"@ {short(self.head)}" if self.exists else "(new repo)"
        return f"{self.repo}{where} {state}: {', '.join(parts) or 'nothing'}; {human(self.bytes_to_send)} to send"

    def to_json(self) -> dict[str, Any]:
        return {"repo": self.repo, "url": self.url, "revision": self.revision, "exists": self.exists,
                "head": self.head, "bytes_to_send": self.bytes_to_send, "files": [f.to_json() for f in self.files]}


@dataclass
class HubPlan:
    endpoint: str
    prune_remote: bool
    repos: list[RepoPlan] = field(default_factory=list)
    # The planned artifacts themselves (not serialised): apply marks them published.
    artifacts: list[Any] = field(default_factory=list, repr=False)

    @property
    def bytes_to_send(self) -> int:
        return sum(r.bytes_to_send for r in self.repos)

    @property
    def changed(self) -> bool:
        return any(r.changed for r in self.repos)

    def repo_ids(self) -> list[str]:
        return [r.repo for r in self.repos]

    def repo(self, repo_id: str) -> RepoPlan:
        for r in self.repos:
            if r.repo == repo_id:
                return r
        raise KeyError(repo_id)

    def annotate(self, artifacts: list[Artifact]) -> None:
        """Copy the plan onto the artifacts (manifest `remote`): paths relative to each artifact."""
        for a in artifacts:
            a.remote = []
        by_repo: dict[str, list[Artifact]] = {}
        for a in artifacts:
            if a.destination is not None:
                by_repo.setdefault(a.destination.repo, []).append(a)
        for rp in self.repos:
            owners = by_repo.get(rp.repo, [])
            by_id = {a.id: a for a in owners}
            for pf in rp.files:
                owner = by_id.get(pf.artifact or "") or _longest_prefix_owner(owners, pf.path)
                if owner is None or owner.remote is None or owner.destination is None:
                    continue
                prefix = owner.destination.path_in_repo.strip("/")
                rel = pf.path[len(prefix) + 1:] if prefix and pf.path.startswith(prefix + "/") else pf.path
                owner.remote.append(RemoteFile(path=rel, action=pf.action,
                                               size=pf.size if pf.action == "upload" else 0))

    def summary(self) -> str:
        lines = [r.summary() for r in self.repos]
        lines.append(f"total: {human(self.bytes_to_send)} to send to {self.endpoint}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "prune_remote": self.prune_remote,
                "bytes_to_send": self.bytes_to_send, "repos": [r.to_json() for r in self.repos]}


@dataclass
class RepoResult:
    repo: str
    url: str
    created: bool = False
    commits: list[str] = field(default_factory=list)
    files_uploaded: int = 0
    files_deleted: int = 0
    bytes_sent: int = 0  # planned bytes of the files committed (LFS objects the Hub already had are skipped)
    head: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TagResult:
    repo: str
    tag: str
    commit: str | None
    action: Literal["created", "unchanged", "kept", "moved"]
    note: str = ""


@dataclass
class CollectionResult:
    slug: str
    url: str
    added: list[str] = field(default_factory=list)
    created: bool = False


@dataclass
class HubResult:
    repos: list[RepoResult] = field(default_factory=list)
    tags: list[TagResult] = field(default_factory=list)
    collection: CollectionResult | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def commits(self) -> int:
        return sum(len(r.commits) for r in self.repos)

    @property
    def bytes_sent(self) -> int:
        return sum(r.bytes_sent for r in self.repos)

    def urls(self) -> dict[str, str]:
        return {r.repo: r.url for r in self.repos}

    def to_json(self) -> dict[str, Any]:
        return {"commits": self.commits, "bytes_sent": self.bytes_sent,
                "repos": [r.to_json() for r in self.repos],
                "tags": [dict(t.__dict__) for t in self.tags],
                "collection": dict(self.collection.__dict__) if self.collection else None,
                "notes": list(self.notes)}


def same_content(pf: PlannedFile, remote: Any) -> bool:
    """Whether the remote file (a paths-info or tree entry, None when absent) holds what `pf` plans:
    LFS files by size and sha256, regular files by git blob id."""
    if remote is None or int(remote.size or 0) != pf.size:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == pf.sha256
    if pf.git_sha1 is None:
        assert pf.local is not None
        pf.git_sha1 = git_blob_sha1_file(pf.local)
    return remote.blob_id == pf.git_sha1


def _longest_prefix_owner(owners: list[Artifact], path: str) -> Artifact | None:
    best: Artifact | None = None
    best_len = -1
    for a in owners:
        assert a.destination is not None
        prefix = a.destination.path_in_repo.strip("/")
        if (not prefix or path.startswith(prefix + "/")) and len(prefix) > best_len:
            best, best_len = a, len(prefix)
    return best
