"""One run at a time per release output folder: `dist/<name>/` is locked for the whole of a command that
writes there, so two runs never interleave their builds or publish twice. A second run refuses at once
with one line naming the holder (the lock is the kernel's: it goes away with the process, even on
kill -9).

`file_lock` is the waiting kind, for a read-modify-write of one small file (`release scores import`):
a second writer waits its turn, then reads what the first one wrote."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .errors import WorkError

LOCK_NAME = ".lock"


@contextlib.contextmanager
def dist_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on `folder` (created if missing) until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WorkError(f"{folder} is in use by {_holder(path)}; wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(["release", *sys.argv[1:]])[:300]}).encode())
        yield
    finally:
        os.close(fd)  # closing drops the lock


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Wait for, then hold, an exclusive lock on the file `path` (created if missing; left in place, since
    removing it would let a waiter lock a file nobody else sees) until the block ends."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        return f"pid {info['pid']} (`{info['command']}`, since {info['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another run"
