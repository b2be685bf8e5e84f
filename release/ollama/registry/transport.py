"""The registry client's transport and auth: connections, streamed part bodies, retries, signed tokens.

Why our own small HTTP layer on http.client: the protocol needs exact control that general clients
hide — no automatic redirects on uploads (ollama.com answers a part PATCH with 307 to storage), a
`Content-Range: <start>-<end>` without "bytes=", streamed parts read straight from the multi-GB blob,
and per-step decisions after a failure (ask the registry what it has instead of resending blindly).
Tokens and the signing key never appear in logs or errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import ipaddress
import json
import logging
import random
import select
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin, urlsplit

from ...errors import InputError, RemoteError
from ..auth import Challenge, SigningKey, load_key, parse_challenge, signed_data, token_url

log = logging.getLogger("release.ollama")

RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_CONN_ERRORS = (ConnectionError, http.client.HTTPException, socket.timeout, TimeoutError, OSError)


class Retryable(Exception):
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


class Slice:
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def path_only(url: str) -> str:
    # Upload URLs carry registry state in the query; logs and errors show the path only.
    return urlsplit(url).path


class Transport:
    """Connections to one registry, one logical request at a time (auth, retries, redirects)."""

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
            if isinstance(body, Slice):
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
            raise Retryable(f"{method} {path_only(url)}: {type(exc).__name__}: {exc}") from None
        if early is not None or resp.getheader("Connection", "").lower() == "close":
            # After an early answer the request body was cut short: the connection cannot be reused.
            self._drop(parts.scheme, parts.netloc)
        return Response(resp.status, resp.headers, data, url)

    def _send_fresh(self, method: str, url: str, headers: Mapping[str, str], body: Slice) -> Response:
        """A request on its own connection (thread-safe: the shared connections are not)."""
        parts = urlsplit(url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn = self._new_conn(parts.scheme, parts.netloc)
        try:
            early = self._send_streamed(conn, method, target, headers, body)
            resp = self._response(conn, method, early)
            data = resp.read()
        except _CONN_ERRORS as exc:
            raise Retryable(f"{method} {path_only(url)}: {type(exc).__name__}: {exc}") from None
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
                       headers: Mapping[str, str], body: Slice) -> bytes | None:
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
            except Retryable as exc:
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
                log.warning("%s %s: HTTP %d; retrying", method, path_only(url), resp.status)
                self._sleep(attempt, resp)
                attempt += 1
                continue
            if follow and resp.status in (301, 302, 303, 307, 308) and resp.header("Location"):
                redirects += 1
                if redirects > 10:
                    raise RemoteError(f"{self.host}: too many redirects for {method} {path_only(url)}")
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
