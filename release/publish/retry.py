"""Retries with backoff and a ceiling on the total wait, for any publisher (Hub, Ollama registry).

The caller reads each failure (`Refusal`): whether it is an error (counted against the attempts) or
the other side being busy or limiting us (bounded by time only), and how long it asked us to wait.
This module knows nothing about HTTP libraries.

    retries = Retries(Backoff(), max_total=900, say=print)
    while True:
        try:
            return call()
        except Exception as exc:
            refusal = read(exc)              # None: not worth a retry
            if refusal is None or (why := retries.pause(what, refusal)) is not None:
                raise ...
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    attempts: int = 6  # tries for errors (5xx, resets), the first included
    base: float = 1.0
    factor: float = 2.0
    max_wait: float = 60.0  # longest wait we choose ourselves (a server may ask for longer)

    def step(self, n: int) -> float:
        """Our wait before retry n + 1."""
        return min(self.base * self.factor ** n, self.max_wait)

    def waits(self) -> Iterator[float]:
        """The wait before each retry of an error (attempts - 1 of them)."""
        return (self.step(n) for n in range(self.attempts - 1))


@dataclass(frozen=True)
class Refusal:
    """One failed try, as the caller reads it."""

    what: str  # one line: who answered what
    counted: bool = True  # an error; False: busy or limited (409 operation in progress, 429), bounded by time only
    asked: float | None = None  # seconds the other side asked us to wait (Retry-After, RateLimit)


class Retries:
    """The retries of one call: errors up to `backoff.attempts` tries, every wait — ours or one asked
    for — within `max_total` seconds in all. Each wait is said in one line."""

    def __init__(self, backoff: Backoff, max_total: float, *, say: Callable[[str], None] = lambda _m: None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.backoff = backoff
        self.max_total = max_total
        self._say = say
        self._sleep = sleep
        self.errors = 0
        self.busy = 0
        self.waited = 0.0

    @property
    def out_of_attempts(self) -> bool:
        return self.errors >= self.backoff.attempts

    def pause(self, what: str, refusal: Refusal) -> str | None:
        """Wait before the next try and return None; or return why to give up, without waiting."""
        if refusal.counted:
            self.errors += 1
            if self.errors >= self.backoff.attempts:
                return f"{refusal.what} (tried {self.errors} times)"
            wait = self.backoff.step(self.errors - 1)
        else:
            # Jittered: many clients wait on one repository's lock; in step they would meet again.
            wait = self.backoff.step(self.busy) * random.uniform(0.5, 1.5)
            self.busy += 1
        if refusal.asked is not None:
            wait = max(wait, refusal.asked)  # what the server asks beats our guess
        if self.waited + wait > self.max_total:
            return (f"{refusal.what}; waiting {wait:.0f}s more would pass the maximum wait of {self.max_total:.0f}s "
                    f"(waited {self.waited:.0f}s so far)")
        self.waited += wait
        self._say(f"{what}: {refusal.what}; waiting {wait:.1f}s ({self.waited:.0f}s of at most "
                  f"{self.max_total:.0f}s)")
        self._sleep(wait)
        return None
