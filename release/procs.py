"""Child processes end with the parent: a killed or interrupted `release` leaves no quantizer, converter
or local registry running behind it, and Ctrl-C prints one line (the parent's), not one traceback per
worker.

Pool workers are spawned (a fresh interpreter each), so they can only ask to die with the parent once
running: `worker_init` asks, then exits at once if the parent is already gone (kill -9 while the workers
start). Ctrl-C is blocked while they start (`workers_start_deaf`), so a starting worker cannot print a
traceback. multiprocessing's resource tracker ends by itself once the parent and the workers are gone
(it exits when the last holder of its pipe does).

Linux only (prctl); elsewhere these are no-ops and children end when their work does.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int | None = None) -> None:
    """In a child: get SIGKILL when the parent dies, however it dies (kill -9 included).

    The request only covers a parent alive when it is made. A spawn worker makes it in its initializer,
    after its interpreter has started (a fraction of a second, more on a loaded machine): a parent killed
    before that has already handed the worker to init, which never dies. `parent`, the pid that started
    this process, tells: if this process's parent is another one now, it exits at once."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        os._exit(1)


def worker_init(parent: int | None = None) -> None:
    """Initializer of pool workers (initargs: the pool owner's pid): the parent handles Ctrl-C and SIGTERM
    (and stops the workers); a worker only dies with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # see workers_start_deaf
    die_with_parent(parent)


@contextlib.contextmanager
def workers_start_deaf() -> Iterator[None]:
    """Around the calls that start pool workers: Ctrl-C is blocked in this thread, and a worker inherits the
    block, so a Ctrl-C while its interpreter starts (before `worker_init` ignores it) stays pending and is
    dropped — without this, each starting worker printed a KeyboardInterrupt traceback. The parent still
    gets its Ctrl-C (through another thread, or when the block ends, milliseconds later)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


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
