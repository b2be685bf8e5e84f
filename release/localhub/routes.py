"""The Hub endpoints the unmodified huggingface_hub client uses (docs/hf-hub.md §3), on top of Store.

Two origins, like the real Hub: the API (repos, commits, trees, resolve, LFS batch) and a storage
origin for LFS bytes (signed PUT/GET URLs, no Authorization header), so downloads go through a 302 to
another host exactly as they do against S3/CloudFront.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import yaml

from .http import COPY_CHUNK, Aborted, Handler, Route
from .store import REGULAR_MAX, FileChange, HubError, RepoKey, decode_b64, is_lfs_path
from .tokens import Token

if TYPE_CHECKING:
    from . import LocalHub

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
T = r"(?P<t>models|datasets|spaces)"
REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
PREFIX = r"(?:(?P<p>datasets|spaces)/)?"
OID = r"(?P<oid>[0-9a-f]{64})"


def _hub(h: Handler) -> LocalHub:
    return h.server.hub


def _key(t: str | None, ns: str, name: str, prefix: str | None = None) -> RepoKey:
    if prefix:
        return RepoKey(TYPES[prefix], ns, name)
    return RepoKey(TYPES[t] if t else "model", ns, name)


# ---- auth ---------------------------------------------------------------------------------------

def _identity(h: Handler) -> Token | None:
    """The caller's token, None when anonymous; 401 for a token the Hub does not know."""
    token = h.bearer()
    if token is None:
        return None
    ident = _hub(h).tokens.get(token)
    if ident is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    return ident


def _writer(h: Handler) -> Token:
    ident = _identity(h)
    if ident is None:
        raise HubError(401, "You must be authenticated to write")
    return ident


def _forbidden(namespace: str) -> HubError:
    return HubError(403, f"You don't have the rights to write to the namespace {namespace}")


def _require_write(h: Handler, namespace: str) -> Token:
    """Namespace-level writes (create a repo or a collection): 401 anonymous, 403 without rights."""
    ident = _writer(h)
    if not ident.can_write(namespace):
        raise _forbidden(namespace)
    return ident


def _invisible(h: Handler, key: RepoKey, meta: dict) -> bool:
    ident = _identity(h)
    return bool(meta["private"]) and (ident is None or not ident.can_read(key.namespace, key.id))


def _readable_repo(h: Handler, key: RepoKey) -> dict:
    """The repo, or 404 RepoNotFound when it does not exist or the caller may not see it (private)."""
    meta = _hub(h).store.require_repo(key)
    if _invisible(h, key, meta):
        raise HubError(404, "Repository not found", "RepoNotFound")
    return meta


def _writable_repo(h: Handler, key: RepoKey) -> dict:
    """The repo for a write: 401 anonymous, 404 when invisible to the caller, 403 without write rights."""
    ident = _writer(h)
    meta = _readable_repo(h, key)
    if not ident.can_write(key.namespace, key.id):
        raise _forbidden(key.namespace)
    return meta


# ---- signed storage URLs ------------------------------------------------------------------------

def _sign(h: Handler, action: str, oid: str, size: int) -> str:
    return hmac.new(_hub(h).store.secret, f"{action}:{oid}:{size}".encode(), hashlib.sha256).hexdigest()[:32]


def _storage_url(h: Handler, action: str, oid: str, size: int, extra: str = "") -> str:
    sig = _sign(h, action, oid, size)
    return f"{_hub(h).storage_url}/{action}/{oid}{extra}?{urlencode({'size': size, 'sig': sig})}"


def _check_sig(h: Handler, action: str, oid: str) -> int:
    size = int(h.q("size") or -1)
    if not hmac.compare_digest(h.q("sig") or "", _sign(h, action, oid, size)):
        raise HubError(403, "bad signature")
    return size


# ---- tree items ---------------------------------------------------------------------------------

def _file_item(path: str, entry: dict) -> dict:
    item: dict[str, Any] = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": path}
    if entry["lfs"]:
        item["lfs"] = dict(entry["lfs"])
    return item


