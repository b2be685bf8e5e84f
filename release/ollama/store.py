"""The OLLAMA_MODELS layout: `manifests/<host>/<namespace>/<model>/<tag>` and `blobs/sha256-<hex>`.

A folder written here can be used directly: `OLLAMA_MODELS=dist/<name>/ollama ollama run <name>:<tag>`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from ..fsutil import atomic_write_bytes

DEFAULT_HOST = "registry.ollama.ai"


def registry_host(registry_url: str) -> str:
    """The host part ollama puts in a model name and in the store path ("registry.ollama.ai")."""
    parts = urlsplit(registry_url if "://" in registry_url else f"https://{registry_url}")
    return parts.netloc or DEFAULT_HOST


def blob_path(store: Path, digest: str) -> Path:
    return store / "blobs" / digest.replace(":", "-")


def manifest_path(store: Path, host: str, name: str, tag: str) -> Path:
    namespace, model = name.split("/", 1)
    return store / "manifests" / host / namespace / model / tag


def put_blob_bytes(store: Path, digest: str, data: bytes) -> Path:
    path = blob_path(store, digest)
    if not (path.exists() and path.stat().st_size == len(data)):
        atomic_write_bytes(path, data)
    return path


def put_blob_file(store: Path, digest: str, source: Path) -> tuple[Path, str]:
    """Place `source` as a blob: hardlinked when on the same filesystem, else copied.

    Returns the blob path and how it got there ("present", "hardlink" or "copy"). Multi-GB GGUFs are
    not copied twice on one disk; a hardlink shares the inode, which is safe because every builder
    replaces files by rename instead of writing them in place.
    """
    path = blob_path(store, digest)
    # Only the same inode is trusted as present: a blob of the right size may be a hard link to an
    # older build of the file whose bytes changed (bit rot that a rebuild then replaced by rename).
    if path.exists() and os.path.samefile(path, source):
        return path, "present"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mktemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        try:
            os.link(source, tmp)
            how = "hardlink"
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EACCES):
                raise
            shutil.copyfile(source, tmp)
            how = "copy"
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return path, how


def write_manifest(store: Path, host: str, name: str, tag: str, data: bytes) -> Path:
    path = manifest_path(store, host, name, tag)
    atomic_write_bytes(path, data)
    return path


def prune(store: Path, host: str, name: str, keep_tags: set[str]) -> list[Path]:
    """Remove this model's manifests for tags no longer built, then blobs no manifest refers to."""
    import json

    removed: list[Path] = []
    model_dir = manifest_path(store, host, name, "x").parent
    if model_dir.is_dir():
        for p in model_dir.iterdir():
            if p.is_file() and p.name not in keep_tags and not p.name.startswith("."):
                p.unlink()
                removed.append(p)
    referenced: set[str] = set()
    for mf in (store / "manifests").rglob("*"):
        if not mf.is_file() or mf.name.startswith("."):
            continue
        try:
            data = json.loads(mf.read_bytes())
        except (OSError, ValueError):
            continue
        referenced.add(data.get("config", {}).get("digest", ""))
        referenced.update(layer.get("digest", "") for layer in data.get("layers", []))
    blobs = store / "blobs"
    if blobs.is_dir():
        for b in blobs.iterdir():
            if b.name.startswith("sha256-") and b.name.replace("-", ":", 1) not in referenced:
                b.unlink()
                removed.append(b)
    return removed
