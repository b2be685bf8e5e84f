"""What every stand-in Hub endpoint shares: the repo a request names, who the caller is and what they may
do (401/403/404 as the real Hub answers them), signed storage URLs, and paginated answers."""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from .http import Handler
from .store import HubError, RepoKey
from .tokens import Token

if TYPE_CHECKING:
    from . import LocalHub

TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
T = r"(?P<t>models|datasets|spaces)"
REPO = r"(?P<ns>[^/]+)/(?P<name>[^/]+)"
PREFIX = r"(?:(?P<p>datasets|spaces)/)?"
OID = r"(?P<oid>[0-9a-f]{64})"


def hub_of(h: Handler) -> LocalHub:
    return h.server.hub


def repo_key(t: str | None, ns: str, name: str, prefix: str | None = None) -> RepoKey:
    if prefix:
        return RepoKey(TYPES[prefix], ns, name)
    return RepoKey(TYPES[t] if t else "model", ns, name)


# ---- auth ---------------------------------------------------------------------------------------

def identity(h: Handler) -> Token | None:
    """The caller's token, None when anonymous; 401 for a token the Hub does not know."""
    token = h.bearer()
    if token is None:
        return None
    ident = hub_of(h).tokens.get(token)
    if ident is None:
        raise HubError(401, "Invalid credentials in Authorization header")
    return ident


def writer(h: Handler) -> Token:
    ident = identity(h)
    if ident is None:
        raise HubError(401, "You must be authenticated to write")
    return ident


def forbidden(namespace: str) -> HubError:
    return HubError(403, f"You don't have the rights to write to the namespace {namespace}")


def require_write(h: Handler, namespace: str) -> Token:
    """Namespace-level writes (create a repo or a collection): 401 anonymous, 403 without rights."""
    ident = writer(h)
    if not ident.can_write(namespace):
        raise forbidden(namespace)
    return ident


def invisible(h: Handler, key: RepoKey, meta: dict) -> bool:
    ident = identity(h)
    return bool(meta["private"]) and (ident is None or not ident.can_read(key.namespace, key.id))


def readable_repo(h: Handler, key: RepoKey) -> dict:
    """The repo, or 404 RepoNotFound when it does not exist or the caller may not see it (private)."""
    meta = hub_of(h).store.require_repo(key)
    if invisible(h, key, meta):
        raise HubError(404, "Repository not found", "RepoNotFound")
    return meta


def writable_repo(h: Handler, key: RepoKey) -> dict:
    """The repo for a write: 401 anonymous, 404 when invisible to the caller, 403 without write rights."""
    ident = writer(h)
    meta = readable_repo(h, key)
    if not ident.can_write(key.namespace, key.id):
        raise forbidden(key.namespace)
    return meta


# ---- signed storage URLs ------------------------------------------------------------------------

def sign(h: Handler, action: str, oid: str, size: int) -> str:
    return hmac.new(hub_of(h).store.secret, f"{action}:{oid}:{size}".encode(), hashlib.sha256).hexdigest()[:32]


def storage_url(h: Handler, action: str, oid: str, size: int, extra: str = "") -> str:
    sig = sign(h, action, oid, size)
    return f"{hub_of(h).storage_url}/{action}/{oid}{extra}?{urlencode({'size': size, 'sig': sig})}"


def check_sig(h: Handler, action: str, oid: str) -> int:
    size = int(h.q("size") or -1)
    if not hmac.compare_digest(h.q("sig") or "", sign(h, action, oid, size)):
        raise HubError(403, "bad signature")
    return size


def paginate(h: Handler, items: list, page_size: int) -> None:
    start = int(h.q("cursor") or 0)
    page = items[start:start + page_size]
    headers = {}
    if start + page_size < len(items):
        params = {k: v[0] for k, v in h.query.items() if k != "cursor"}
        params["cursor"] = str(start + page_size)
        headers["Link"] = f'<{hub_of(h).url}{h.record.path}?{urlencode(params)}>; rel="next"'
    h.answer(200, page, headers)
