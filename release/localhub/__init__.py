"""A stand-in Hugging Face Hub: the wire subset the unmodified huggingface_hub client uses.

For tests now, and later for `release publish --local` rehearsals. Start it in-process:

    hub = LocalHub(root, tokens={"TOKEN": ["my-org"]}, chunk_size=4 << 20)
    url = hub.start()            # http://127.0.0.1:<port>; LFS bytes go to a second origin
    ...
    hub.stop()

or as a program: `python -m release.localhub --root DIR --port N --token my-org=TOKEN`.
Clients must set `HF_HUB_DISABLE_XET=1` (the stand-in speaks LFS, not Xet).

`hub.faults` injects faults at runtime (see faults.py); `hub.log` records every request (method,
path, route, bytes received, status) so tests can assert what was — or was not — sent. State lives
under `root` and survives a restart. Tokens map to the namespaces they may write to.

Out of process, the same controls are HTTP endpoints on the API origin (loopback only, never faulted):
`GET /_localhub/requests`, `GET|POST|DELETE /_localhub/faults` (POST {"method", "path_regex", "kind",
"times", "skip", "params"}).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from .faults import Fault, FaultSet
from .http import HubServer
from .requestlog import RequestLog, RequestRecord
from .routes import API_ROUTES, STORAGE_ROUTES
from .store import RepoKey, Store

__all__ = ["Fault", "FaultSet", "LocalHub", "RequestLog", "RequestRecord"]


class LocalHub:
    def __init__(
        self,
        root: Path | str,
        tokens: Mapping[str, str | Iterable[str]] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_port: int = 0,
        multipart_threshold: int = 64 << 20,
        chunk_size: int = 16 << 20,
        page_size: int = 1000,
        expand_page_size: int = 50,
    ) -> None:
        self.store = Store(Path(root))
        self.tokens: dict[str, list[str]] = {
            tok: [ns] if isinstance(ns, str) else list(ns) for tok, ns in (tokens or {}).items()
        }
        self.host, self.port, self.storage_port = host, port, storage_port
        self.multipart_threshold = multipart_threshold
        self.chunk_size = chunk_size
        self.page_size = page_size
        self.expand_page_size = expand_page_size
        self.faults = FaultSet()
        self.log = RequestLog()
        self._servers: list[HubServer] = []
        self._threads: list[threading.Thread] = []
        self.url = ""
        self.storage_url = ""

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> str:
        if self._servers:
            return self.url
        api = HubServer((self.host, self.port), self, API_ROUTES)
        storage = HubServer((self.host, self.storage_port), self, STORAGE_ROUTES)
        self._servers = [api, storage]
        self.url = f"http://{self.host}:{api.server_address[1]}"
        self.storage_url = f"http://{self.host}:{storage.server_address[1]}"
        for srv in self._servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
                                 name=f"localhub-{srv.server_address[1]}")
            t.start()
            self._threads.append(t)
        return self.url

    def stop(self) -> None:
        self.faults.clear()  # releases stalled requests
        for srv in self._servers:
            srv.shutdown()
            srv.close_connections()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> LocalHub:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- server-side views for tests (no HTTP, not recorded) -------------------------------------

    @staticmethod
    def _key(repo_id: str, repo_type: str) -> RepoKey:
        ns, _, name = repo_id.partition("/")
        return RepoKey(repo_type, ns, name)

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str | None:
        meta = self.store.repo(self._key(repo_id, repo_type))
        return None if meta is None else meta["heads"].get(branch)

    def history(self, repo_id: str, rev: str = "main", repo_type: str = "model") -> list[dict]:
        key = self._key(repo_id, repo_type)
        return [{"id": sha, **obj} for sha, obj in self.store.history(self.store.resolve(key, rev))]

    def files(self, repo_id: str, rev: str = "main", repo_type: str = "model") -> dict[str, dict]:
        key = self._key(repo_id, repo_type)
        return dict(self.store.tree(self.store.resolve(key, rev)))

    def read(self, repo_id: str, path: str, rev: str = "main", repo_type: str = "model") -> bytes:
        entry = self.files(repo_id, rev, repo_type)[path]
        if entry["lfs"]:
            return self.store.lfs_path(entry["lfs"]["oid"]).read_bytes()
        return self.store.get_blob(entry["oid"])

    def tags(self, repo_id: str, repo_type: str = "model") -> dict[str, str]:
        meta = self.store.require_repo(self._key(repo_id, repo_type))
        return {name: v["commit"] for name, v in meta["tags"].items()}
