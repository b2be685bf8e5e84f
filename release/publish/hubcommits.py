"""How one repo's (or branch's) planned files become commits: as few as the Hub's per-commit limits
allow, in an order no reader can catch half-way, each a list of huggingface_hub commit operations."""

from __future__ import annotations

from typing import Any

from huggingface_hub import CommitOperationAdd, CommitOperationCopy, CommitOperationDelete

from .hubplan import PlannedFile


def commit_batches(files: list[PlannedFile], deletes: list[PlannedFile], *, max_files: int,
                   max_regular_bytes: int) -> list[list[PlannedFile]]:
    """The commits of one repo (or branch): as few as the Hub's per-commit limits allow. LFS content
    was sent before (`upload`), so an LFS file or a server-side copy weighs its pointer only; what
    counts is files per commit and inline bytes (regular files; a copy of a regular file is re-sent
    by the client). LFS-stored files first, then regular ones; README.md, deletions and files marked
    `last` ride in the last commit (a reader never sees a card, or a record, before what it names)."""
    body = [f for f in files if not f.rides_last]
    lfs_flags = {f.path: f.likely_lfs() for f in body}
    body.sort(key=lambda f: (not lfs_flags[f.path], f.path))
    batches: list[list[PlannedFile]] = []
    cur: list[PlannedFile] = []
    inline = 0
    for f in body:
        weight = 0 if lfs_flags[f.path] else f.size
        if cur and (len(cur) >= max_files or inline + weight > max_regular_bytes):
            batches.append(cur)
            cur, inline = [], 0
        cur.append(f)
        inline += weight
    if cur:
        batches.append(cur)
    tail = [f for f in files if f.rides_last] + deletes
    if tail:
        tail_inline = sum(f.size for f in tail if f.action != "delete" and not f.likely_lfs())
        if batches and len(batches[-1]) + len(tail) <= max_files and \
                inline + tail_inline <= max_regular_bytes:
            batches[-1].extend(tail)
        else:
            batches.append(tail)
    return batches


def commit_operations(batch: list[PlannedFile]) -> list[Any]:
    ops: list[Any] = []
    for f in batch:
        if f.action == "delete":
            ops.append(CommitOperationDelete(path_in_repo=f.path, is_folder=False))
            continue
        if f.action == "copy":
            ops.append(CommitOperationCopy(src_path_in_repo=f.path, path_in_repo=f.path,
                                           src_revision=f.source_revision))
            continue
        op = CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(f.local))
        if f.sha256:
            # Known from the hash cache: spares the client a second full read of multi-GB files.
            op.upload_info.sha256 = bytes.fromhex(f.sha256)
        ops.append(op)
    return ops
