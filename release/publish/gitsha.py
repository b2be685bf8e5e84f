"""Git blob ids of local files: how the Hub names regular (non-LFS) files."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 8 << 20


def git_blob_sha1_file(path: Path) -> str:
    h = hashlib.sha1()
    h.update(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