def _dir_item(path: str, entries: dict[str, dict]) -> dict:
    prefix = path + "/"
    sub = sorted((p, e["oid"]) for p, e in entries.items() if p.startswith(prefix))
    oid = hashlib.sha1(json.dumps(sub).encode()).hexdigest()
    return {"type": "directory", "oid": oid, "size": 0, "path": path}


def _dirs(entries: dict[str, dict]) -> set[str]:
    out: set[str] = set()
    for p in entries:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def _last_commit(h: Handler, key: RepoKey, sha: str, path: str) -> dict:
    store = _hub(h).store
    history = store.history(sha)
    for i, (csha, cobj) in enumerate(history):
        entries = store.tree(csha)
        parent = store.tree(history[i + 1][0]) if i + 1 < len(history) else {}
        mine = {p: e["oid"] for p, e in entries.items() if p == path or p.startswith(path + "/")}
        theirs = {p: e["oid"] for p, e in parent.items() if p == path or p.startswith(path + "/")}
        if mine != theirs:
            return {"id": csha, "title": cobj["title"], "date": cobj["date"]}
    return {"id": sha, "title": store.commit_obj(sha)["title"], "date": store.commit_obj(sha)["date"]}


def _paginate(h: Handler, items: list, page_size: int) -> None:
    start = int(h.q("cursor") or 0)
    page = items[start:start + page_size]
    headers = {}
    if start + page_size < len(items):
        params = {k: v[0] for k, v in h.query.items() if k != "cursor"}
        params["cursor"] = str(start + page_size)
        headers["Link"] = f'<{_hub(h).url}{h.record.path}?{urlencode(params)}>; rel="next"'
    h.answer(200, page, headers)


def _front_matter(text: str) -> Any:
    if not text.startswith("---"):
        return None
    end = text.find("\n---", 3)
    if end < 0:
        raise ValueError("metadata block is not closed with ---")
    return yaml.safe_load(text[3:end])


# ---- repo endpoints -----------------------------------------------------------------------------

def repo_create(h: Handler) -> None:
    body = h.body.json() or {}
    name = body.get("name")
    ident = _writer(h)
    ns = body.get("organization") or ident.user
    if not name:
        raise HubError(400, "name is required")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name) or "--" in name or ".." in name:
        raise HubError(400, f"invalid repo name {name!r}")
    _require_write(h, ns)
    key = RepoKey(body.get("type") or "model", ns, name)
    private = body.get("visibility") == "private" or bool(body.get("private"))
    url = f"{_hub(h).url}/{URL_PREFIX[key.type]}{key.id}"
    if not _hub(h).store.create_repo(key, private):
        raise HubError(409, "You already created this model repo", url=url)
    h.answer(200, {"url": url, "name": key.id, "id": key.id})


def repo_delete(h: Handler) -> None:
    """`HfApi.delete_repo`: DELETE with a JSON body {"name", "organization", "type"?}."""
    body = h.body.json() or {}
    key = RepoKey(body.get("type") or "model", body.get("organization") or "", body.get("name") or "")
    _writable_repo(h, key)
    _hub(h).store.delete_repo(key)
    h.answer(200, {})


def repo_settings(h: Handler, t: str, ns: str, name: str) -> None:
    """`HfApi.update_repo_settings(private=, visibility=, gated=)`: PUT {"visibility"?, "gated"?}."""
    key = _key(t, ns, name)
    body = h.body.json() or {}
    _writable_repo(h, key)
    visibility, gated = body.get("visibility"), body.get("gated")
    if visibility not in (None, "public", "private"):
        raise HubError(400, f"invalid visibility {visibility!r}: public or private")
    if gated not in (None, False, "auto", "manual"):
        raise HubError(400, f"invalid gated {gated!r}: false, auto or manual")
    meta = _hub(h).store.update_settings(key, private=None if visibility is None else visibility == "private",
                                         gated=gated)
    h.answer(200, {"private": meta["private"], "gated": meta.get("gated", False)})


