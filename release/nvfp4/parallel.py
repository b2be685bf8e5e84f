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


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int,
                cost: Callable[[T], int] | None = None, budget: int = 0) -> Iterator[R]:
    """fn over items on `workers` threads, results in input order. In flight: at most 2·workers
    items and, if `cost` is given, at most `budget` bytes of them (one item always runs), so memory
    stays a few fusion groups' worth whatever the model. The first exception propagates once the
    running tasks end."""
    with single_threaded_torch(), ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[Future[R], int]] = deque()
        held = 0
        try:
            for item in items:
                c = cost(item) if cost is not None else 0
                while pending and (len(pending) >= 2 * workers or (budget and held + c > budget)
                                   or pending[0][0].done()):
                    future, done_cost = pending.popleft()
                    held -= done_cost
                    yield future.result()
                pending.append((pool.submit(fn, item), c))
                held += c
            while pending:
                future, _ = pending.popleft()
                yield future.result()
        finally:
            for future, _ in pending:
                future.cancel()
