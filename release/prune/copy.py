"""Copy byte ranges between files inside the kernel, with a bounded-buffer fallback.

`os.copy_file_range` moves data without passing it through user space (and shares extents on file
systems that support reflinks), which is what lets pruning run at `cp` speed with flat memory. Where
the kernel or file system refuses it (cross-device on old kernels, some network/overlay file systems),
a pread/pwrite loop with a fixed 8 MiB buffer takes over.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterable

CHUNK = 64 << 20  # granularity of progress reports and of one kernel call
FALLBACK_BUFFER = 8 << 20
_FALLBACK_ERRNOS = {errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM, errno.ETXTBSY}


class ShortRead(OSError):
    """The source ended before a range the header promised (it changed while being copied)."""


class RangeCopier:
    def __init__(self, on_bytes: Callable[[int], None] | None = None) -> None:
        self._kernel = hasattr(os, "copy_file_range")
        self._on_bytes = on_bytes

    def copy(self, src_fd: int, dst_fd: int, runs: Iterable[tuple[int, int, int]]) -> None:
        """Copy each (src_offset, dst_offset, length) run."""
        for src, dst, length in runs:
            done = 0
            while done < length:
                n = min(CHUNK, length - done)
                got = self._copy_some(src_fd, dst_fd, src + done, dst + done, n)
                if got == 0:
                    raise ShortRead(errno.EIO,
                                    f"source ended at byte {src + done}, expected {length - done} more")
                done += got
                if self._on_bytes is not None:
                    self._on_bytes(got)

    def _copy_some(self, src_fd: int, dst_fd: int, src: int, dst: int, n: int) -> int:
        if self._kernel:
            try:
                return os.copy_file_range(src_fd, dst_fd, n, src, dst)
            except OSError as exc:
                if exc.errno not in _FALLBACK_ERRNOS:
                    raise
                self._kernel = False
        data = os.pread(src_fd, min(n, FALLBACK_BUFFER), src)
        view = memoryview(data)
        written = 0
        while written < len(view):
            written += os.pwrite(dst_fd, view[written:], dst + written)
        return len(data)
