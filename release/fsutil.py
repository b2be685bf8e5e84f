"""File-system helpers: atomic writes, temporary output folders, hashing with a cache.

Every output is written under a temporary name and renamed when complete, so an interrupted
run never leaves a half-written file or folder behind under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HASH_CHUNK = 8 << 20


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def staging_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `final`; on success it replaces `final` atomically.

    On any exception the temporary folder is removed and `final` is left as it was.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    # A killed run (SIGKILL skips the cleanup below) leaves its partial folder; it is ours to remove.
    for stale in final.parent.glob(f".{final.name}.*.partial"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; the finished folder gets normal permissions
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def link_or_copy(src: Path, dest: Path) -> None:
    """Put `src` at `dest` atomically: a hard link when the file system allows (no second copy of a
    multi-GB file), else a copy. rename(2) is a no-op between two links of one file, so that case
    returns early instead of leaving the temporary name behind."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and os.path.samefile(src, dest):
        return
    tmp = dest.with_name(f".{dest.name}.partial")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dest)


def folder_problem(folder: Path, *, probe: bool = False) -> str | None:
    """Why files could not be written in `folder` (made if missing), or None; creates nothing that stays.

    The nearest existing ancestor decides: a file or broken link in the way, or a folder this process may
    not write in. Permission bits do not stop root; `probe` also creates and removes a file there, which
    finds a read-only mount or a pseudo file system that takes no files, whoever runs."""
    for p in (folder, *folder.parents):
        if os.path.lexists(p) and not p.is_dir():
            return f"{p} is {'a broken link' if not p.exists() else 'a file'}, not a folder"
        if p.is_dir():
            writable = os.access(p, os.W_OK | os.X_OK)
            if writable and probe:
                try:
                    fd, name = tempfile.mkstemp(prefix=".write-probe.", dir=p)
                    os.close(fd)
                    os.unlink(name)
                except OSError:
                    writable = False
            if not writable:
                return f"{p} is not writable" + (f" (so {folder} cannot be made)" if p != folder else "")
            return None
    return None


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_json_record(path: Path) -> tuple[dict[str, Any], str | None]:
    """A JSON object this tool wrote earlier, or ({}, why) when it cannot be used. A record that is not
    an object (binary junk, `[]`, a folder in its place) is moved aside to `<name>.unreadable`, so the
    next write succeeds; the caller says so and carries on as if there were none."""
    if not os.path.lexists(path):
        return {}, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data, None
        why = f"holds a JSON {type(data).__name__}, not an object"
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = f"{type(exc).__name__}: {exc}"
    return {}, set_aside(path, why)


def set_aside(path: Path, why: str) -> str:
    """Move an unusable record out of the way (to `<name>.unreadable`); returns what to tell the user."""
    aside = path.with_name(path.name + ".unreadable")
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside)
    os.replace(path, aside)
    return f"{path} could not be used ({why}); moved to {aside.name} and treated as absent"


class HashCache:
    """sha256 of files keyed by (absolute path, size, mtime_ns), persisted as JSON.

    Lets an unchanged multi-GB release be planned again without rehashing.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, list] = {}
        self.problem: str | None = None
        if path is not None:
            data, self.problem = load_json_record(path)
            self._entries = {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 3
                             and isinstance(v[0], int) and isinstance(v[1], int) and isinstance(v[2], str)}
        self._dirty = False

    def sha256(self, file: Path) -> str:
        st = file.stat()
        key = str(file.resolve())
        with self._lock:
            hit = self._entries.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        digest = sha256_file(file)
        self._store(key, st, digest)
        return digest

    def remember(self, file: Path, digest: str) -> None:
        """Record a digest a builder computed while writing `file`, so it is not hashed again."""
        self._store(str(file.resolve()), file.stat(), digest)

    def _store(self, key: str, st: os.stat_result, digest: str) -> None:
        with self._lock:
            self._entries[key] = [st.st_size, st.st_mtime_ns, digest]
            self._dirty = True

    def save(self) -> None:
        if self.path is not None and self._dirty:
            with self._lock:
                atomic_write_text(self.path, json.dumps(self._entries))
                self._dirty = False


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
