"""Push, pull and verify Ollama tags over the registry protocol (ollama.com or any OCI registry).

Why our own small HTTP layer on http.client: the protocol needs exact control that general clients
hide — no automatic redirects on uploads (ollama.com answers a part PATCH with 307 to storage), a
`Content-Range: <start>-<end>` without "bytes=", streamed parts read straight from the multi-GB blob,
and per-step decisions after a failure (ask the registry what it has instead of resending blindly).

Guarantees:
- Every blob is checked with HEAD first; a blob the repository already has is never sent again, so a
  rerun of a finished publish sends no blob bytes and no manifest that is already there.
- A failed part (5xx, 429, connection reset) is retried with backoff after asking the upload session
  how far it got; a session the registry dropped is restarted from zero.
- No manifest is sent before a HEAD has confirmed every blob it names (digest and size), and every
  manifest is read back (docker v2 Accept) and compared byte for byte afterwards.
- Tokens and the signing key never appear in logs or errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import ipaddress
import json
import logging
import os
import random
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

from ..errors import InputError, RemoteError
from ..fsutil import atomic_write_text
from . import layers as L
from . import store
from .auth import Challenge, SigningKey, load_key, parse_challenge, signed_data, token_url
from .build import TagBuild

log = logging.getLogger("release.ollama")

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
MIN_PART = 100_000_000
MAX_PART = 1_000_000_000
_CONN_ERRORS = (ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError, OSError)


def part_size(total: int) -> int:
    """ollama's part size: total/16 clamped to [100 MB, 1000 MB] (decimal)."""
    return max(MIN_PART, min(MAX_PART, total // 16))


class _Retryable(Exception):
    """A failure worth another try (the registry or the network may recover)."""


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    url: str
    streamed: tuple[str, int] | None = None  # (sha256 hex, size) when the body went to a file

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def error_text(self) -> str:
        try:
            errs = json.loads(self.body).get("errors") or []
            return "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errs)[:300]
        except (ValueError, AttributeError):
            return self.body[:200].decode("utf-8", "replace")


class _Slice:
    """A file region as a readable body; md5 of what was read (ollama's multipart etag)."""

    def __init__(self, path: Path, start: int, length: int) -> None:
        self._fh = open(path, "rb")  # noqa: SIM115 - closed by close() after the request
        self._fh.seek(start)
        self._left = length
        self.md5 = hashlib.md5()

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        n = self._left if n is None or n < 0 else min(n, self._left)
        data = self._fh.read(n)
        self._left -= len(data)
        self.md5.update(data)
        return data

    def close(self) -> None:
        self._fh.close()


class _PrefixedRaw(io.RawIOBase):
    def __init__(self, prefix: bytes, raw: IO[bytes]) -> None:
        self._prefix = prefix
        self._raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._raw.readinto(b)  # type: ignore[attr-defined]


class _PrefixedSocket:
    """What http.client.HTTPResponse needs of a socket: bytes already received, then the socket."""

    def __init__(self, prefix: bytes, sock: socket.socket) -> None:
        self._prefix = prefix
        self._sock = sock

    def makefile(self, mode: str, *args: Any, **kwargs: Any) -> IO[bytes]:
        return io.BufferedReader(_PrefixedRaw(self._prefix, self._sock.makefile("rb", buffering=0)))


def _answer_waiting(sock: socket.socket, timeout: float) -> bytes | None:
    """Bytes of a response that already arrived, or None (nothing yet).

    On TLS a readable socket may only hold session tickets or other records without data: read
    without blocking and count only application bytes. Raises ConnectionError if the peer closed.
    """
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return None
    sock.setblocking(False)
    try:
        data = sock.recv(65536)
    except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
        return None
    finally:
        sock.settimeout(timeout)
    if not data:
        raise ConnectionResetError("server closed the connection while the part was being sent")
    return data


def _part_md5(path: Path, offset: int, end: int) -> bytes:
    s = _Slice(path, offset, end - offset + 1)
    try:
        while s.read(1 << 20):
            pass
    finally:
        s.close()
    return s.md5.digest()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _add_query(url: str, query: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _path_only(url: str) -> str:
    # Upload URLs carry registry state in the query; logs and errors show the path only.
    return urlsplit(url).path


class RegistryClient:
    """One registry (e.g. https://registry.ollama.ai or http://127.0.0.1:5000)."""

    def __init__(self, url: str, *, insecure: bool = False, key_path: Path | str | None = None,
                 part_size: int | None = None, retries: int = 6, backoff: float = 0.5,
                 timeout: float = 120.0, signing_key: SigningKey | None = None, parallel: int = 8,
                 ssl_context: ssl.SSLContext | None = None, state_file: Path | None = None) -> None:
        if "://" not in url:
            url = ("http://" if insecure else "https://") + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"not a registry URL: {url!r}", field="ollama.registry")
        if parts.scheme == "http" and not (insecure or _is_loopback(parts.hostname)):
            raise InputError(f"plain http to {parts.hostname} needs insecure = true (only loopback is exempt)",
                             field="ollama.registry")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.host = parts.netloc
        self.hostname = parts.hostname
        self.part_size = part_size
        self.parallel = parallel  # concurrent storage PUTs of redirected parts (ollama uses up to 16)
        self.ssl_context = ssl_context  # None: the system's trust store
        self.state_file = state_file  # unfinished upload sessions, for the next run to resume
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self._key_path = key_path
        self._key = signing_key
        self._tokens: dict[str, str] = {}
        self._conns: dict[tuple[str, str], http.client.HTTPConnection] = {}
        self.requests = 0  # counted for tests and the publish summary

    # ---- transport ---------------------------------------------------------------------------

    def _conn(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        key = (scheme, netloc)
        conn = self._conns.get(key)
        if conn is None:
            conn = self._new_conn(scheme, netloc)
            self._conns[key] = conn
        return conn

    def _new_conn(self, scheme: str, netloc: str) -> http.client.HTTPConnection:
        # 1 MiB send blocks: http.client's 8 KiB default caps a multi-GB upload at a few MB/s of syscalls.
        if scheme == "https":
            return http.client.HTTPSConnection(netloc, timeout=self.timeout, blocksize=1 << 20,
                                               context=self.ssl_context)
        return http.client.HTTPConnection(netloc, timeout=self.timeout, blocksize=1 << 20)

    def _drop(self, scheme: str, netloc: str) -> None:
        conn = self._conns.pop((scheme, netloc), None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for key in list(self._conns):
            self._drop(*key)

    def _send_once(self, method: str, url: str, headers: Mapping[str, str], body: bytes | IO[bytes] | None,
                   *, read_body: bool = True, sink: Path | None = None) -> Response:
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._conn(parts.scheme, parts.netloc)
        self.requests += 1
        early: bytes | None = None
        try:
            if isinstance(body, _Slice):
                early = self._send_streamed(conn, method, target, headers, body)
            else:
                conn.request(method, target, body=body, headers=dict(headers))
            resp = self._response(conn, method, early)
            if sink is not None and resp.status == 200:
                # Multi-GB blobs go to disk as they arrive, hashed on the way.
                h, n = hashlib.sha256(), 0
                with open(sink, "wb") as fh:
                    while chunk := resp.read(1 << 20):
                        fh.write(chunk)
                        h.update(chunk)
                        n += len(chunk)
                return Response(resp.status, resp.headers, b"", url, streamed=(h.hexdigest(), n))
            # Always drain (HEAD included): http.client refuses the next request on this connection
            # until the previous response is read to its end.
            data = resp.read()
            if not read_body:
                data = b""
        except _CONN_ERRORS as exc:
            self._drop(parts.scheme, parts.netloc)
            raise _Retryable(f"{method} {_path_only(url)}: {type(exc).__name__}: {exc}") from None
        if early is not None or resp.getheader("Connection", "").lower() == "close":
            # After an early answer the request body was cut short: the connection cannot be reused.
            self._drop(parts.scheme, parts.netloc)
        return Response(resp.status, resp.headers, data, url)

    def _send_fresh(self, method: str, url: str, headers: Mapping[str, str], body: _Slice) -> Response:
        """A request on its own connection (thread-safe: the shared connections are not)."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._new_conn(parts.scheme, parts.netloc)
        try:
            early = self._send_streamed(conn, method, target, headers, body)
            resp = self._response(conn, method, early)
            data = resp.read()
        except _CONN_ERRORS as exc:
            raise _Retryable(f"{method} {_path_only(url)}: {type(exc).__name__}: {exc}") from None
        finally:
            conn.close()
        return Response(resp.status, resp.headers, data, url)

    @staticmethod
    def _response(conn: http.client.HTTPConnection, method: str,
                  early: bytes | None) -> http.client.HTTPResponse:
        if early is None:
            return conn.getresponse()
        # The answer started arriving before the body was sent: parse it from the bytes already read.
        resp = http.client.HTTPResponse(_PrefixedSocket(early, conn.sock), method=method)  # type: ignore[arg-type]
        resp.begin()
        return resp

    def _send_streamed(self, conn: http.client.HTTPConnection, method: str, target: str,
                       headers: Mapping[str, str], body: _Slice) -> bytes | None:
        """Send a part; if the server answers before it is all sent, stop and return the answer's first bytes.

        ollama.com answers a part PATCH with 307 to storage without reading the part; http.client
        would keep writing into a closing connection and lose that answer, so look before each block.
        """
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        sock = conn.sock
        while chunk := body.read(1 << 20):
            early = _answer_waiting(sock, self.timeout)
            if early is not None:
                return early
            sock.sendall(chunk)
        return None

    def _sleep(self, attempt: int, resp: Response | None = None) -> None:
        delay = self.backoff * (2 ** attempt) * (0.75 + random.random() / 2)
        if resp is not None and resp.status == 429:
            with contextlib.suppress(ValueError):
                delay = max(delay, min(float(resp.header("Retry-After") or 0), 60.0))
        time.sleep(min(delay, 60.0))

    def _authorized(self, headers: dict[str, str], scope: str | None) -> dict[str, str]:
        token = self._tokens.get(scope or "")
        if token:
            headers = {**headers, "Authorization": f"Bearer {token}"}
        return headers

    def request(self, method: str, url: str, *, scope: str | None = None, headers: Mapping[str, str] | None = None,
                body: bytes | Callable[[], IO[bytes]] | None = None, retry: bool = True,
                follow: bool = False, sink: Path | None = None) -> Response:
        """One logical request: signed-auth on 401, retries on 5xx/429/resets when `retry`."""
        url = urljoin(self.base + "/", url)
        attempt = 0
        authed = False
        redirects = 0
        while True:
            hdrs = self._authorized(dict(headers or {}), scope)
            payload: Any = body() if callable(body) else body
            try:
                resp = self._send_once(method, url, hdrs, payload, sink=sink)
            except _Retryable as exc:
                if not retry or attempt >= self.retries:
                    raise RemoteError(f"{self.host}: {exc} (gave up after {attempt + 1} tries)") from None
                log.warning("%s; retrying", exc)
                self._sleep(attempt)
                attempt += 1
                continue
            finally:
                if hasattr(payload, "close"):
                    payload.close()
            if resp.status == 401 and not authed and scope is not None:
                challenge = parse_challenge(resp.header("WWW-Authenticate") or "")
                if challenge is not None:
                    self._tokens[scope] = self._fetch_token(challenge)
                    authed = True
                    continue
            if resp.status in RETRY_STATUS and retry and attempt < self.retries:
                log.warning("%s %s: HTTP %d; retrying", method, _path_only(url), resp.status)
                self._sleep(attempt, resp)
                attempt += 1
                continue
            if follow and resp.status in (301, 302, 303, 307, 308) and resp.header("Location"):
                redirects += 1
                if redirects > 10:
                    raise RemoteError(f"{self.host}: too many redirects for {method} {_path_only(url)}")
                target = urljoin(url, resp.header("Location") or "")
                if urlsplit(target).netloc != urlsplit(url).netloc:
                    # Storage redirects are presigned: never carry the registry token to them.
                    scope = None
                url = target
                continue
            return resp

    def _reauth(self, resp: Response, scope: str) -> bool:
        """A 401 in the middle of an upload (token expired during a long part): new token, True."""
        if resp.status != 401:
            return False
        challenge = parse_challenge(resp.header("WWW-Authenticate") or "")
        if challenge is None:
            return False
        self._tokens[scope] = self._fetch_token(challenge)
        return True

    def _fetch_token(self, challenge: Challenge) -> str:
        realm_host = urlsplit(challenge.realm).hostname
        if realm_host != self.hostname:
            # ollama refuses this too: a token endpoint elsewhere would collect signatures for us.
            raise RemoteError(f"{self.host}: refusing auth realm on another host ({realm_host})")
        if self._key is None:
            self._key = load_key(self._key_path)
        url = token_url(challenge)
        auth = self._key.authorization(signed_data("GET", url))
        resp = self.request("GET", url, headers={"Authorization": auth})
        if resp.status in (401, 403):
            raise RemoteError(
                f"{self.host} refused the Ollama key from {self._key.source} ({self._key.fingerprint}) for "
                f"{challenge.scope or 'this registry'}: HTTP {resp.status} {resp.error_text()}. Link its public key "
                f"(the .pub beside it) to the account at ollama.com → Settings → Ollama keys, and check the "
                f"namespace belongs to that account.")
        if resp.status != 200:
            raise RemoteError(f"{self.host}: token request failed: HTTP {resp.status} {resp.error_text()}")
        try:
            token = json.loads(resp.body)["token"]
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"{self.host}: token endpoint answered without a token") from None
        if not isinstance(token, str) or not token:
            raise RemoteError(f"{self.host}: token endpoint answered an empty token")
        return token

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
            except _Retryable as exc:
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
            body = _Slice(path, offset, end - offset + 1)
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
                    raise _Retryable(f"PATCH {_path_only(loc)}: HTTP {resp.status}")
                else:
                    raise RemoteError(f"{self.host}: upload part {offset}-{end} of {blob.digest[:19]}: "
                                      f"HTTP {resp.status} {resp.error_text()}")
            except _Retryable as exc:
                tries += 1
                if tries > self.retries:
                    raise
                log.warning("%s; asking the registry how far the upload got", exc)
                self._sleep(tries - 1)
                resumed = self._upload_status(loc, scope)
                if resumed is None:
                    self._save_session(name, blob, None)
                    raise _Retryable(f"upload session lost after: {exc}") from None
                new_offset, loc = resumed
                if new_offset == offset:
                    continue
                if new_offset == end + 1:  # the part landed; only the answer was lost
                    md5s.append(_part_md5(path, offset, end))
                    sent += end - offset + 1
                    offset = new_offset
                    continue
                raise _Retryable(f"upload session at an unexpected offset {new_offset}") from None
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
        except _Retryable:
            resp = None
        if resp is None or resp.status in RETRY_STATUS or self._reauth(resp, scope):
            # The commit may have landed even though the answer did not; the outer loop HEADs first.
            raise _Retryable(f"final PUT of {blob.digest[:19]}: {'no answer' if resp is None else resp.status}")
        if resp.status not in (201, 204):
            raise RemoteError(f"{self.host}: commit of {blob.digest[:19]}: HTTP {resp.status} {resp.error_text()}")
        self._save_session(name, blob, None)
        self._confirm(name, blob)
        return "uploaded", sent

    def _put_redirected_part(self, url: str, path: Path, offset: int, end: int) -> bytes:
        """One part to a presigned storage URL (in a worker thread; no registry token goes there)."""
        for attempt in range(self.retries + 1):
            body = _Slice(path, offset, end - offset + 1)
            try:
                resp = self._send_fresh("PUT", url, {"Content-Length": str(end - offset + 1),
                                                   "Content-Type": "application/octet-stream"}, body)
            except _Retryable:
                resp = None
            finally:
                body.close()
            if resp is not None and 200 <= resp.status < 300:
                return body.md5.digest()
            if resp is not None and resp.status not in RETRY_STATUS:
                raise RemoteError(f"storage refused part {offset}-{end}: HTTP {resp.status}")
            self._sleep(attempt)
        raise _Retryable(f"part {offset}-{end} to storage kept failing")

    def _upload_status(self, loc: str, scope: str) -> tuple[int, str] | None:
        """(bytes the session holds, its next URL), or None when it cannot tell (start over)."""
        try:
            resp = self._send_once("GET", loc, self._authorized({}, scope), None)
        except _Retryable:
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


# ---- tags ------------------------------------------------------------------------------------------

@dataclass
class PushResult:
    blobs: dict[str, str] = field(default_factory=dict)  # digest → exists | mounted | uploaded
    bytes_sent: dict[str, int] = field(default_factory=dict)  # digest → bytes sent
    manifests_put: list[str] = field(default_factory=list)
    manifests_unchanged: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)  # tag → registry manifest digest

    @property
    def total_sent(self) -> int:
        return sum(self.bytes_sent.values())


def _unique_blobs(builds: Iterable[TagBuild]) -> list[tuple[L.Blob, Path]]:
    seen: dict[str, tuple[L.Blob, Path]] = {}
    for b in builds:
        for blob in b.blobs:
            seen.setdefault(blob.digest, (blob, b.blob_file(blob)))
    return list(seen.values())


def _manifest_refs(builds: list[TagBuild], latest: str | None) -> list[tuple[str, TagBuild]]:
    refs = [(b.tag, b) for b in builds]
    if latest:
        target = next((b for b in builds if b.tag == latest), None)
        if target is None:
            raise InputError(f"latest {latest!r} is not one of the built tags", field="ollama.latest")
        refs.append(("latest", target))
    return refs


def push_tags(client: RegistryClient, name: str, builds: list[TagBuild], latest: str | None, *,
              mount_from: Iterable[str] = (), on_progress: Callable[[str], None] | None = None) -> PushResult:
    """Push every tag and the `latest` alias, then read every manifest back: `push_blobs`, then
    `put_manifests`. A failure before the manifests leaves no new or changed tag."""
    result = push_blobs(client, name, builds, mount_from=mount_from, on_progress=on_progress)
    return put_manifests(client, name, builds, latest, result=result, on_progress=on_progress)


def push_blobs(client: RegistryClient, name: str, builds: list[TagBuild], *, mount_from: Iterable[str] = (),
               on_progress: Callable[[str], None] | None = None, result: PushResult | None = None) -> PushResult:
    """Every blob of the tags, each once (HEAD first), then HEAD of each: no manifest is involved, so the
    registry shows nothing new. A blob the build does not hold locally (a model pushed by the machine that
    made its GGUF) must already be on the registry."""
    say = on_progress or (lambda _msg: None)
    result = result or PushResult()
    for blob, path in _unique_blobs(builds):
        if not path.is_file() and client.blob_size(name, blob.digest, push=True) == blob.size:
            result.blobs[blob.digest] = "exists"
            result.bytes_sent[blob.digest] = 0
            continue
        if not path.is_file() or path.stat().st_size != blob.size:
            raise InputError(f"blob missing or wrong size in the build (rebuild ollama): {path}",
                             file=str(path))
        how, sent = client.upload_blob(name, blob, path, mount_from=mount_from)
        result.blobs[blob.digest] = how
        result.bytes_sent[blob.digest] = sent
        kind = "config" if blob.media_type == L.MT_CONFIG else blob.media_type.rsplit(".", 1)[-1]
        say(f"{kind} {blob.digest[7:19]}: {how} ({sent} bytes)")
    # A manifest naming a blob the registry lacks would be refused, or worse, accepted and unpullable.
    for blob, _ in _unique_blobs(builds):
        size = client.blob_size(name, blob.digest, push=True)
        if size != blob.size:
            raise RemoteError(f"{client.host}: {name} lacks blob {blob.digest[:19]} (size {size}, expected "
                              f"{blob.size}); no manifest was sent")
    return result


def put_manifests(client: RegistryClient, name: str, builds: list[TagBuild], latest: str | None, *,
                  result: PushResult | None = None,
                  on_progress: Callable[[str], None] | None = None) -> PushResult:
    """PUT the manifests that differ (tags, then `latest`), then read every one back."""
    say = on_progress or (lambda _msg: None)
    result = result or PushResult()
    for ref, build in _manifest_refs(builds, latest):
        current = client.get_manifest(name, ref)
        if current is not None and current[0] == build.manifest:
            result.manifests_unchanged.append(ref)
        else:
            client.put_manifest(name, ref, build.manifest)
            result.manifests_put.append(ref)
            say(f"{name}:{ref} → {build.manifest_digest[7:19]}")
        result.digests[ref] = build.manifest_digest
    problems = verify_tags(client, name, builds, latest)
    if problems:
        raise RemoteError(f"{client.host}: read-back of {name} does not match the build:\n  " + "\n  ".join(problems))
    return result


def verify_tags(client: RegistryClient, name: str, builds: list[TagBuild], latest: str | None, *,
                deep: bool = False, check_model_digest: bool = True) -> list[str]:
    """Read every tag back; returns problems (empty = the registry serves exactly the build).

    `deep` downloads and hashes every small blob too (config, params, template …). With
    `check_model_digest=False` (the ollama-CLI path, which rewrites the GGUF) the manifest may differ
    from ours in the model layer only; everything else is still compared.
    """
    problems: list[str] = []
    checked: set[str] = set()
    for ref, build in _manifest_refs(builds, latest):
        got = client.get_manifest(name, ref)
        if got is None:
            problems.append(f"{name}:{ref}: missing")
            continue
        data, header_digest = got
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if header_digest and header_digest != digest:
            problems.append(f"{name}:{ref}: Docker-Content-Digest {header_digest[:19]} ≠ body {digest[:19]}")
        try:
            doc = json.loads(data)
            remote = [doc["config"], *doc["layers"]]
        except (ValueError, KeyError, TypeError):
            problems.append(f"{name}:{ref}: manifest is not a docker v2 manifest")
            continue
        if check_model_digest and data != build.manifest:
            problems.append(f"{name}:{ref}: manifest {digest[:19]} ≠ built {build.manifest_digest[:19]}")
        expected = [build.config, *build.layers]
        if [r.get("mediaType") for r in remote] != [b.media_type for b in expected]:
            problems.append(f"{name}:{ref}: layer media types differ from the build")
            continue
        for r, b in zip(remote, expected, strict=True):
            # The CLI path rewrites the GGUF, and older ollama adds rootfs to the config: compare
            # those two by facts, everything else byte for byte.
            skip_digest = not check_model_digest and b.media_type in (L.MT_MODEL, L.MT_CONFIG)
            if not skip_digest and (r.get("digest") != b.digest or r.get("size") != b.size):
                problems.append(f"{name}:{ref}: {b.media_type.rsplit('.', 1)[-1]} is {r.get('digest', '')[:19]}/"
                                f"{r.get('size')} not {b.digest[:19]}/{b.size}")
            rd = r.get("digest", "")
            if rd in checked:
                continue
            checked.add(rd)
            size = client.blob_size(name, rd)
            if size is None or size != r.get("size"):
                problems.append(f"{name}:{ref}: blob {rd[:19]} size {size} ≠ manifest {r.get('size')}")
            elif (deep or not check_model_digest) and b.media_type != L.MT_MODEL:
                resp = client.request("GET", f"/v2/{name}/blobs/{rd}", scope=client.scope(name), follow=True)
                if resp.status != 200 or "sha256:" + hashlib.sha256(resp.body).hexdigest() != rd:
                    problems.append(f"{name}:{ref}: blob {rd[:19]} content does not hash to its digest")
                elif b.media_type == L.MT_CONFIG:
                    problems.extend(f"{name}:{ref}: {p}" for p in _config_problems(resp.body, build))
    return problems


def _config_problems(data: bytes, build: TagBuild) -> list[str]:
    try:
        cfg = json.loads(data)
    except ValueError:
        return ["config is not JSON"]
    out = []
    for key, fact in (("model_family", "family"), ("model_type", "model_type"), ("file_type", "file_type"),
                      ("renderer", "renderer"), ("parser", "parser")):
        want = build.facts.get(fact)
        if want and cfg.get(key) != want:
            out.append(f"config {key} is {cfg.get(key)!r}, expected {want!r}")
    return out


@dataclass
class PlanEntry:
    ref: str  # tag, or "blob"
    what: str  # digest or "manifest"
    action: str  # upload | unchanged
    size: int


def plan_tags(client: RegistryClient, name: str, builds: list[TagBuild], latest: str | None) -> list[PlanEntry]:
    """What a push would send (read-only): per blob and per manifest, upload or unchanged."""
    plan: list[PlanEntry] = []
    for blob, _ in _unique_blobs(builds):
        has = client.blob_size(name, blob.digest) == blob.size
        plan.append(PlanEntry("blob", blob.digest, "unchanged" if has else "upload", blob.size))
    for ref, build in _manifest_refs(builds, latest):
        got = client.get_manifest(name, ref)
        same = got is not None and got[0] == build.manifest
        plan.append(PlanEntry(ref, "manifest", "unchanged" if same else "upload", len(build.manifest)))
    return plan


def remote_tags(client: RegistryClient, name: str) -> list[str] | None:
    """Tags the repository has (`tags/list`), or None where the registry does not list them (ollama.com)."""
    resp = client.request("GET", f"/v2/{name}/tags/list", scope=client.scope(name))
    if resp.status == 404:
        return []
    if resp.status != 200:
        return None
    try:
        tags = json.loads(resp.body).get("tags") or []
    except (ValueError, AttributeError):
        return None
    return [t for t in tags if isinstance(t, str)]


def pull_tag(client: RegistryClient, name: str, ref: str, dest_store: Path) -> Path:
    """Pull one tag into an OLLAMA_MODELS folder as `ollama pull` does (manifest bytes verbatim)."""
    got = client.get_manifest(name, ref)
    if got is None:
        raise RemoteError(f"{client.host}: {name}:{ref} not found")
    data, _ = got
    doc = json.loads(data)
    for desc in [*doc["layers"], doc["config"]]:
        dest = store.blob_path(dest_store, desc["digest"])
        if dest.exists() and dest.stat().st_size == desc["size"]:
            continue
        size = client.get_blob(name, desc["digest"], dest)
        if size != desc["size"]:
            raise RemoteError(f"{client.host}: blob {desc['digest'][:19]} is {size} bytes, "
                              f"manifest says {desc['size']}")
    return store.write_manifest(dest_store, client.host, name, ref, data)
