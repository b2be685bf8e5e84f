"""Fault injection for the stand-in Hub, configurable while it runs.

    fault = hub.faults.add("PUT", r"^/upload/", "reset", after_bytes=1 << 20)
    hub.faults.add("POST", r"/commit/", "stall", skip=1)   # the second commit, not the first
    fault.hit.wait(5)            # the fault fired (useful with "stall")
    hub.faults.release()         # let stalled requests go on

Kinds:
  status         answer `status` (default 500) with `message` after reading the body; nothing is applied
  rate_limit     answer 429 with `message` and the headers given: `Retry-After: retry_after`,
                 `RateLimit: ratelimit`, `RateLimit-Policy: policy` (none unless given)
  reset          read `after_bytes` of the body (default half of it), then reset the connection
  slow           wait `delay` seconds, then handle the request normally
  lost_response  handle the request (a commit lands), then reset the connection instead of answering
  stall          read `after_bytes` of the body, then block until `release()` (or `timeout`), then reset
  late           read the body, reset the connection at once, handle the request `delay` s later
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

KINDS = ("status", "rate_limit", "reset", "slow", "lost_response", "stall", "late")


@dataclass
class Fault:
    method: str
    path_regex: str
    kind: str
    times: int | None = 1  # None = every matching request
    params: dict[str, Any] = field(default_factory=dict)
    skip: int = 0  # let this many matching requests through first
    seen: int = 0
    hits: int = 0
    hit: threading.Event = field(default_factory=threading.Event, repr=False)

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and re.search(self.path_regex, path) is not None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path_regex": self.path_regex, "kind": self.kind,
                "times": self.times, "skip": self.skip, "params": self.params, "hits": self.hits}


class FaultSet:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._released = threading.Event()

    def add(self, method: str, path_regex: str, kind: str, times: int | None = 1, skip: int = 0,
            **params: Any) -> Fault:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        re.compile(path_regex)
        fault = Fault(method.upper(), path_regex, kind, times, params, skip)
        with self._lock:
            self._faults.append(fault)
            self._released.clear()
        return fault

    def take(self, method: str, path: str) -> Fault | None:
        """The first armed fault matching this request, consuming one of its `times`."""
        with self._lock:
            for fault in self._faults:
                if fault.times is not None and fault.hits >= fault.times:
                    continue
                if fault.matches(method, path):
                    fault.seen += 1
                    if fault.seen <= fault.skip:
                        continue
                    fault.hits += 1
                    fault.hit.set()
                    return fault
        return None

    def release(self) -> None:
        self._released.set()

    def wait_released(self, timeout: float) -> bool:
        return self._released.wait(timeout)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
        self._released.set()

    def to_json(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_json() for f in self._faults]
