"""Child processes end with the parent: a killed or interrupted `release` leaves no quantizer, converter
or local registry running behind it, and Ctrl-C prints one line (the parent's), not one traceback per
worker.

Linux only (prctl); elsewhere these are no-ops and children end when their work does.
"""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In a child: get SIGKILL when the parent dies, however it dies (kill -9 included)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def worker_init() -> None:
    """Initializer of pool workers: the parent handles Ctrl-C and SIGTERM (and stops the workers);
    a worker only dies with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent()


def child_preexec() -> None:
    """preexec_fn of subprocesses: ignore the terminal's Ctrl-C (the parent decides) and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


def stop_pool(pool) -> None:  # type: ignore[no-untyped-def]
    """Stop a ProcessPoolExecutor now: cancel what has not started, kill what runs (a quantize can take
    minutes; waiting for it would make Ctrl-C useless)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # shutdown() forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        if proc.is_alive():
            proc.kill()
    for proc in procs:
        proc.join(timeout=10)
    # With its workers gone the pool's manager thread ends at once; joining it now keeps the interpreter's
    # exit hook from writing to the pipe it already closed ("Bad file descriptor" at exit).
    pool.shutdown(wait=True)
