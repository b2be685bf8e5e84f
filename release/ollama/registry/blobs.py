"""The registry client's blob and manifest operations: HEAD, GET, PUT, and resumable chunked uploads.

Every blob is checked with HEAD first; a blob the repository already has is never sent again. A failed part
(5xx, 429, connection reset) is retried with backoff after asking the upload session how far it got; a
session the registry dropped is restarted from zero.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from ...errors import RemoteError
from ...fsutil import atomic_write_text
from .. import layers as L
from .transport import RETRY_STATUS, Response, Retryable, Slice, Transport, path_only

log = logging.getLogger("release.ollama")

MIN_PART = 100_000_000
MAX_PART = 1_000_000_000


def part_size(total: int) -> int:
    """ollama's part size: total/16 clamped to [100 MB, 1000 MB] (decimal)."""
    return max(MIN_PART, min(MAX_PART, total // 16))


def _part_md5(path: Path, offset: int, end: int) -> bytes:
    s = Slice(path, offset, end - offset + 1)
    try:
        while s.read(1 << 20):
            pass
    finally:
        s.close()
    return s.md5.digest()


def _add_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


class RegistryClient(Transport):
    """One registry (e.g. https://registry.ollama.ai or http://127.0.0.1:5000)."""

    # ---- registry operations ---------------------------------------------------------------------

    @staticmethod
    def scope(name: str, push: bool = False) -> str:
        return f"repository:{name}:{'push,pull' if push else 'pull'}"

    def blob_size(self, name: str, digest: str, *, push: bool = False) -> int | None:
        """Size of the blob in `name` (HEAD), or None when the repository does not have it."""
        resp = self.request("HEAD", f"/v2/{name}/blobs/{digest}", scope=self.scope(name, push), follow=True)
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise RemoteError(f"{self.host}: HEAD blob {digest[:19]} in {name}: HTTP {resp.status}")
        remote_digest = resp.header("Docker-Content-Digest")
        if remote_digest and remote_digest != digest:
            raise RemoteError(f"{self.host}: blob {digest[:19]} answered as {remote_digest[:19]}")
        length = resp.header("Content-Length")
        return int(length) if length is not None else None

    def get_manifest(self, name: str, ref: str) -> tuple[bytes, str | None] | None:
        """(bytes, Docker-Content-Digest) of a manifest, or None when the tag does not exist."""
        resp = self.request("GET", f"/v2/{name}/manifests/{ref}", scope=self.scope(name),
                            headers={"Accept": L.MT_MANIFEST})
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise RemoteError(f"{self.host}: GET manifest {name}:{ref}: HTTP {resp.status} {resp.error_text()}")
        return resp.body, resp.header("Docker-Content-Digest")

    def put_manifest(self, name: str, ref: str, data: bytes) -> str:
        resp = self.request("PUT", f"/v2/{name}/manifests/{ref}", scope=self.scope(name, True),
                            headers={"Content-Type": L.MT_MANIFEST}, body=data)
        if resp.status not in (200, 201):
            raise RemoteError(f"{self.host}: PUT manifest {name}:{ref}: HTTP {resp.status} {resp.error_text()}")
        return resp.header("Docker-Content-Digest") or ""

    def get_blob(self, name: str, digest: str, dest: Path) -> int:
        """Download a blob to `dest` (streamed, renamed when complete), checking its sha256; returns its size.

        A broken download is retried from the start (no Range resume: our blobs are pulled for checks).
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.partial")
        try:
            resp = self.request("GET", f"/v2/{name}/blobs/{digest}", scope=self.scope(name), follow=True, sink=tmp)
            if resp.status != 200 or resp.streamed is None:
                raise RemoteError(f"{self.host}: GET blob {digest[:19]}: HTTP {resp.status}")
            got, size = resp.streamed
            if f"sha256:{got}" != digest:
                raise RemoteError(f"{self.host}: blob {digest[:19]} arrived with digest sha256:{got[:12]}")
            os.replace(tmp, dest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        return size

    # ---- upload ------------------------------------------------------------------------------------

    def upload_blob(self, name: str, blob: L.Blob, path: Path, *, mount_from: Iterable[str] = ()) -> tuple[str, int]:
        """Make sure `name` has `blob`; returns (how, bytes sent): exists | mounted | uploaded."""
        scope = self.scope(name, True)
        failures = 0
        while True:
            if self.blob_size(name, blob.digest, push=True) == blob.size:
                return "exists", 0
            try:
                return self._upload_session(name, blob, path, scope, list(mount_from))
            except Retryable as exc:
                failures += 1
                if failures > self.retries:
                    raise RemoteError(f"{self.host}: upload of {blob.digest[:19]} to {name} kept failing: "
                                      f"{exc}") from None
                log.warning("upload of %s restarts: %s", blob.digest[:19], exc)
                self._sleep(failures - 1)

    def _start(self, name: str, blob: L.Blob, scope: str, mount_from: list[str]) -> tuple[str | None, bool]:
        for source in mount_from:
            if source == name:
                continue
            resp = self.request("POST", f"/v2/{name}/blobs/uploads/?mount={blob.digest}&from={source}", scope=scope)
            if resp.status == 201:
                return None, True
            if resp.status == 202:
                return self._next_url(resp), False
        resp = self.request("POST", f"/v2/{name}/blobs/uploads/", scope=scope)
        if resp.status != 202:
            raise RemoteError(f"{self.host}: start upload to {name}: HTTP {resp.status} {resp.error_text()}")
        return self._next_url(resp), False

    def _next_url(self, resp: Response) -> str:
        loc = resp.header("Docker-Upload-Location") or resp.header("Location")
        if not loc:
            raise RemoteError(f"{self.host}: upload response without a Location")
        return urljoin(resp.url, loc)

    def _upload_session(self, name: str, blob: L.Blob, path: Path, scope: str,
                        mount_from: list[str]) -> tuple[str, int]:
        loc, offset, md5s = self._resume_saved(name, blob, scope)
        if loc is None:
            loc, mounted = self._start(name, blob, scope, mount_from)
            if mounted:
                self._confirm(name, blob)
                return "mounted", 0
        assert loc is not None
        chunk = self.part_size or part_size(blob.size)
        # Redirected parts (ollama.com) go to storage in parallel, as ollama does; the PATCHes that hand
        # out their URLs stay in order, since each answer carries the next upload URL.
        pool = ThreadPoolExecutor(max_workers=self.parallel, thread_name_prefix="ollama-part")
        try:
            return self._upload_parts(name, blob, path, scope, loc, chunk, pool, md5s, offset)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    # An interrupted run leaves its upload session in `state_file` (plain registries only: ollama.com's
    # parts live in storage we cannot query), so the next run continues where it stopped.

    def _session_key(self, name: str, blob: L.Blob) -> str:
        return f"{self.base}/{name}@{blob.digest}"

    def _sessions(self) -> dict[str, Any]:
        if self.state_file is None or not self.state_file.exists():
            return {}
        try:
            data = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _save_session(self, name: str, blob: L.Blob, entry: dict[str, Any] | None) -> None:
        if self.state_file is None:
            return
        sessions = self._sessions()
        key = self._session_key(name, blob)
        if entry is None:
            if key not in sessions:
                return
            sessions.pop(key)
        else:
            sessions[key] = entry
        atomic_write_text(self.state_file, json.dumps(sessions, indent=1) + "\n")

    def _resume_saved(self, name: str, blob: L.Blob, scope: str) -> tuple[str | None, int, list[Any]]:
        saved = self._sessions().get(self._session_key(name, blob))
        if not saved:
            return None, 0, []
        status = self._upload_status(saved["loc"], scope)
        if status is None or status[0] != saved["offset"]:
            self._save_session(name, blob, None)
            return None, 0, []
        log.info("%s: resuming an earlier upload at byte %d", blob.digest[7:19], status[0])
        return status[1], status[0], [bytes.fromhex(h) for h in saved["md5s"]]

    def _upload_parts(self, name: str, blob: L.Blob, path: Path, scope: str, loc: str, chunk: int,
                      pool: ThreadPoolExecutor, md5s: list[bytes | Future[bytes]], offset: int) -> tuple[str, int]:
        sent, tries = 0, 0
        while offset < blob.size:
            end = min(offset + chunk, blob.size) - 1
            body = Slice(path, offset, end - offset + 1)
            try:
                resp = self._send_once("PATCH", loc, self._authorized({
                    "Content-Type": "application/octet-stream", "Content-Length": str(end - offset + 1),
                    "Content-Range": f"{offset}-{end}", "X-Redirect-Uploads": "1"}, scope), body)
                part_md5: bytes | Future[bytes]
                if resp.status == 307 and resp.header("Location"):
                    part_md5 = pool.submit(self._put_redirected_part, urljoin(loc, resp.header("Location") or ""),
                                           path, offset, end)
                    next_loc = urljoin(loc, resp.header("Docker-Upload-Location") or loc)
                elif resp.status == 202:
                    next_loc = self._next_url(resp)
                    part_md5 = body.md5.digest()
                elif resp.status in RETRY_STATUS or self._reauth(resp, scope):
                    raise Retryable(f"PATCH {path_only(loc)}: HTTP {resp.status}")
                else:
                    raise RemoteError(f"{self.host}: upload part {offset}-{end} of {blob.digest[:19]}: "
                                      f"HTTP {resp.status} {resp.error_text()}")
            except Retryable as exc:
                tries += 1
                if tries > self.retries:
                    raise
                log.warning("%s; asking the registry how far the upload got", exc)
                self._sleep(tries - 1)
                resumed = self._upload_status(loc, scope)
                if resumed is None:
                    self._save_session(name, blob, None)
                    raise Retryable(f"upload session lost after: {exc}") from None
                new_offset, loc = resumed
                if new_offset == offset:
                    continue
                if new_offset == end + 1:  # the part landed; only the answer was lost
                    md5s.append(_part_md5(path, offset, end))
                    sent += end - offset + 1
                    offset = new_offset
                    continue
                raise Retryable(f"upload session at an unexpected offset {new_offset}") from None
            finally:
                body.close()
            md5s.append(part_md5)
            sent += end - offset + 1
            offset, loc, tries = end + 1, next_loc, 0
            if offset < blob.size and not any(isinstance(m, Future) for m in md5s):
                self._save_session(name, blob, {"loc": loc, "offset": offset,
                                                "md5s": [m.hex() for m in md5s if isinstance(m, bytes)]})
            if blob.size > chunk:
                # Multi-GB blobs take minutes; say how far they got (at INFO level).
                log.info("%s: %d of %d bytes sent", blob.digest[7:19], offset, blob.size)
        # Every storage PUT must have landed before the commit; a failed one restarts the session.
        digests = [m.result() if isinstance(m, Future) else m for m in md5s]
        etag = hashlib.md5(b"".join(digests)).hexdigest() + f"-{len(digests)}"
        try:
            resp = self._send_once("PUT", _add_query(loc, f"digest={blob.digest}&etag={etag}"),
                                   self._authorized({"Content-Length": "0"}, scope), b"")
        except Retryable:
            resp = None
        if resp is None or resp.status in RETRY_STATUS or self._reauth(resp, scope):
            # The commit may have landed even though the answer did not; the outer loop HEADs first.
            raise Retryable(f"final PUT of {blob.digest[:19]}: {'no answer' if resp is None else resp.status}")
        if resp.status not in (201, 204):
            raise RemoteError(f"{self.host}: commit of {blob.digest[:19]}: HTTP {resp.status} {resp.error_text()}")
        self._save_session(name, blob, None)
        self._confirm(name, blob)
        return "uploaded", sent

    def _put_redirected_part(self, url: str, path: Path, offset: int, end: int) -> bytes:
        """One part to a presigned storage URL (in a worker thread; no registry token goes there)."""
        for attempt in range(self.retries + 1):
            body = Slice(path, offset, end - offset + 1)
            try:
                resp = self._send_fresh("PUT", url, {"Content-Length": str(end - offset + 1),
                                                   "Content-Type": "application/octet-stream"}, body)
            except Retryable:
                resp = None
            finally:
                body.close()
            if resp is not None and 200 <= resp.status < 300:
                return body.md5.digest()
            if resp is not None and resp.status not in RETRY_STATUS:
                raise RemoteError(f"storage refused part {offset}-{end}: HTTP {resp.status}")
            self._sleep(attempt)
        raise Retryable(f"part {offset}-{end} to storage kept failing")

    def _upload_status(self, loc: str, scope: str) -> tuple[int, str] | None:
        """(bytes the session holds, its next URL), or None when it cannot tell (start over)."""
        try:
            resp = self._send_once("GET", loc, self._authorized({}, scope), None)
        except Retryable:
            return None
        rng = resp.header("Range") or ""
        if resp.status != 204 or "-" not in rng:
            return None
        try:
            last = int(rng.rsplit("-", 1)[1])
        except ValueError:
            return None
        if last == 0:
            return None  # "0-0" means 0 or 1 bytes; ambiguous, so start over
        return last + 1, self._next_url(resp)

    def _confirm(self, name: str, blob: L.Blob) -> None:
        size = self.blob_size(name, blob.digest, push=True)
        if size != blob.size:
            raise RemoteError(f"{self.host}: after upload, {blob.digest[:19]} in {name} has size {size}, "
                              f"expected {blob.size}")
