"""Retry with exponential backoff, for any publisher (Hub, Ollama registry).

The caller says which failures are transient and may hint how long to wait (a Retry-After header);
this module knows nothing about HTTP libraries.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    attempts: int = 6  # total tries, the first included
    base: float = 1.0
    factor: float = 2.0
    max_wait: float = 60.0

    def waits(self) -> Iterator[float]:
        """The wait before each retry (attempts - 1 of them)."""
        wait = self.base
        for _ in range(self.attempts - 1):
            yield min(wait, self.max_wait)
            wait *= self.factor


def retry_call(
    fn: Callable[[], T],
    *,
    is_transient: Callable[[BaseException], bool],
    backoff: Backoff = Backoff(),
    wait_hint: Callable[[BaseException], float | None] | None = None,
    on_retry: Callable[[int, BaseException, float], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `fn` until it succeeds, a non-transient error occurs, or the attempts run out."""
    waits = backoff.waits()
    attempt = 0
    while True:
        attempt += 1
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            wait = next(waits, None)
            if wait is None:
                raise
            hint = wait_hint(exc) if wait_hint is not None else None
            if hint is not None:
                # A server's Retry-After beats our guess, but never beyond our own ceiling.
                wait = min(max(wait, hint), backoff.max_wait)
            if on_retry is not None:
                on_retry(attempt, exc, wait)
            sleep(wait)
