"""On-disk state of the stand-in Hub: repos with git-style history, LFS objects, collections.

Layout under the root folder (everything survives a restart; writes are atomic renames):

    secret                        key that signs storage URLs, so URLs handed out survive a restart
    lfs/<aa>/<sha256>             LFS objects, content-addressed by sha256
    blobs/<aa>/<sha1>             contents of regular files, addressed by their git blob sha1
    objects/<aa>/<sha1>.json      commit and tree objects, addressed by the sha1 of their canonical form
    repos/<type>/<ns>/<name>.json refs (branches, tags), visibility, creation time
    collections/<id>.json         collections

A tree is a flat map path → {oid, size, lfs}; `oid` is the git blob sha1 of the content for regular
files and of the LFS pointer text for LFS files, as the Hub reports them.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGULAR_MAX = 10 * 1024 * 1024  # above this the Hub wants LFS

# The Hub seeds every new repo with a .gitattributes routing binary formats to LFS; a subset is enough
# for the formats this tool publishes.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z", "*.arrow", "*.bin", "*.bz2", "*.ckpt", "*.gguf", "*.gz", "*.h5", "*.model", "*.msgpack",
        "*.npy", "*.npz", "*.onnx", "*.parquet", "*.pb", "*.pickle", "*.pkl", "*.pt", "*.pth",
        "*.safetensors", "*.tar", "*.tgz", "*.zip", "*.zst", "*tfevents*",
    )
)


class HubError(Exception):
    """An error answered to the client: HTTP status, message, optional X-Error-Code, extra JSON."""

    def __init__(self, status: int, message: str, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _object_id(kind: str, obj: Any) -> str:
    body = _canonical(obj)
    return hashlib.sha1(f"{kind} {len(body)}\0".encode() + body).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


@dataclass(frozen=True)
class RepoKey:
    type: str  # "model" | "dataset" | "space"
    namespace: str
    name: str

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class FileChange:
    """One line of a commit, already decoded: add regular content, add an LFS object, or delete."""

    kind: str  # "file" | "lfs" | "delete" | "delete_folder"
    path: str
    content: bytes | None = None
    sha256: str | None = None
    size: int | None = None


@dataclass
class Store:
    root: Path
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _objects: dict[str, dict] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("lfs", "blobs", "objects", "repos", "collections", "tmp"):
            (self.root / sub).mkdir(exist_ok=True)
        secret = self.root / "secret"
        if not secret.exists():
            _atomic_write(secret, secrets.token_hex(32).encode())
        self.secret = secret.read_bytes()

    # ---- content-addressed storage -------------------------------------------------------------

    def lfs_path(self, sha256: str) -> Path:
        return self.root / "lfs" / sha256[:2] / sha256

    def has_lfs(self, sha256: str, size: int | None = None) -> bool:
        p = self.lfs_path(sha256)
        return p.is_file() and (size is None or p.stat().st_size == size)

    def adopt_lfs(self, tmp: Path, sha256: str) -> None:
        dest = self.lfs_path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)

    def add_sparse_lfs(self, sha256: str, size: int) -> None:
        """Test set-up: an object of `size` bytes under `sha256`, none of them written (see LocalHub)."""
        dest = self.lfs_path(sha256)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.tmp_file()
        os.truncate(tmp, size)
        os.replace(tmp, dest)

    def tmp_file(self) -> Path:
        fd, name = tempfile.mkstemp(dir=self.root / "tmp")
        os.close(fd)
        return Path(name)

    def put_blob(self, data: bytes) -> str:
        oid = git_blob_sha1(data)
        p = self.root / "blobs" / oid[:2] / oid
        if not p.exists():
            _atomic_write(p, data)
        return oid

    def get_blob(self, oid: str) -> bytes:
        return (self.root / "blobs" / oid[:2] / oid).read_bytes()

    def _put_object(self, kind: str, obj: dict) -> str:
        oid = _object_id(kind, obj)
        p = self.root / "objects" / oid[:2] / f"{oid}.json"
        if not p.exists():
            _atomic_write(p, _canonical(obj))
        self._objects[oid] = obj
        return oid

    def get_object(self, oid: str) -> dict | None:
        obj = self._objects.get(oid)
        if obj is None:
            p = self.root / "objects" / oid[:2] / f"{oid}.json"
            if not p.is_file():
                return None
            obj = json.loads(p.read_bytes())
            self._objects[oid] = obj
        return obj

    # ---- repos and refs -------------------------------------------------------------------------

    def _repo_path(self, key: RepoKey) -> Path:
        return self.root / "repos" / key.type / key.namespace / f"{key.name}.json"

    def repo(self, key: RepoKey) -> dict | None:
        p = self._repo_path(key)
        if not p.is_file():
            return None
        return json.loads(p.read_bytes())

    def repos(self, repo_type: str = "model") -> list[RepoKey]:
        """Every repo of a type, sorted by id."""
        base = self.root / "repos" / repo_type
        return [RepoKey(repo_type, p.parent.name, p.stem) for p in sorted(base.glob("*/*.json"))]

    def require_repo(self, key: RepoKey) -> dict:
        meta = self.repo(key)
        if meta is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return meta

    def _save_repo(self, key: RepoKey, meta: dict) -> None:
        _atomic_write(self._repo_path(key), json.dumps(meta, indent=1).encode())

    def create_repo(self, key: RepoKey, private: bool) -> bool:
        """Create with an initial commit holding the default .gitattributes. False if it exists."""
        with self._lock:
            if self.repo(key) is not None:
                return False
            meta = {"private": private, "createdAt": now_iso(), "heads": {}, "tags": {}}
            tree = {"entries": {".gitattributes": self._regular_entry(DEFAULT_GITATTRIBUTES.encode())}}
            tree_id = self._put_object("tree", tree)
            commit = self._new_commit(tree_id, [], "initial commit", "")
            meta["heads"]["main"] = commit
            self._save_repo(key, meta)
            return True

    def delete_repo(self, key: RepoKey) -> None:
        with self._lock:
            self.require_repo(key)
            self._repo_path(key).unlink()

    def update_settings(self, key: RepoKey, *, private: bool | None = None, gated: str | bool | None = None) -> dict:
        with self._lock:
            meta = self.require_repo(key)
            if private is not None:
                meta["private"] = private
            if gated is not None:
                meta["gated"] = gated
            self._save_repo(key, meta)
            return meta

    def resolve(self, key: RepoKey, rev: str) -> str:
        """Branch, tag or full commit sha → commit sha."""
        meta = self.require_repo(key)
        for ref in (rev, rev.removeprefix("refs/heads/"), rev.removeprefix("refs/tags/")):
            if ref in meta["heads"]:
                return meta["heads"][ref]
            if ref in meta["tags"]:
                return meta["tags"][ref]["commit"]
        if len(rev) == 40 and (obj := self.get_object(rev)) is not None and "tree" in obj:
            return rev
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def commit_obj(self, sha: str) -> dict:
        obj = self.get_object(sha)
        assert obj is not None, sha
        return obj

    def tree(self, commit_sha: str) -> dict[str, dict]:
        tree = self.get_object(self.commit_obj(commit_sha)["tree"])
        assert tree is not None
        return tree["entries"]

    def history(self, commit_sha: str) -> list[tuple[str, dict]]:
        out: list[tuple[str, dict]] = []
        sha: str | None = commit_sha
        while sha:
            obj = self.commit_obj(sha)
            out.append((sha, obj))
            sha = obj["parents"][0] if obj["parents"] else None
        return out

    def _new_commit(self, tree_id: str, parents: list[str], title: str, message: str) -> str:
        commit = {
            "tree": tree_id, "parents": parents, "title": title, "message": message,
            "author": "localhub", "date": now_iso(), "nonce": time.time_ns(),
        }
        return self._put_object("commit", commit)

    def _regular_entry(self, data: bytes) -> dict:
        return {"oid": self.put_blob(data), "size": len(data), "lfs": None}

    def commit(self, key: RepoKey, branch: str, changes: Iterable[FileChange], title: str, message: str,
               parent: str | None) -> str:
        """Apply a commit atomically; 412 if `parent` is given and the branch moved."""
        changes = list(changes)
        with self._lock:
            meta = self.require_repo(key)
            head = meta["heads"].get(branch)
            if head is None:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            if parent is not None and parent != head:
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            entries = dict(self.tree(head))
            for ch in changes:
                if ch.kind == "file":
                    assert ch.content is not None
                    entries[ch.path] = self._regular_entry(ch.content)
                elif ch.kind == "lfs":
                    assert ch.sha256 is not None
                    stored = self.lfs_path(ch.sha256)
                    if not stored.is_file():
                        raise HubError(400, f"LFS object {ch.sha256} for {ch.path} was not uploaded")
                    size = stored.stat().st_size
                    if ch.size is not None and ch.size != size:
                        raise HubError(400, f"size mismatch for {ch.path}: {ch.size} != {size}")
                    pointer = lfs_pointer(ch.sha256, size)
                    entries[ch.path] = {"oid": git_blob_sha1(pointer), "size": size,
                                        "lfs": {"oid": ch.sha256, "size": size, "pointerSize": len(pointer)}}
                elif ch.kind == "delete":
                    if ch.path not in entries:
                        raise HubError(404, f"A file with this name doesn't exist: {ch.path}",
                                       "EntryNotFound")
                    del entries[ch.path]
                elif ch.kind == "delete_folder":
                    prefix = ch.path.rstrip("/") + "/"
                    doomed = [p for p in entries if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {ch.path}",
                                       "EntryNotFound")
                    for p in doomed:
                        del entries[p]
            tree_id = self._put_object("tree", {"entries": entries})
            sha = self._new_commit(tree_id, [head], title, message)
            meta = self.require_repo(key)
            meta["heads"][branch] = sha
            self._save_repo(key, meta)
            return sha

    def create_branch(self, key: RepoKey, branch: str, start: str | None) -> None:
        with self._lock:
            meta = self.require_repo(key)
            if branch in meta["heads"]:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            meta["heads"][branch] = self.resolve(key, start or "main")
            self._save_repo(key, meta)

    def delete_branch(self, key: RepoKey, branch: str) -> None:
        with self._lock:
            meta = self.require_repo(key)
            if branch not in meta["heads"] or branch == "main":
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            del meta["heads"][branch]
            self._save_repo(key, meta)

    def create_tag(self, key: RepoKey, tag: str, rev: str, message: str | None) -> None:
        with self._lock:
            sha = self.resolve(key, rev)
            meta = self.require_repo(key)
            if tag in meta["tags"]:
                raise HubError(409, f"Tag already exists: {tag}")
            meta["tags"][tag] = {"commit": sha, "message": message or ""}
            self._save_repo(key, meta)

    def delete_tag(self, key: RepoKey, tag: str) -> None:
        with self._lock:
            meta = self.require_repo(key)
            if tag not in meta["tags"]:
                raise HubError(404, f"Invalid rev id: {tag}", "RevisionNotFound")
            del meta["tags"][tag]
            self._save_repo(key, meta)

    # ---- collections ----------------------------------------------------------------------------

    def _collection_path(self, cid: str) -> Path:
        return self.root / "collections" / f"{cid}.json"

    def collections(self) -> list[dict]:
        out = []
        for p in sorted((self.root / "collections").glob("*.json")):
            out.append(json.loads(p.read_bytes()))
        return out

    def collection(self, slug: str) -> dict:
        cid = slug.rsplit("-", 1)[-1]
        p = self._collection_path(cid)
        if not p.is_file() or json.loads(p.read_bytes())["slug"] != slug:
            raise HubError(404, "Collection not found", "RepoNotFound")
        return json.loads(p.read_bytes())

    def create_collection(self, namespace: str, title: str, description: str | None, private: bool) -> dict:
        with self._lock:
            for c in self.collections():
                if c["owner"]["name"] == namespace and c["title"] == title:
                    raise HubError(409, "Collection already exists", slug=c["slug"])
            cid = secrets.token_hex(12)
            words = "".join(ch if ch.isalnum() else "-" for ch in title.lower()).strip("-")
            slug = f"{namespace}/{'-'.join(w for w in words.split('-') if w)}-{cid}"
            coll = {"slug": slug, "title": title, "description": description,
                    "owner": {"name": namespace, "type": "user"}, "items": [], "lastUpdated": now_iso(),
                    "position": 0, "private": private, "theme": "orange", "upvotes": 0, "gating": False}
            _atomic_write(self._collection_path(cid), json.dumps(coll, indent=1).encode())
            return coll

    def delete_collection(self, slug: str) -> None:
        with self._lock:
            self.collection(slug)
            self._collection_path(slug.rsplit("-", 1)[-1]).unlink()

    def add_collection_item(self, slug: str, item_id: str, item_type: str, note: str | None) -> dict:
        with self._lock:
            coll = self.collection(slug)
            if any(it["id"] == item_id and it["type"] == item_type for it in coll["items"]):
                raise HubError(409, "Item already exists in collection")
            item = {"_id": secrets.token_hex(12), "id": item_id, "type": item_type,
                    "position": len(coll["items"])}
            if note:
                item["note"] = {"text": note, "html": note}
            coll["items"].append(item)
            coll["lastUpdated"] = now_iso()
            _atomic_write(self._collection_path(slug.rsplit("-", 1)[-1]), json.dumps(coll, indent=1).encode())
            return coll


def is_lfs_path(path: str, attributes: str) -> bool:
    """Whether .gitattributes routes `path` to LFS (patterns without '/' match the basename)."""
    base = path.rsplit("/", 1)[-1]
    for line in attributes.splitlines():
        parts = line.split()
        if len(parts) < 2 or "filter=lfs" not in parts[1:]:
            continue
        pattern = parts[0]
        target = path if "/" in pattern else base
        if fnmatch.fnmatchcase(target, pattern):
            return True
    return False


def decode_b64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)