def validate_yaml(h: Handler) -> None:
    body = h.body.json() or {}
    try:
        meta = _front_matter(body.get("content") or "")
    except (ValueError, yaml.YAMLError) as exc:
        h.answer(400, {"errors": [{"message": f"Invalid YAML: {exc}"}], "warnings": []})
        return
    if meta is not None and not isinstance(meta, dict):
        h.answer(400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
        return
    h.answer(200, {"errors": [], "warnings": []})


def whoami(h: Handler) -> None:
    ident = _identity(h)
    if ident is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    h.answer(200, ident.whoami(_hub(h).started_at))


def list_models(h: Handler) -> None:
    """`HfApi.list_models(author=, search=, limit=)`: public repos (and the caller's private ones), as
    the Hub lists them: short entries, paginated with a Link header."""
    store = _hub(h).store
    author, search = h.q("author"), (h.q("search") or "").lower()
    items = []
    for key in store.repos("model"):
        meta = store.repo(key)
        if meta is None or _invisible(h, key, meta):
            continue
        if (author and key.namespace != author) or (search and search not in key.id.lower()):
            continue
        sha = meta["heads"].get("main")
        items.append({"_id": hashlib.sha1(key.id.encode()).hexdigest()[:24], "id": key.id, "modelId": key.id,
                      "author": key.namespace, "sha": sha, "private": meta["private"], "createdAt": meta["createdAt"],
                      "lastModified": store.commit_obj(sha)["date"] if sha else meta["createdAt"],
                      "downloads": 0, "likes": 0, "tags": [], "library_name": None})
    limit = h.q("limit")
    if limit is not None and limit.isdigit():
        items = items[:int(limit)]
    _paginate(h, items, _hub(h).page_size)


def repo_info(h: Handler, t: str, ns: str, name: str, rev: str = "main") -> None:
    key = _key(t, ns, name)
    meta = _readable_repo(h, key)
    store = _hub(h).store
    sha = store.resolve(key, rev)
    entries = store.tree(sha)
    blobs = h.flag("blobs")
    siblings = []
    for path in sorted(entries):
        e = entries[path]
        sib: dict[str, Any] = {"rfilename": path}
        if blobs:
            sib.update(size=e["size"], blobId=e["oid"])
            if e["lfs"]:
                sib["lfs"] = {"sha256": e["lfs"]["oid"], "size": e["size"],
                              "pointerSize": e["lfs"]["pointerSize"]}
        siblings.append(sib)
    info: dict[str, Any] = {
        "_id": hashlib.sha1(key.id.encode()).hexdigest()[:24], "id": key.id, "modelId": key.id,
        "author": ns, "sha": sha, "lastModified": store.commit_obj(sha)["date"],
        "createdAt": meta["createdAt"],
        "private": meta["private"], "disabled": False, "gated": meta.get("gated", False), "downloads": 0,
        "likes": 0,
        "tags": [], "siblings": siblings, "usedStorage": sum(e["size"] for e in entries.values()),
    }
    if "README.md" in entries and not entries["README.md"]["lfs"]:
        try:
            card = _front_matter(store.get_blob(entries["README.md"]["oid"]).decode())
        except (ValueError, yaml.YAMLError, UnicodeDecodeError):
            card = None
        if isinstance(card, dict):
            info["cardData"] = card
            info["tags"] = list(card.get("tags") or [])
    h.answer(200, info)


def preupload(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    key = _key(t, ns, name)
    _writable_repo(h, key)
    store = _hub(h).store
    sha = store.resolve(key, rev)
    entries = store.tree(sha)
    attrs = ""
    if ".gitattributes" in entries and not entries[".gitattributes"]["lfs"]:
        attrs = store.get_blob(entries[".gitattributes"]["oid"]).decode(errors="replace")
    out = []
    for f in (h.body.json() or {}).get("files", []):
        path, size = f["path"], int(f["size"])
        sample = decode_b64(f.get("sample") or "")
        lfs = size > REGULAR_MAX or is_lfs_path(path, attrs) or b"\0" in sample
        existing = entries.get(path)
        oid = None
        if existing is not None:
            if lfs and existing["lfs"]:
                oid = existing["lfs"]["oid"]
            elif not lfs and not existing["lfs"]:
                oid = existing["oid"]
        mode = "lfs" if lfs else "regular"
        out.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
    h.answer(200, {"files": out, "commitOid": sha})


def commit(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    key = _key(t, ns, name)
    _writable_repo(h, key)
    if h.flag("create_pr"):
        raise HubError(400, "the stand-in Hub does not implement pull requests")
    header: dict | None = None
    changes: list[FileChange] = []
    for raw in h.body.read_all().splitlines():
        if not raw.strip():
            continue
        line = json.loads(raw)
        kind, value = line.get("key"), line.get("value") or {}
        if kind == "header":
            header = value
        elif kind == "file":
            content = decode_b64(value["content"])
            if len(content) > REGULAR_MAX:
                raise HubError(400, f"{value['path']} is too large for a regular file; upload it with LFS")
            changes.append(FileChange("file", value["path"], content=content))
        elif kind == "lfsFile":
            changes.append(FileChange("lfs", value["path"], sha256=value["oid"], size=value.get("size")))
        elif kind == "deletedFile":
            changes.append(FileChange("delete", value["path"]))
        elif kind == "deletedFolder":
            changes.append(FileChange("delete_folder", value["path"]))
        else:
            raise HubError(400, f"unknown commit line key {kind!r}")
    if header is None:
        raise HubError(400, "commit has no header line")
    hub = _hub(h)
    with hub.limits.commit(key.id):  # one at a time per repo, within its quota
        sha = hub.store.commit(key, rev, changes, header.get("summary") or "",
                               header.get("description") or "", header.get("parentCommit"))
    h.record.stored = True
    url = f"{_hub(h).url}/{URL_PREFIX[key.type]}{key.id}/commit/{sha}"
    h.answer(200, {"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": "",
                   "pullRequestUrl": None})


def tree(h: Handler, t: str, ns: str, name: str, rev: str, path: str = "") -> None:
    key = _key(t, ns, name)
    _readable_repo(h, key)
    store = _hub(h).store
    sha = store.resolve(key, rev)
    entries = store.tree(sha)
    path = path.strip("/")
    dirs = _dirs(entries)
    if path and path not in dirs:
        raise HubError(404, f"{path} is not a folder", "EntryNotFound")
    prefix = path + "/" if path else ""
    recursive, expand = h.flag("recursive"), h.flag("expand")
    items = []
    for d in sorted(dirs):
        if d.startswith(prefix) and (recursive or "/" not in d[len(prefix):]):
            items.append(_dir_item(d, entries))
    for p in sorted(entries):
        if p.startswith(prefix) and (recursive or "/" not in p[len(prefix):]):
            items.append(_file_item(p, entries[p]))
    hub = _hub(h)
    if expand:
        start = int(h.q("cursor") or 0)
        for item in items[start:start + hub.expand_page_size]:
            item["lastCommit"] = _last_commit(h, key, sha, item["path"])
    _paginate(h, items, hub.expand_page_size if expand else hub.page_size)


def paths_info(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    key = _key(t, ns, name)
    _readable_repo(h, key)
    store = _hub(h).store
    sha = store.resolve(key, rev)
    entries = store.tree(sha)
    form = h.body.form()
    expand = (form.get("expand") or ["false"])[0].lower() == "true"
    dirs = _dirs(entries)
    out = []
    for p in form.get("paths", []):
        p = p.strip("/")
        if p in entries:
            item = _file_item(p, entries[p])
        elif p in dirs:
            item = _dir_item(p, entries)
        else:
            continue
        if expand:
            item["lastCommit"] = _last_commit(h, key, sha, p)
        out.append(item)
    h.answer(200, out)


def refs(h: Handler, t: str, ns: str, name: str) -> None:
    key = _key(t, ns, name)
    meta = _readable_repo(h, key)
    h.answer(200, {
        "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s}
                     for b, s in meta["heads"].items()],
        "converts": [],
        "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": v["commit"]}
                 for n, v in meta["tags"].items()],
        "pullRequests": [],
    })


def commits(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    key = _key(t, ns, name)
    _readable_repo(h, key)
    store = _hub(h).store
    items = [{"id": sha, "title": c["title"], "message": c["message"], "date": c["date"],
              "authors": [{"user": c["author"], "avatar": ""}]}
             for sha, c in store.history(store.resolve(key, rev))]
    _paginate(h, items, 50)


def tag_create(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    _writable_repo(h, _key(t, ns, name))
    body = h.body.json() or {}
    if not body.get("tag"):
        raise HubError(400, "tag is required")
    _hub(h).store.create_tag(_key(t, ns, name), body["tag"], rev, body.get("message"))
    h.answer(200, {})


def tag_delete(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    _writable_repo(h, _key(t, ns, name))
    _hub(h).store.delete_tag(_key(t, ns, name), rev)
    h.answer(200, {})


def branch_create(h: Handler, t: str, ns: str, name: str, branch: str) -> None:
    _writable_repo(h, _key(t, ns, name))
    body = h.body.json() or {}
    _hub(h).store.create_branch(_key(t, ns, name), branch, body.get("startingPoint"))
    h.answer(200, {})


def branch_delete(h: Handler, t: str, ns: str, name: str, branch: str) -> None:
    _writable_repo(h, _key(t, ns, name))
    _hub(h).store.delete_branch(_key(t, ns, name), branch)
    h.answer(200, {})


def resolve(h: Handler, ns: str, name: str, rev: str, path: str, p: str | None = None) -> None:
    key = _key(None, ns, name, p)
    _readable_repo(h, key)
    store = _hub(h).store
    sha = store.resolve(key, rev)
    entry = store.tree(sha).get(path)
    if entry is None:
        raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": sha})
    headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes"}
    if entry["lfs"]:
        sha256 = entry["lfs"]["oid"]
        headers.update({"Location": _storage_url(h, "lfs", sha256, entry["size"]),
                        "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(entry["size"])})
        h.answer(302, b"", headers, content_type="text/plain")
        return
    _serve_bytes(h, store.get_blob(entry["oid"]), headers)


# ---- LFS ----------------------------------------------------------------------------------------

def lfs_batch(h: Handler, ns: str, name: str, p: str | None = None) -> None:
    key = _key(None, ns, name, p)
    _writable_repo(h, key)
    hub = _hub(h)
    body = h.body.json() or {}
    if body.get("operation") != "upload":
        raise HubError(400, "only uploads are supported")
    verify = f"{hub.url}/{URL_PREFIX[key.type]}{key.id}.git/info/lfs/objects/verify"
    out = []
    for obj in body.get("objects", []):
        oid, size = obj["oid"], int(obj["size"])
        if not re.fullmatch(r"[0-9a-f]{64}", oid):
            out.append({"oid": oid, "size": size, "error": {"code": 422, "message": "invalid oid"}})
            continue
        if hub.store.has_lfs(oid, size):
            out.append({"oid": oid, "size": size})  # no actions: already stored
            continue
        if size > hub.multipart_threshold:
            parts = math.ceil(size / hub.chunk_size)
            header = {"chunk_size": str(hub.chunk_size)}
            for i in range(1, parts + 1):
                header[f"{i:05d}"] = _storage_url(h, "part", oid, size, f"/{i}")
            upload = {"href": _storage_url(h, "complete", oid, size), "header": header}
        else:
            upload = {"href": _storage_url(h, "upload", oid, size)}
        out.append({"oid": oid, "size": size, "authenticated": True,
                    "actions": {"upload": upload, "verify": {"href": verify}}})
    h.answer(200, {"transfer": "basic", "objects": out}, content_type="application/vnd.git-lfs+json")


def lfs_verify(h: Handler, ns: str, name: str, p: str | None = None) -> None:
    _writable_repo(h, _key(None, ns, name, p))
    body = h.body.json() or {}
    if not _hub(h).store.has_lfs(body.get("oid", ""), body.get("size")):
        raise HubError(404, "object not found")
    h.answer(200, {})


def _receive(h: Handler, oid: str, size: int) -> None:
    """Stream a whole object into a temporary file; keep it only if its sha256 and size match."""
    store = _hub(h).store
    tmp = store.tmp_file()
    digest = hashlib.sha256()
    n = 0
    try:
        with open(tmp, "wb") as fh:
            for chunk in h.body.chunks():
                digest.update(chunk)
                fh.write(chunk)
                n += len(chunk)
        if digest.hexdigest() != oid or n != size:
            raise HubError(400, f"uploaded content does not match oid {oid} / size {size}")
        store.adopt_lfs(tmp, oid)
        h.record.stored = True
    finally:
        tmp.unlink(missing_ok=True)


def lfs_upload(h: Handler, oid: str) -> None:
    size = _check_sig(h, "upload", oid)
    h.record.oid = oid
    _receive(h, oid, size)
    h.answer(200, {})


def _parts_dir(h: Handler, oid: str) -> Path:
    return _hub(h).store.root / "tmp" / "parts" / oid


def lfs_part(h: Handler, oid: str, n: str) -> None:
    """Write the part in place at its offset of the object being assembled; its md5 is the ETag."""
    size = _check_sig(h, "part", oid)
    h.record.oid = oid
    hub = _hub(h)
    part = int(n)
    if not 1 <= part <= math.ceil(size / hub.chunk_size):
        raise HubError(400, "part number out of range")
    d = _parts_dir(h, oid)
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{part:05d}.etag").unlink(missing_ok=True)  # a part is only done once its ETag is recorded
    md5 = hashlib.md5()
    offset = (part - 1) * hub.chunk_size
    fd = os.open(d / "data", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for chunk in h.body.chunks():
            md5.update(chunk)
            os.pwrite(fd, chunk, offset)
            offset += len(chunk)
    finally:
        os.close(fd)
    etag = md5.hexdigest()
    tmp = hub.store.tmp_file()
    tmp.write_text(etag)
    tmp.replace(d / f"{part:05d}.etag")
    h.answer(200, {}, {"ETag": f'"{etag}"'})


def lfs_complete(h: Handler, oid: str) -> None:
    size = _check_sig(h, "complete", oid)
    h.record.oid = oid
    hub = _hub(h)
    store = hub.store
    body = h.body.json() or {}
    if store.has_lfs(oid, size):
        h.answer(200, {})
        return
    d = _parts_dir(h, oid)
    parts = sorted(body.get("parts", []), key=lambda x: x["partNumber"])
    if [p["partNumber"] for p in parts] != list(range(1, math.ceil(size / hub.chunk_size) + 1)):
        raise HubError(400, "parts missing from the completion request")
    for p in parts:
        etag_file = d / f"{int(p['partNumber']):05d}.etag"
        if not etag_file.is_file():
            raise HubError(400, f"part {p['partNumber']} was not uploaded")
        if str(p.get("etag", "")).strip('"') != etag_file.read_text():
            raise HubError(400, f"etag mismatch for part {p['partNumber']}")
    data = d / "data"
    digest = hashlib.sha256()
    with open(data, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != oid or data.stat().st_size != size:
        raise HubError(400, f"assembled content does not match oid {oid} / size {size}")
    store.adopt_lfs(data, oid)
    h.record.stored = True
    shutil.rmtree(d, ignore_errors=True)
    h.answer(200, {})


def lfs_download(h: Handler, oid: str) -> None:
    size = _check_sig(h, "lfs", oid)
    store = _hub(h).store
    if not store.has_lfs(oid, size):
        raise HubError(404, "object not found")
    path = store.lfs_path(oid)
    start, end, status = _range(h, size)
    headers = {"ETag": f'"{oid}"', "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"

    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                data = fh.read(min(COPY_CHUNK, left))
                if not data:
                    break
                left -= len(data)
                yield data

    h.answer_stream(status, headers, max(0, end - start + 1), chunks())


def _range(h: Handler, size: int) -> tuple[int, int, int]:
    rng = h.headers.get("Range")
    if not rng:
        return 0, size - 1, 200
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
    if not m or (not m.group(1) and not m.group(2)):
        raise HubError(416, "bad range")
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        start, end = max(0, size - int(m.group(2))), size - 1
    end = min(end, size - 1)
    if start > end:
        raise HubError(416, "range not satisfiable", headers={"Content-Range": f"bytes */{size}"})
    return start, end, 206


def _serve_bytes(h: Handler, data: bytes, headers: dict[str, str]) -> None:
    start, end, status = _range(h, len(data))
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    h.answer(status, data[start:end + 1], headers, content_type="application/octet-stream")


# ---- collections --------------------------------------------------------------------------------

def collection_create(h: Handler) -> None:
    body = h.body.json() or {}
    ns, title = body.get("namespace"), body.get("title")
    if not ns or not title:
        raise HubError(400, "namespace and title are required")
    if not _writer(h).can_write_collections(ns):
        raise _forbidden(ns)
    coll = _hub(h).store.create_collection(ns, title, body.get("description"), bool(body.get("private")))
    h.answer(200, coll)


def _visible_collection(h: Handler, coll: dict) -> dict | None:
    """The collection as the caller may see it: None when private and not theirs; private repos they
    may not read left out of its items."""
    ident = _identity(h)
    if coll["private"] and (ident is None or not ident.can_read_collections(coll["owner"]["name"])):
        return None
    store = _hub(h).store
    items = []
    for item in coll["items"]:
        if item["type"] in ("model", "dataset", "space"):
            key = RepoKey(item["type"], *str(item["id"]).partition("/")[::2])
            meta = store.repo(key)
            if meta is None or _invisible(h, key, meta):
                continue
        items.append(item)
    return {**coll, "items": items}


def collection_list(h: Handler) -> None:
    owner, q = h.q("owner"), (h.q("q") or "").lower()
    out = []
    for c in _hub(h).store.collections():
        if (not owner or c["owner"]["name"] == owner) and (not q or q in c["title"].lower()):
            seen = _visible_collection(h, c)
            if seen is not None:
                # Like the Hub: listings carry no position and at most 4 items per collection.
                out.append({k: v for k, v in seen.items() if k != "position"} | {"items": seen["items"][:4]})
    _paginate(h, out, 100)


def collection_get(h: Handler, slug: str) -> None:
    seen = _visible_collection(h, _hub(h).store.collection(slug))
    if seen is None:
        raise HubError(404, "Collection not found", "RepoNotFound")
    h.answer(200, seen)


def collection_delete(h: Handler, slug: str) -> None:
    store = _hub(h).store
    _require_write(h, store.collection(slug)["owner"]["name"])
    store.delete_collection(slug)
    h.answer(200, {})


def collection_item_add(h: Handler, slug: str) -> None:
    store = _hub(h).store
    coll = _visible_collection(h, store.collection(slug))
    if coll is None:
        raise HubError(404, "Collection not found", "RepoNotFound")
    if not _writer(h).can_write_collections(coll["owner"]["name"]):
        raise _forbidden(coll["owner"]["name"])
    body = h.body.json() or {}
    item = body.get("item") or {}
    if item.get("type") in ("model", "dataset", "space"):
        key = RepoKey(item["type"], *str(item.get("id")).partition("/")[::2])
        meta = store.repo(key)
        if meta is None or _invisible(h, key, meta):
            raise HubError(404, f"{item['type']} {item.get('id')} not found", "RepoNotFound")
    h.answer(200, _visible_collection(h, store.add_collection_item(slug, item.get("id"), item.get("type"),
                                                                    body.get("note"))))


# ---- admin (for `release publish --local` rehearsals and out-of-process tests) -----------------

def admin_requests(h: Handler) -> None:
    h.answer(200, _hub(h).log.to_json())


def admin_faults_get(h: Handler) -> None:
    h.answer(200, _hub(h).faults.to_json())


def admin_faults_add(h: Handler) -> None:
    body = h.body.json() or {}
    try:
        fault = _hub(h).faults.add(body["method"], body["path_regex"], body["kind"], body.get("times", 1),
                                   int(body.get("skip", 0)), **(body.get("params") or {}))
    except (KeyError, ValueError, re.error) as exc:
        raise HubError(400, f"bad fault: {exc}") from None
    h.answer(200, fault.to_json())


def admin_faults_clear(h: Handler) -> None:
    _hub(h).faults.clear()
    h.answer(200, {})


def _r(method: str, pattern: str, name: str, func: Callable[..., None]) -> Route:
    return (method, re.compile(pattern), name, func)


API_ROUTES: list[Route] = [
    _r("POST", r"^/api/repos/create$", "repo_create", repo_create),
    _r("DELETE", r"^/api/repos/delete$", "repo_delete", repo_delete),
    _r("POST", r"^/api/validate-yaml$", "validate_yaml", validate_yaml),
    _r("GET", r"^/api/whoami-v2$", "whoami", whoami),
    _r("GET", r"^/api/models$", "list_models", list_models),
    _r("POST", r"^/api/collections$", "collection_create", collection_create),
    _r("GET", r"^/api/collections$", "collection_list", collection_list),
    _r("GET", r"^/api/collections/(?P<slug>[^/]+/[^/]+)$", "collection_get", collection_get),
    _r("DELETE", r"^/api/collections/(?P<slug>[^/]+/[^/]+)$", "collection_delete", collection_delete),
    _r("POST", r"^/api/collections/(?P<slug>[^/]+/[^/]+)/items$", "collection_item_add", collection_item_add),
    _r("GET", rf"^/api/{T}/{REPO}(?:/revision/(?P<rev>[^/]+))?$", "repo_info", repo_info),
    _r("PUT", rf"^/api/{T}/{REPO}/settings$", "repo_settings", repo_settings),
    _r("POST", rf"^/api/{T}/{REPO}/preupload/(?P<rev>[^/]+)$", "preupload", preupload),
    _r("POST", rf"^/api/{T}/{REPO}/commit/(?P<rev>[^/]+)$", "commit", commit),
    _r("GET", rf"^/api/{T}/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$", "tree", tree),
    _r("POST", rf"^/api/{T}/{REPO}/paths-info/(?P<rev>[^/]+)$", "paths_info", paths_info),
    _r("PUT", rf"^/api/{T}/{REPO}/settings$", "repo_settings", repo_settings),
    _r("GET", rf"^/api/{T}/{REPO}/refs$", "refs", refs),
    _r("GET", rf"^/api/{T}/{REPO}/commits/(?P<rev>[^/]+)$", "commits", commits),
    _r("POST", rf"^/api/{T}/{REPO}/tag/(?P<rev>[^/]+)$", "tag_create", tag_create),
    _r("DELETE", rf"^/api/{T}/{REPO}/tag/(?P<rev>[^/]+)$", "tag_delete", tag_delete),
    _r("POST", rf"^/api/{T}/{REPO}/branch/(?P<branch>[^/]+)$", "branch_create", branch_create),
    _r("DELETE", rf"^/api/{T}/{REPO}/branch/(?P<branch>[^/]+)$", "branch_delete", branch_delete),
    _r("POST", rf"^/{PREFIX}{REPO}\.git/info/lfs/objects/batch$", "lfs_batch", lfs_batch),
    _r("POST", rf"^/{PREFIX}{REPO}\.git/info/lfs/objects/verify$", "lfs_verify", lfs_verify),
    _r("GET", rf"^/{PREFIX}{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$", "resolve", resolve),
    _r("GET", r"^/_localhub/requests$", "admin", admin_requests),
    _r("GET", r"^/_localhub/faults$", "admin", admin_faults_get),
    _r("POST", r"^/_localhub/faults$", "admin", admin_faults_add),
    _r("DELETE", r"^/_localhub/faults$", "admin", admin_faults_clear),
]

STORAGE_ROUTES: list[Route] = [
    _r("PUT", rf"^/upload/{OID}$", "lfs_upload", lfs_upload),
    _r("PUT", rf"^/part/{OID}/(?P<n>\d+)$", "lfs_part", lfs_part),
    _r("POST", rf"^/complete/{OID}$", "lfs_complete", lfs_complete),
    _r("GET", rf"^/lfs/{OID}$", "lfs_download", lfs_download),
]

__all__ = ["API_ROUTES", "STORAGE_ROUTES", "Aborted"]
