"""The stand-in Hub's LFS endpoints: the batch API on the API origin, and the storage origin's signed
uploads (single and multipart), completion and ranged downloads (docs/hf-hub.md §3)."""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from .endpoint import URL_PREFIX, check_sig, hub_of, repo_key, storage_url, writable_repo
from .http import COPY_CHUNK, Handler
from .store import HubError


def lfs_batch(h: Handler, ns: str, name: str, p: str | None = None) -> None:
    key = repo_key(None, ns, name, p)
    writable_repo(h, key)
    hub = hub_of(h)
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
                header[f"{i:05d}"] = storage_url(h, "part", oid, size, f"/{i}")
            upload = {"href": storage_url(h, "complete", oid, size), "header": header}
        else:
            upload = {"href": storage_url(h, "upload", oid, size)}
        out.append({"oid": oid, "size": size, "authenticated": True,
                    "actions": {"upload": upload, "verify": {"href": verify}}})
    h.answer(200, {"transfer": "basic", "objects": out}, content_type="application/vnd.git-lfs+json")


def lfs_verify(h: Handler, ns: str, name: str, p: str | None = None) -> None:
    writable_repo(h, repo_key(None, ns, name, p))
    body = h.body.json() or {}
    if not hub_of(h).store.has_lfs(body.get("oid", ""), body.get("size")):
        raise HubError(404, "object not found")
    h.answer(200, {})


def _receive(h: Handler, oid: str, size: int) -> None:
    """Stream a whole object into a temporary file; keep it only if its sha256 and size match."""
    store = hub_of(h).store
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
    size = check_sig(h, "upload", oid)
    h.record.oid = oid
    _receive(h, oid, size)
    h.answer(200, {})


def _parts_dir(h: Handler, oid: str) -> Path:
    return hub_of(h).store.root / "tmp" / "parts" / oid


def lfs_part(h: Handler, oid: str, n: str) -> None:
    """Write the part in place at its offset of the object being assembled; its md5 is the ETag."""
    size = check_sig(h, "part", oid)
    h.record.oid = oid
    hub = hub_of(h)
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
    size = check_sig(h, "complete", oid)
    h.record.oid = oid
    hub = hub_of(h)
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
    size = check_sig(h, "lfs", oid)
    store = hub_of(h).store
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


def serve_bytes(h: Handler, data: bytes, headers: dict[str, str]) -> None:
    start, end, status = _range(h, len(data))
    if status == 206:
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
    h.answer(status, data[start:end + 1], headers, content_type="application/octet-stream")
