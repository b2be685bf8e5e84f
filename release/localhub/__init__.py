"""A stand-in Hugging Face Hub: the wire subset the unmodified huggingface_hub client uses.

For tests now, and later for `release publish --local` rehearsals. Start it in-process:

    hub = LocalHub(root, tokens={"TOKEN": ["my-org"]}, chunk_size=4 << 20)
    url = hub.start()            # http://127.0.0.1:<port>; LFS bytes go to a second origin
    ...
    hub.stop()

or as a program: `python -m release.localhub --root DIR --port N --token my-org=TOKEN`.
Clients must set `HF_HUB_DISABLE_XET=1` (the stand-in speaks LFS, not Xet).

It is as strict as huggingface.co where a release can trip: one commit at a time per repository (409)
and a commit quota per repository (429), see limits.py (`hub.limits`, settable while it runs); a token
for every write (401 without, 403 without rights on the namespace) and private repos invisible (404)
to whoever may not read them, on every read route — tokens.py says what a token may do (roles and
fine-grained scopes; the historical `{token: [namespaces]}` form is a write token).

`hub.faults` injects faults at runtime (see faults.py); `hub.log` records every request (method,
path, route, bytes received, status) so tests can assert what was — or was not — sent. State lives
under `root` and survives a restart (the quota's counts do not).

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
from .limits import DEFAULT_COMMIT_QUOTA, CommitLimits
from .requestlog import RequestLog, RequestRecord
from .routes import API_ROUTES, STORAGE_ROUTES
from .store import FileChange, RepoKey, Store, now_iso
from .tokens import Token

__all__ = ["CommitLimits", "Fault", "FaultSet", "LocalHub", "RequestLog", "RequestRecord", "Token"]

TokenSpec = Token | str | Iterable[str] | Mapping[str, Any]


class LocalHub:
    def __init__(
        self,
        root: Path | str,
        tokens: Mapping[str, TokenSpec] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        storage_port: int = 0,
        multipart_threshold: int = 64 << 20,
        chunk_size: int = 16 << 20,
        page_size: int = 1000,
        expand_page_size: int = 50,
        commit_quota: tuple[int, float] | None = DEFAULT_COMMIT_QUOTA,
        commit_seconds: float = 0.0,
    ) -> None:
        self.store = Store(Path(root))
        self.tokens: dict[str, Token] = {tok: Token.parse(spec) for tok, spec in (tokens or {}).items()}
        self.limits = CommitLimits(commit_quota, commit_seconds)
        self.started_at = now_iso()  # when the tokens were issued, as whoami-v2 tells
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

    # ---- server-side set-up for tests at a real release's size (no HTTP, not limited) ------------

    def add_sparse_lfs(self, oid: str, size: int) -> None:
        """An LFS object of `size` bytes taken as stored under `oid` without writing its bytes (a sparse
        file of zeros: its content does not hash to `oid`), so a test can stage a 400 GB release."""
        self.store.add_sparse_lfs(oid, size)

    def commit_files(self, repo_id: str, files: Mapping[str, bytes | tuple[str, int]], *, branch: str = "main",
                     title: str = "seed", repo_type: str = "model") -> str:
        """Commit on the server: path → content, or (sha256, size) of a stored LFS object."""
        changes = [FileChange("file", p, content=v) if isinstance(v, bytes)
                   else FileChange("lfs", p, sha256=v[0], size=v[1]) for p, v in files.items()]
        return self.store.commit(self._key(repo_id, repo_type), branch, changes, title, "", None)
