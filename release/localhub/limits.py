"""The Hub's limits on commits, as the stand-in enforces them (docs/hf-hub.md §4).

- One commit at a time per repository: while a commit to any branch of a repo is being applied (its
  server-side work included), another one gets 409 with the Hub's words. The window is real — the
  commit holds the repo's lock while it applies — and `hold` seconds widen it (server-side work).
- A commit quota per repository: `quota = (count, window_seconds)`, a fixed window starting at the
  first commit; one more gets 429 with `RateLimit`/`RateLimit-Policy` (IETF draft 9, as the Hub
  writes them), `Retry-After`, and the Hub's text. Default 128 per hour, the figure the Hub states in
  that answer; tests set a small window.

    hub.limits.hold = 0.3          # every commit takes 0.3 s server-side
    hub.limits.quota = (2, 2)      # 2 commits per repo per 2 s
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .store import HubError

COMMIT_IN_PROGRESS = "Another commit operation is in progress for this repository. Please try again later."
DEFAULT_COMMIT_QUOTA = (128, 3600.0)


def _about(seconds: float) -> str:
    """How the Hub words a wait: "1 hour", "12 minutes", "2 seconds"."""
    if seconds >= 3000:
        hours = max(1, round(seconds / 3600))
        return f"{hours} hour" + ("s" if hours > 1 else "")
    if seconds >= 90:
        return f"{round(seconds / 60)} minutes"
    n = max(1, math.ceil(seconds))
    return f"{n} second" + ("s" if n > 1 else "")


def _per(window: float) -> str:
    return "hour" if window == 3600 else _about(window)


class CommitLimits:
    def __init__(self, quota: tuple[int, float] | None = DEFAULT_COMMIT_QUOTA, hold: float = 0.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.quota = quota  # None: no quota
        self.hold = hold
        self._clock = clock
        self._mutex = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._windows: dict[str, tuple[float, int]] = {}  # repo → (window start, commits in it)

    @contextmanager
    def commit(self, repo: str) -> Iterator[None]:
        """Around applying one commit to `repo`: 409 while another one is in progress, 429 past the quota;
        the commit counts against the quota only if the body completes."""
        with self._mutex:
            lock = self._locks.setdefault(repo, threading.Lock())
        if not lock.acquire(blocking=False):
            raise HubError(409, COMMIT_IN_PROGRESS)
        try:
            self._admit(repo)
            if self.hold > 0:
                time.sleep(self.hold)
            yield
            with self._mutex:
                start, n = self._windows.get(repo, (self._clock(), 0))
                self._windows[repo] = (start, n + 1)
        finally:
            lock.release()

    def busy(self, repo: str) -> bool:
        """Whether a commit to `repo` is being applied right now."""
        with self._mutex:
            lock = self._locks.get(repo)
        return lock is not None and lock.locked()

    def reset(self) -> None:
        """Forget the commits counted so far (a new window for every repo)."""
        with self._mutex:
            self._windows.clear()

    def _admit(self, repo: str) -> None:
        if self.quota is None:
            return
        count, window = self.quota
        now = self._clock()
        with self._mutex:
            start, n = self._windows.get(repo, (now, 0))
            if now >= start + window:
                start, n = now, 0
            self._windows[repo] = (start, n)
        if n < count:
            return
        left = math.ceil(start + window - now)
        raise HubError(
            429, f"You have exceeded the rate limit for repository commits ({count} per {_per(window)}). "
                 f"You can retry this action in about {_about(start + window - now)}.",
            headers={"RateLimit": f'"commits";r=0;t={left}',
                     "RateLimit-Policy": f'"fixed window";"commits";q={count};w={math.ceil(window)}',
                     "Retry-After": str(left)})
