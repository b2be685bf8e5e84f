"""Every request the stand-in Hub saw, so tests can assert "0 bytes sent, 0 commits"."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

# Routes whose request bodies carry file content.
UPLOAD_ROUTES = frozenset({"lfs_upload", "lfs_part", "commit"})
# POSTs that only read.
READ_POSTS = frozenset({"paths_info", "validate_yaml"})


@dataclass
class RequestRecord:
    seq: int
    method: str
    path: str
    query: str
    route: str = "unknown"
    repo: str | None = None
    status: int | None = None  # None: the connection was dropped without an answer
    received: int = 0  # request body bytes read
    fault: str | None = None
    oid: str | None = None  # LFS object of an upload request
    stored: bool = False  # an upload that completed and was kept

    @property
    def write(self) -> bool:
        return self.method not in ("GET", "HEAD") and self.route not in READ_POSTS

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "write": self.write}


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []

    def new(self, method: str, path: str, query: str) -> RequestRecord:
        with self._lock:
            rec = RequestRecord(len(self._records), method, path, query)
            self._records.append(rec)
            return rec

    def records(self, route: str | None = None, method: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._records
                    if (route is None or r.route == route) and (method is None or r.method == method)]

    def clear(self) -> None:
        with self._lock:
            self._records.clear()

    def writes(self) -> list[RequestRecord]:
        return [r for r in self.records() if r.write]

    def commits(self, repo: str | None = None) -> list[RequestRecord]:
        """Commit requests that created a commit (answered 200, or applied with the answer lost)."""
        return [r for r in self.records("commit") if r.stored and (repo is None or r.repo == repo)]

    def upload_bytes(self) -> int:
        return sum(r.received for r in self.records() if r.route in UPLOAD_ROUTES)

    def lfs_bytes_by_oid(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for r in self.records():
            if r.route in ("lfs_upload", "lfs_part") and r.oid:
                out[r.oid] += r.received
        return out

    def lfs_stored_by_oid(self) -> Counter[str]:
        """How many times each LFS object was completely uploaded and kept."""
        out: Counter[str] = Counter()
        for r in self.records():
            if r.route in ("lfs_upload", "lfs_complete") and r.oid and r.stored:
                out[r.oid] += 1
        return out

    def to_json(self) -> list[dict[str, Any]]:
        return [r.to_json() for r in self.records()]
