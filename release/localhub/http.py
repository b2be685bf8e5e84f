"""HTTP plumbing of the stand-in Hub: request bodies (length or chunked), answers, resets, routing.

Kept apart from the Hub semantics (routes.py) so a fault can cut a request at any byte of its body.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import re
import socket
import struct
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from .requestlog import RequestRecord
from .store import HubError

if TYPE_CHECKING:
    from . import LocalHub

COPY_CHUNK = 1 << 20


class Aborted(Exception):
    """The connection was reset on purpose (fault) or the client went away; nothing more to send."""


class BodyReader:
    """Reads a request body exactly once, counting bytes into the request record."""

    def __init__(self, rfile: Any, headers: Any, record: RequestRecord) -> None:
        self._rfile = rfile
        self._record = record
        self._chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self.length: int | None = None if self._chunked else int(headers.get("Content-Length") or 0)
        self._left = self.length or 0
        self._chunk_left = 0
        self._done = not self._chunked and self._left == 0

    def _read_raw(self, n: int) -> bytes:
        data = self._rfile.read(n)
        if len(data) < n:
            self._record.received += len(data)
            raise Aborted("client closed the connection mid-body")
        self._record.received += len(data)
        return data

    def read(self, n: int = -1) -> bytes:
        """Up to `n` bytes (all remaining if n < 0); b"" at the end."""
        if self._done:
            return b""
        if not self._chunked:
            want = self._left if n < 0 else min(n, self._left)
            data = self._read_raw(want)
            self._left -= len(data)
            self._done = self._left == 0
            return data
        out = bytearray()
        while not self._done and (n < 0 or len(out) < n):
            if self._chunk_left == 0:
                line = self._rfile.readline(1024)
                if not line:
                    raise Aborted("client closed the connection mid-body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self._rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    self._done = True
                    break
                self._chunk_left = size
            want = self._chunk_left if n < 0 else min(self._chunk_left, n - len(out))
            out += self._read_raw(want)
            self._chunk_left -= want
            if self._chunk_left == 0:
                self._rfile.readline(16)
        return bytes(out)

    def read_all(self) -> bytes:
        return self.read(-1)

    def chunks(self) -> Any:
        while chunk := self.read(COPY_CHUNK):
            yield chunk

    def drain(self) -> None:
        for _ in self.chunks():
            pass

    def json(self) -> Any:
        try:
            return json.loads(self.read_all() or b"null")
        except json.JSONDecodeError as exc:
            raise HubError(400, f"invalid JSON body: {exc}") from None

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.read_all().decode(), keep_blank_values=True)


Route = tuple[str, "re.Pattern[str]", str, Callable[..., None]]


class HubServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: LocalHub, routes: list[Route]) -> None:
        self.hub = hub
        self.routes = routes
        self.connections: set[socket.socket] = set()
        super().__init__(address, Handler)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubServer
    timeout = 120

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self.connection)

    def finish(self) -> None:
        self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # the request log replaces access logs
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    # ---- request --------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        self.query = parse_qs(split.query, keep_blank_values=True)
        self.record = hub.log.new(self.command, split.path, split.query)
        self.body = BodyReader(self.rfile, self.headers, self.record)
        self.lose_response = False
        try:
            route = self._match(split.path)
            if route is not None:
                self.record.route = route[0]
                if "ns" in route[2] and "name" in route[2]:
                    self.record.repo = f"{route[2]['ns']}/{route[2]['name']}"
                self.record.oid = route[2].get("oid")
            admin = split.path.startswith("/_localhub/")
            fault = None if admin else hub.faults.take(self.command, split.path)
            if fault is not None:
                self.record.fault = fault.kind
                self._apply_fault(fault)
            if route is None:
                raise HubError(404, f"no such endpoint: {self.command} {split.path}")
            _name, func, args = route
            func(self, **args)
        except Aborted:
            self.close_connection = True
        except HubError as exc:
            self._answer_error(exc)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                traceback.print_exc()
                self._answer_error(HubError(500, f"stand-in hub bug: {type(exc).__name__}: {exc}"))
                return
            # The Hub's storage is full: say so (507, which clients do not retry), no traceback.
            self.close_connection = True
            self._answer_error(HubError(507, "insufficient storage on the stand-in Hub (no space left on its disk)"))
        except Exception as exc:  # a bug in the stand-in: answer 500 so the test sees it
            traceback.print_exc()
            self._answer_error(HubError(500, f"stand-in hub bug: {type(exc).__name__}: {exc}"))

    def _match(self, path: str) -> tuple[str, Callable[..., None], dict[str, str]] | None:
        for method, pattern, name, func in self.server.routes:
            if method != self.command and not (method == "GET" and self.command == "HEAD"):
                continue
            m = pattern.match(path)
            if m:
                args = {k: unquote(v) for k, v in m.groupdict().items() if v is not None}
                return name, func, args
        return None

    def _apply_fault(self, fault: Any) -> None:
        hub = self.server.hub
        p = fault.params
        if fault.kind == "slow":
            time.sleep(float(p.get("delay", 1.0)))
        elif fault.kind == "status":
            self.body.drain()
            raise HubError(int(p.get("status", 500)), str(p.get("message", "injected fault")))
        elif fault.kind == "rate_limit":
            self.body.drain()
            headers = {name: str(p[param]) for name, param in (
                ("Retry-After", "retry_after"), ("RateLimit", "ratelimit"), ("RateLimit-Policy", "policy"))
                if p.get(param) is not None}
            raise HubError(429, str(p.get("message", "injected rate limit")), headers=headers)
        elif fault.kind in ("reset", "stall"):
            default = (self.body.length or 0) // 2
            self.body.read(int(p.get("after_bytes", default)))
            if fault.kind == "stall":
                hub.faults.wait_released(float(p.get("timeout", 60)))
            self.reset()
        elif fault.kind == "lost_response":
            self.lose_response = True
        elif fault.kind == "late":
            # Like a commit that timed out but completes server-side: the client sees the connection
            # drop at once, the request is applied `delay` seconds later.
            data = self.body.read_all()
            self.body = BodyReader(io.BytesIO(data), {"Content-Length": str(len(data))},
                                   RequestRecord(-1, "", "", ""))
            self._drop()
            time.sleep(float(p.get("delay", 0.5)))
            self.lose_response = True

    # ---- answers --------------------------------------------------------------------------------

    def _drop(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # close() alone waits for rfile/wfile to let go of the fd; shutdown() cuts the line now.
            self.connection.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.connection.close()
        self.close_connection = True

    def reset(self) -> None:
        """Drop the connection with a TCP reset, no answer."""
        self._drop()
        raise Aborted("reset")

    def answer(self, status: int, body: Any = None, headers: dict[str, str] | None = None,
               content_type: str = "application/json") -> None:
        if isinstance(body, (dict, list)) or (body is None and content_type == "application/json"):
            data = json.dumps(body if body is not None else {}).encode()
        else:
            data = body or b""
        self.body.drain()
        if self.lose_response:
            self.reset()
        self.record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def answer_stream(self, status: int, headers: dict[str, str], length: int, chunks: Any) -> None:
        self.body.drain()
        self.record.status = status
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            for chunk in chunks:
                self.wfile.write(chunk)

    def _answer_error(self, exc: HubError) -> None:
        headers = {"X-Error-Message": exc.message.replace("\n", " ")}
        if exc.code:
            headers["X-Error-Code"] = exc.code
        extra = dict(exc.extra)
        headers.update(extra.pop("headers", {}))
        body = {"error": exc.message, **extra}
        try:
            self.answer(exc.status, body, headers)
        except Aborted:
            self.close_connection = True
        except OSError:
            self.close_connection = True

    # ---- request helpers ------------------------------------------------------------------------

    def q(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def flag(self, name: str) -> bool:
        return (self.q(name) or "").lower() in ("1", "true", "yes")

    def bearer(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None
