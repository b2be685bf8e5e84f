"""A loopback proxy in front of the test registry that injects faults and can demand signed auth.

Faults are rules matched in order against each request (method + path regex); each fires `times`
times:
  "500" / "503" / "429"   answer that status without forwarding ("400" too: a failure not retried)
  "reset"                 read the request, then reset the connection (the registry never saw it)
  "reset_after"           forward the request, then reset instead of answering (the registry did it)
  "reset_mid_body"        read half the body, then reset
  "fake_201"              answer 201 without forwarding (a registry that lies about a commit)
  "revoke_tokens"         forget every issued token first (expiry in the middle of an upload)
With `redirect_uploads`, the proxy plays ollama.com's upload flow: a part PATCH carrying
`X-Redirect-Uploads: 1` is answered 307 with `Location` = a storage URL (must be PUT without
Authorization) and `Docker-Upload-Location` = the next upload URL. Parts are kept as they arrive
(in parallel, any order) and written in offset order into the real registry session at the commit.
`redirect_uploads="early"` answers the 307 before reading the part, then drains it and closes.
With `auth_keys` (SSH-wire ed25519 public keys), every /v2/ request needs a Bearer token from
/v2/token, which verifies ollama's signature `GET,<url>,<base64(hex(sha256(body)))>` with those keys.
Everything stays on 127.0.0.1; the server stops when the test leaves its context.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


@dataclass
class Fault:
    method: str
    path: str  # regex searched in the request path (with query)
    action: str
    times: int = 1
    fired: int = 0


@dataclass
class Seen:
    method: str
    path: str
    status: int | None
    length: int


@dataclass
class ProxyState:
    upstream: str  # host:port
    faults: list[Fault] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    auth_keys: list[bytes] | None = None
    tokens: set[str] = field(default_factory=set)
    token_requests: int = 0
    redirect_uploads: bool | str = False  # True, or "early": answer 307 before reading the part
    early_drained: int = 0
    forwarded_proto: str = "http"  # told to the registry, which builds Location URLs from it
    # multipart session → (real registry upload URL, {part offset: bytes})
    sessions: dict[str, tuple[str, dict[int, bytes]]] = field(default_factory=dict)
    storage_puts: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, method: str, path: str) -> str | None:
        with self.lock:
            for f in self.faults:
                if f.fired < f.times and f.method == method and re.search(f.path, path):
                    f.fired += 1
                    return f.action
        return None

    def requests(self, method: str, pattern: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method == method and re.search(pattern, s.path)]


def _verify_signature(pub_wire: bytes, sig: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    # SSH wire format: string "ssh-ed25519", string <32-byte key>
    try:
        n = struct.unpack(">I", pub_wire[:4])[0]
        kind = pub_wire[4:4 + n]
        m = struct.unpack(">I", pub_wire[4 + n:8 + n])[0]
        raw = pub_wire[8 + n:8 + n + m]
        if kind != b"ssh-ed25519" or len(raw) != 32:
            return False
        Ed25519PublicKey.from_public_bytes(raw).verify(sig, data)
        return True
    except (InvalidSignature, struct.error, ValueError):
        return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()
        self.close_connection = True

    def _reply(self, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        st = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        if (st.redirect_uploads == "early" and self.command == "PATCH"
                and self.headers.get("X-Redirect-Uploads") == "1" and not self.path.startswith("/_storage/")):
            self._early_redirect(st, length)
            return
        action = st.take_fault(self.command, self.path)
        if action == "reset_mid_body":
            self.rfile.read(length // 2)
            st.seen.append(Seen(self.command, self.path, None, length))
            self._reset()
            return
        body = self.rfile.read(length) if length else b""
        if action == "revoke_tokens":
            st.tokens.clear()  # as if every token expired right now
        if st.auth_keys is not None and self._auth(st) is False:
            return
        if st.redirect_uploads and self._redirect(st, body):
            return
        if action in ("500", "503", "429", "400"):
            st.seen.append(Seen(self.command, self.path, int(action), length))
            self._reply(int(action), {"Retry-After": "0"} if action == "429" else {}, b'{"errors":[]}')
            return
        if action == "reset":
            st.seen.append(Seen(self.command, self.path, None, length))
            self._reset()
            return
        if action == "fake_201":
            st.seen.append(Seen(self.command, self.path, 201, length))
            self._reply(201)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "authorization"}
        headers["X-Forwarded-Proto"] = st.forwarded_proto
        conn = http.client.HTTPConnection(st.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        st.seen.append(Seen(self.command, self.path, None if action == "reset_after" else resp.status, length))
        if action == "reset_after":
            self._reset()
            return
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", resp.getheader("Content-Length") or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _session_for(self, st: ProxyState) -> str:
        """The multipart session a part PATCH belongs to (created on the first part)."""
        parts = urlsplit(self.path)
        if parts.path.startswith("/_next/"):
            return parts.path.split("/")[2]
        sid = secrets.token_hex(8)
        st.sessions[sid] = (self.path, {})
        return sid

    def _answer_307(self, st: ProxyState, sid: str) -> None:
        host = self.headers.get("Host", "")
        start = int(self.headers.get("Content-Range", "0-0").split("-")[0])
        part = f"{sid}.{start}"
        st.seen.append(Seen(self.command, self.path, 307, int(self.headers.get("Content-Length") or 0)))
        self._reply(307, {"Location": f"{st.forwarded_proto}://{host}/_storage/{part}",
                          "Docker-Upload-Location": f"{st.forwarded_proto}://{host}/_next/{sid}",
                          "Connection": "close"})

    def _early_redirect(self, st: ProxyState, length: int) -> None:
        """Answer 307 before reading the part, then drain it and close (as a Go server does)."""
        self._answer_307(st, self._session_for(st))
        self.wfile.flush()
        try:
            self.connection.shutdown(socket.SHUT_WR)
            self.connection.settimeout(5)
            left = length
            while left > 0:
                got = self.rfile.read1(min(left, 1 << 20))
                if not got:
                    break
                left -= len(got)
                st.early_drained += len(got)
        except OSError:
            pass
        self.close_connection = True

    def _redirect(self, st: ProxyState, body: bytes) -> bool:
        """ollama.com-style multipart upload; True when this request was handled here.

        Parts land in "storage" (here: memory) in any order and in parallel; the commit
        (`PUT /_next/<session>?digest=…`) writes them in offset order into the real registry session.
        """
        parts = urlsplit(self.path)
        if parts.path.startswith("/_storage/"):
            if "Authorization" in self.headers:
                self._reply(400, {}, b"a presigned URL takes no Authorization")
                return True
            sid, start = parts.path.split("/")[2].split(".")
            with st.lock:
                st.storage_puts += 1
                st.sessions[sid][1][int(start)] = body
            self._reply(200)
            return True
        if self.command == "PATCH" and self.headers.get("X-Redirect-Uploads") == "1":
            self._answer_307(st, self._session_for(st))
            return True
        if self.command == "PUT" and parts.path.startswith("/_next/"):
            upstream, stored = st.sessions.pop(parts.path.split("/")[2])
            data = b"".join(stored[k] for k in sorted(stored))
            conn = http.client.HTTPConnection(st.upstream, timeout=30)
            host = self.headers.get("Host", "")
            try:
                conn.request("PATCH", upstream, body=data, headers={
                    "Host": host, "Content-Type": "application/octet-stream", "Content-Length": str(len(data))})
                resp = conn.getresponse()
                resp.read()
                loc = urlsplit(resp.getheader("Location") or "")
                final = loc.path + "?" + (loc.query + "&" if loc.query else "") + parts.query
                conn.request("PUT", final, body=b"", headers={"Host": host, "Content-Length": "0"})
                resp = conn.getresponse()
                out = resp.read()
            finally:
                conn.close()
            st.seen.append(Seen("PUT", self.path, resp.status, 0))
            self._reply(resp.status, {}, out)
            return True
        return False

    def _auth(self, st: ProxyState) -> bool | None:
        host = self.headers.get("Host", "")
        path = urlsplit(self.path).path
        if path.startswith("/_storage/"):
            return None  # presigned storage: no registry auth (and none may be sent)
        if path == "/v2/token":
            st.token_requests += 1
            q = parse_qs(urlsplit(self.path).query)
            auth = self.headers.get("Authorization", "")
            pub_b64, _, sig_b64 = auth.partition(":")
            try:
                pub, sig = base64.b64decode(pub_b64), base64.b64decode(sig_b64)
            except ValueError:
                pub, sig = b"", b""
            body_hash = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()
            signed = f"GET,{st.forwarded_proto}://{host}{self.path},{body_hash}".encode()
            fresh = abs(int(q.get("ts", ["0"])[0]) - time.time()) < 300
            if pub in st.auth_keys and fresh and _verify_signature(pub, sig, signed):
                token = secrets.token_hex(16)
                st.tokens.add(token)
                self._reply(200, {"Content-Type": "application/json"}, json.dumps({"token": token}).encode())
            else:
                self._reply(401, {"Content-Type": "application/json"},
                            b'{"errors":[{"code":"UNAUTHORIZED","message":"unknown key or bad signature"}]}')
            return False
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in st.tokens:
            return None
        m = re.match(r"/v2/(.+?)/(blobs|manifests|tags)/", path)
        scope = f'scope="repository:{m.group(1)}:pull,push"' if m else ""
        realm = f"{st.forwarded_proto}://{host}/v2/token"
        self._reply(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="registry.test",{scope}',
                          "Content-Type": "application/json"},
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
        return False

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ProxyState


@contextmanager
def fault_proxy(upstream_url: str, *, faults: list[Fault] | None = None,
                auth_keys: list[bytes] | None = None,
                redirect_uploads: bool | str = False,
                tls: tuple[Path, Path] | None = None) -> Iterator[tuple[str, ProxyState]]:
    """Yield (proxy URL, state) for a proxy to `upstream_url` on a free 127.0.0.1 port.

    With `tls` = (certificate, key) the proxy speaks HTTPS, as ollama.com does.
    """
    state = ProxyState(upstream=urlsplit(upstream_url).netloc, faults=list(faults or []), auth_keys=auth_keys,
                       redirect_uploads=redirect_uploads)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.state = state
    scheme = "http"
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(tls[0]), str(tls[1]))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        state.forwarded_proto = "https"
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
