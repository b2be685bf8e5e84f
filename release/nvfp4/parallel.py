"""Parallelism for CPU quantization: Python threads over independent work items, torch single-threaded.

torch's own OpenMP threads spin-wait at every op boundary; on a 2-core box shared with other jobs
that made the quantizer 8× slower than one thread (measured). Threads of our own block normally,
and torch ops release the GIL, so a small pool gets the cores without the spinning.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0))))


@contextlib.contextmanager
def single_threaded_torch() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """fn over items on `workers` threads, results in input order, at most 2·workers in flight
    (so memory stays a few items' worth). The first exception propagates after running tasks end."""
    with single_threaded_torch(), ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                while len(pending) > 2 * workers or (pending and pending[0].done()):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
