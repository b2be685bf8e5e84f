"""ollama.com's signed-challenge auth: an ed25519 key instead of a password or token.

Where the key comes from (first that is set):
1. `key_path` passed by the caller (`--ollama-key FILE`);
2. `OLLAMA_KEY`: the key itself when it starts with "-----BEGIN" (a CI secret pasted as is), else a path;
3. `~/.ollama/id_ed25519` (what `ollama serve` creates; its .pub must be linked to the account).
The private key never leaves this module: errors name its source and the public key's fingerprint only.

Flow (docs/ollama.md §5): a 401 with `WWW-Authenticate: Bearer realm=…,service=…,scope=…` → GET
`<realm>?nonce=…&scope=…&service=…&ts=…` (Go url.Values order and escaping) with
`Authorization: <base64 SSH-wire public key>:<base64 signature of "GET,<url>,<base64(hex(sha256(body)))>">`
→ `{"token": …}` → `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote_plus

from ..errors import InputError

_EMPTY_BODY_HASH = base64.b64encode(hashlib.sha256(b"").hexdigest().encode()).decode()


@dataclass(frozen=True)
class Challenge:
    realm: str
    service: str
    scope: str


def parse_challenge(header: str) -> Challenge | None:
    """A `Bearer realm="…",service="…",scope="…"` header, or None for another scheme."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    values = dict((k.lower(), v) for k, v in re.findall(r'(\w+)="([^"]*)"', rest))
    if "realm" not in values:
        return None
    return Challenge(values["realm"], values.get("service", ""), values.get("scope", ""))


def _query_escape(s: str) -> str:
    # Go's url.QueryEscape: space → '+', everything but [A-Za-z0-9-_.~] percent-encoded (upper hex).
    return quote_plus(s, safe="")


def token_url(challenge: Challenge, *, nonce: bytes | None = None, ts: int | None = None) -> str:
    """The token request URL, parameters in Go url.Values.Encode order (keys sorted)."""
    nonce = secrets.token_bytes(16) if nonce is None else nonce
    ts = int(time.time()) if ts is None else ts
    pairs = [("nonce", base64.urlsafe_b64encode(nonce).decode().rstrip("="))]
    pairs += [("scope", s) for s in challenge.scope.split(" ") if s]
    pairs += [("service", challenge.service), ("ts", str(ts))]
    pairs.sort(key=lambda kv: kv[0])  # stable: several scope= keep their order
    query = "&".join(f"{_query_escape(k)}={_query_escape(v)}" for k, v in pairs)
    sep = "&" if "?" in challenge.realm else "?"
    return f"{challenge.realm}{sep}{query}"


def signed_data(method: str, url: str, body: bytes = b"") -> bytes:
    body_hash = base64.b64encode(hashlib.sha256(body).hexdigest().encode()).decode()
    return f"{method},{url},{body_hash}".encode()


class SigningKey:
    """An ed25519 private key in OpenSSH format, with where it came from (for error messages)."""

    def __init__(self, key_text: bytes, source: str) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_ssh_private_key

        self.source = source
        try:
            key = load_ssh_private_key(key_text, password=None)
        except Exception as exc:
            # The parser's message never contains key material, but keep ours generic anyway.
            raise InputError(f"not an unencrypted OpenSSH private key ({type(exc).__name__})",
                             file=source) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise InputError("the Ollama key must be ed25519 (ssh-keygen -t ed25519)", file=source)
        self._key = key
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.public_wire = _ssh_string(b"ssh-ed25519") + _ssh_string(raw)
        self.public_line = "ssh-ed25519 " + base64.b64encode(self.public_wire).decode()
        self.fingerprint = "SHA256:" + base64.b64encode(hashlib.sha256(self.public_wire).digest()).decode().rstrip("=")

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def authorization(self, data: bytes) -> str:
        """The header value ollama sends: `<base64 public key wire>:<base64 raw signature>`."""
        return f"{base64.b64encode(self.public_wire).decode()}:{base64.b64encode(self.sign(data)).decode()}"

    def __repr__(self) -> str:  # never show key material, even in a debugger or a traceback
        return f"SigningKey({self.source}, {self.fingerprint})"


def _ssh_string(b: bytes) -> bytes:
    return len(b).to_bytes(4, "big") + b


def load_key(key_path: Path | str | None = None) -> SigningKey:
    """The signing key from `key_path`, `OLLAMA_KEY` or ~/.ollama/id_ed25519 (see module doc)."""
    if key_path is not None:
        path = Path(key_path).expanduser()
        source = str(path)
    elif os.environ.get("OLLAMA_KEY"):
        value = os.environ["OLLAMA_KEY"]
        if value.lstrip().startswith("-----BEGIN"):
            return SigningKey(value.strip().encode() + b"\n", "OLLAMA_KEY (key text)")
        path = Path(value).expanduser()
        source = f"OLLAMA_KEY={path}"
    else:
        path = Path.home() / ".ollama" / "id_ed25519"
        source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the Ollama signing key: {exc.strerror}", file=source) from None
    return SigningKey(data, source)
