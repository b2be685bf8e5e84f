"""The Hub endpoints the unmodified huggingface_hub client uses (docs/hf-hub.md §3), on top of Store.

Two origins, like the real Hub: the API (repos, commits, trees, resolve, LFS batch) and a storage
origin for LFS bytes (signed PUT/GET URLs, no Authorization header), so downloads go through a 302 to
another host exactly as they do against S3/CloudFront.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

import yaml

from .collection_routes import (
    collection_create,
    collection_delete,
    collection_get,
    collection_item_add,
    collection_list,
)
from .endpoint import (
    OID,
    PREFIX,
    REPO,
    URL_PREFIX,
    T,
    hub_of,
    identity,
    invisible,
    paginate,
    readable_repo,
    repo_key,
    require_write,
    storage_url,
    writable_repo,
    writer,
)
from .http import Aborted, Handler, Route
from .lfs import lfs_batch, lfs_complete, lfs_download, lfs_part, lfs_upload, lfs_verify, serve_bytes
from .store import REGULAR_MAX, FileChange, HubError, RepoKey, decode_b64, is_lfs_path

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
    store = hub_of(h).store
    history = store.history(sha)
    for i, (csha, cobj) in enumerate(history):
        entries = store.tree(csha)
        parent = store.tree(history[i + 1][0]) if i + 1 < len(history) else {}
        mine = {p: e["oid"] for p, e in entries.items() if p == path or p.startswith(path + "/")}
        theirs = {p: e["oid"] for p, e in parent.items() if p == path or p.startswith(path + "/")}
        if mine != theirs:
            return {"id": csha, "title": cobj["title"], "date": cobj["date"]}
    return {"id": sha, "title": store.commit_obj(sha)["title"], "date": store.commit_obj(sha)["date"]}


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
    ident = writer(h)
    ns = body.get("organization") or ident.user
    if not name:
        raise HubError(400, "name is required")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}", name) or "--" in name or ".." in name:
        raise HubError(400, f"invalid repo name {name!r}")
    require_write(h, ns)
    key = RepoKey(body.get("type") or "model", ns, name)
    private = body.get("visibility") == "private" or bool(body.get("private"))
    url = f"{hub_of(h).url}/{URL_PREFIX[key.type]}{key.id}"
    if not hub_of(h).store.create_repo(key, private):
        raise HubError(409, "You already created this model repo", url=url)
    h.answer(200, {"url": url, "name": key.id, "id": key.id})


def repo_delete(h: Handler) -> None:
    """`HfApi.delete_repo`: DELETE with a JSON body {"name", "organization", "type"?}."""
    body = h.body.json() or {}
    key = RepoKey(body.get("type") or "model", body.get("organization") or "", body.get("name") or "")
    writable_repo(h, key)
    hub_of(h).store.delete_repo(key)
    h.answer(200, {})


def repo_settings(h: Handler, t: str, ns: str, name: str) -> None:
    """`HfApi.update_repo_settings(private=, visibility=, gated=)`: PUT {"visibility"?, "gated"?}."""
    key = repo_key(t, ns, name)
    body = h.body.json() or {}
    writable_repo(h, key)
    visibility, gated = body.get("visibility"), body.get("gated")
    if visibility not in (None, "public", "private"):
        raise HubError(400, f"invalid visibility {visibility!r}: public or private")
    if gated not in (None, False, "auto", "manual"):
        raise HubError(400, f"invalid gated {gated!r}: false, auto or manual")
    meta = hub_of(h).store.update_settings(key, private=None if visibility is None else visibility == "private",
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
    ident = identity(h)
    if ident is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    h.answer(200, ident.whoami(hub_of(h).started_at))


def list_models(h: Handler) -> None:
    """`HfApi.list_models(author=, search=, limit=)`: public repos (and the caller's private ones), as
    the Hub lists them: short entries, paginated with a Link header."""
    store = hub_of(h).store
    author, search = h.q("author"), (h.q("search") or "").lower()
    items = []
    for key in store.repos("model"):
        meta = store.repo(key)
        if meta is None or invisible(h, key, meta):
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
    paginate(h, items, hub_of(h).page_size)


def repo_info(h: Handler, t: str, ns: str, name: str, rev: str = "main") -> None:
    key = repo_key(t, ns, name)
    meta = readable_repo(h, key)
    store = hub_of(h).store
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
    key = repo_key(t, ns, name)
    writable_repo(h, key)
    store = hub_of(h).store
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
    key = repo_key(t, ns, name)
    writable_repo(h, key)
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
    hub = hub_of(h)
    with hub.limits.commit(key.id):  # one at a time per repo, within its quota
        sha = hub.store.commit(key, rev, changes, header.get("summary") or "",
                               header.get("description") or "", header.get("parentCommit"))
    h.record.stored = True
    url = f"{hub_of(h).url}/{URL_PREFIX[key.type]}{key.id}/commit/{sha}"
    h.answer(200, {"success": True, "commitOid": sha, "commitUrl": url, "hookOutput": "",
                   "pullRequestUrl": None})


def tree(h: Handler, t: str, ns: str, name: str, rev: str, path: str = "") -> None:
    key = repo_key(t, ns, name)
    readable_repo(h, key)
    store = hub_of(h).store
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
    hub = hub_of(h)
    if expand:
        start = int(h.q("cursor") or 0)
        for item in items[start:start + hub.expand_page_size]:
            item["lastCommit"] = _last_commit(h, key, sha, item["path"])
    paginate(h, items, hub.expand_page_size if expand else hub.page_size)


def paths_info(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    key = repo_key(t, ns, name)
    readable_repo(h, key)
    store = hub_of(h).store
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
    key = repo_key(t, ns, name)
    meta = readable_repo(h, key)
    h.answer(200, {
        "branches": [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": s}
                     for b, s in meta["heads"].items()],
        "converts": [],
        "tags": [{"name": n, "ref": f"refs/tags/{n}", "targetCommit": v["commit"]}
                 for n, v in meta["tags"].items()],
        "pullRequests": [],
    })


def commits(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    key = repo_key(t, ns, name)
    readable_repo(h, key)
    store = hub_of(h).store
    items = [{"id": sha, "title": c["title"], "message": c["message"], "date": c["date"],
              "authors": [{"user": c["author"], "avatar": ""}]}
             for sha, c in store.history(store.resolve(key, rev))]
    paginate(h, items, 50)


def tag_create(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    writable_repo(h, repo_key(t, ns, name))
    body = h.body.json() or {}
    if not body.get("tag"):
        raise HubError(400, "tag is required")
    hub_of(h).store.create_tag(repo_key(t, ns, name), body["tag"], rev, body.get("message"))
    h.answer(200, {})


def tag_delete(h: Handler, t: str, ns: str, name: str, rev: str) -> None:
    writable_repo(h, repo_key(t, ns, name))
    hub_of(h).store.delete_tag(repo_key(t, ns, name), rev)
    h.answer(200, {})


def branch_create(h: Handler, t: str, ns: str, name: str, branch: str) -> None:
    writable_repo(h, repo_key(t, ns, name))
    body = h.body.json() or {}
    hub_of(h).store.create_branch(repo_key(t, ns, name), branch, body.get("startingPoint"))
    h.answer(200, {})


def branch_delete(h: Handler, t: str, ns: str, name: str, branch: str) -> None:
    writable_repo(h, repo_key(t, ns, name))
    hub_of(h).store.delete_branch(repo_key(t, ns, name), branch)
    h.answer(200, {})


def resolve(h: Handler, ns: str, name: str, rev: str, path: str, p: str | None = None) -> None:
    key = repo_key(None, ns, name, p)
    readable_repo(h, key)
    store = hub_of(h).store
    sha = store.resolve(key, rev)
    entry = store.tree(sha).get(path)
    if entry is None:
        raise HubError(404, f"Entry not found: {path}", "EntryNotFound", headers={"X-Repo-Commit": sha})
    headers = {"X-Repo-Commit": sha, "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes"}
    if entry["lfs"]:
        sha256 = entry["lfs"]["oid"]
        headers.update({"Location": storage_url(h, "lfs", sha256, entry["size"]),
                        "X-Linked-Etag": f'"{sha256}"', "X-Linked-Size": str(entry["size"])})
        h.answer(302, b"", headers, content_type="text/plain")
        return
    serve_bytes(h, store.get_blob(entry["oid"]), headers)


# ---- admin (for `release publish --local` rehearsals and out-of-process tests) -----------------

def admin_requests(h: Handler) -> None:
    h.answer(200, hub_of(h).log.to_json())


def admin_faults_get(h: Handler) -> None:
    h.answer(200, hub_of(h).faults.to_json())


def admin_faults_add(h: Handler) -> None:
    body = h.body.json() or {}
    try:
        fault = hub_of(h).faults.add(body["method"], body["path_regex"], body["kind"], body.get("times", 1),
                                   int(body.get("skip", 0)), **(body.get("params") or {}))
    except (KeyError, ValueError, re.error) as exc:
        raise HubError(400, f"bad fault: {exc}") from None
    h.answer(200, fault.to_json())


def admin_faults_clear(h: Handler) -> None:
    hub_of(h).faults.clear()
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
