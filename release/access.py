"""Credentials and access, checked before anything is built or fetched: by `release check NAME --remote`
(the workflow's plan job), and first thing in `publish` (a dry run too; not `--local`), `--job`, `--finish`,
`clean` and `canary`. A missing or refused credential is one line naming it (which variable, which
namespace), exit 1, in seconds; a host name that does not resolve is said at once, never retried.

Hub: the token (HF_TOKEN, else the one `hf auth login` saved) must be valid (`GET /api/whoami-v2`) and
may write every namespace the command writes to, as the Hub decides it (docs/hf-hub.md, "Auth"):

    a read token           writes nothing
    a write token          the user's own namespace, and an org where the user's `roleInOrg` is admin,
                           write or contributor (contributor: only repos the user created)
    a fine-grained token   a `scoped` entry for the namespace (user or org) or for the repo itself, with
                           `repo.write`; the release's collection needs `collection.write` on its owner

Ollama registry: ollama.com answers a push-scope request with a challenge, and the signed-key token
exchange (release/ollama/auth.py) must give a token; any other registry must answer `GET /v2/` and a
push-scope request.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .distributed.jobs import plan_jobs
from .errors import InputError, ReleaseError, RemoteError, WorkError, describe, network_failure
from .ollama.registry import RegistryClient
from .publish.redact import Redactor
from .steps import BASE, closure

if TYPE_CHECKING:
    from .context import Context

T = TypeVar("T")
OFFICIAL_HUB = "https://huggingface.co"
WRITE_ROLES = ("admin", "write", "contributor")
EMPTY_BLOB = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
TRANSIENT = (429, 500, 502, 503, 504)
WAITS = (1.0, 2.0, 4.0)  # a short budget: an access check fails in seconds, not minutes


class AccessError(WorkError):
    """A credential is missing or refused, or a destination cannot be reached: nothing was done."""


@dataclass
class Targets:
    """What a command reads and writes."""

    write: list[str] = field(default_factory=list)  # Hub repos written
    read: list[str] = field(default_factory=list)  # Hub repos read (another unit's staging)
    collection: str | None = None  # namespace of the release's collection
    base: tuple[str, str] | None = None  # (repo, revision) downloaded
    registry: tuple[str, str, bool] | None = None  # (url, model, insecure) pushed to


@dataclass
class HubIdentity:
    """What `/api/whoami-v2` says the token may do."""

    name: str
    role: str  # read | write | fineGrained (an unknown role is treated as read)
    orgs: dict[str, str]  # org → roleInOrg
    scoped: list[tuple[str, str, frozenset[str]]]  # (entity type, entity name, permissions)

    @classmethod
    def from_whoami(cls, data: Any) -> HubIdentity:
        data = data if isinstance(data, dict) else {}
        auth = data.get("auth") if isinstance(data.get("auth"), dict) else {}
        token = auth.get("accessToken") if isinstance(auth.get("accessToken"), dict) else {}
        fine = token.get("fineGrained") if isinstance(token.get("fineGrained"), dict) else {}
        scoped = []
        for entry in fine.get("scoped") or []:
            entity = entry.get("entity") if isinstance(entry, dict) else None
            if isinstance(entity, dict):
                scoped.append((str(entity.get("type", "")), str(entity.get("name", "")),
                               frozenset(str(p) for p in entry.get("permissions") or [])))
        orgs = {str(o.get("name")): str(o.get("roleInOrg") or "") for o in data.get("orgs") or []
                if isinstance(o, dict)}
        return cls(name=str(data.get("name") or ""), role=str(token.get("role") or ""), orgs=orgs, scoped=scoped)

    @property
    def known(self) -> bool:
        """A token whose rights whoami-v2 spells out (other kinds are not second-guessed)."""
        return self.role in ("read", "write", "fineGrained")

    def _member_may_write(self, namespace: str) -> bool:
        return namespace == self.name or self.orgs.get(namespace) in WRITE_ROLES

    def may_write(self, repo: str) -> bool:
        namespace = repo.split("/", 1)[0]
        if not self._member_may_write(namespace):
            return False
        if self.role == "write":
            return True
        if self.role == "fineGrained":
            return any("repo.write" in perms and ((name == namespace and kind in ("user", "org"))
                                                  or (name == repo and kind == "model"))
                       for kind, name, perms in self.scoped)
        return False

    def may_write_collection(self, namespace: str) -> bool:
        if not self._member_may_write(namespace):
            return False
        if self.role == "fineGrained":
            return any("collection.write" in perms and name == namespace and kind in ("user", "org")
                       for kind, name, perms in self.scoped)
        return self.role == "write"

    def describe(self) -> str:
        kind = {"fineGrained": "a fine-grained token", "write": "a write token", "read": "a read token"}
        role = kind.get(self.role) or f"a token of role {self.role or 'unknown'}"
        return f"user {self.name}, {role}"


def hub_token(explicit: str | None = None) -> tuple[str | None, str]:
    """The token a command uses, and where it came from (for messages; never the token itself)."""
    if explicit:
        return explicit, "the rehearsal token"
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"], "HF_TOKEN"
    from huggingface_hub import get_token

    token = get_token()
    return (token, "the token saved by `hf auth login`") if token else (None, "HF_TOKEN")


def resolve_host(url: str, what: str) -> None:
    """Refuse at once a URL whose host does not resolve (a typo never becomes minutes of retries)."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if not parts.hostname:
        raise InputError(f"{url!r} is not a URL", file=what)
    try:
        socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
    except (socket.gaierror, UnicodeError) as exc:
        raise AccessError(f"{what}: cannot resolve {parts.hostname} ({getattr(exc, 'strerror', None) or exc}); "
                          "nothing was done") from None


class _Hub:
    """The Hub endpoint and token a command uses, and the few calls an access check makes."""

    def __init__(self, endpoint: str | None, token: str | None = None) -> None:
        from huggingface_hub import HfApi

        self.url = (endpoint or os.environ.get("HF_ENDPOINT") or OFFICIAL_HUB).rstrip("/")
        resolve_host(self.url, "the Hub endpoint (--hub-endpoint or HF_ENDPOINT)")
        self.secret, self.source = hub_token(token)
        self.api = HfApi(endpoint=self.url, token=self.secret)

    def call(self, what: str, fn: Callable[[], T], passthrough: tuple[type[BaseException], ...] = ()) -> T:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            return _with_retries(fn)
        except passthrough:
            raise
        except HfHubHTTPError as exc:
            if exc.response is not None and exc.response.status_code == 401:
                raise AccessError(f"{self.source} is not a valid token for {self.url} ({what}: 401); "
                                  "nothing was done") from None
            raise AccessError(self._redact(f"{self.url}: {what}: {describe(exc)}; nothing was done")) from None
        except ReleaseError:
            raise
        except Exception as exc:
            raise AccessError(self._redact(f"{self.url}: {what} failed: {describe(exc)}; nothing was done")) \
                from None

    def _redact(self, text: str) -> str:
        return Redactor([self.secret])(text)

    def identity(self, namespaces: Iterable[str] = ()) -> HubIdentity:
        if self.secret is None:
            needs = ", ".join(sorted(namespaces))
            raise AccessError(f"no Hugging Face token: set HF_TOKEN to a token that may write {needs} on {self.url}"
                              if needs else f"no Hugging Face token: set HF_TOKEN (for {self.url})")
        return HubIdentity.from_whoami(self.call("whoami", lambda: self.api.whoami(token=self.secret)))


def hub_identity(endpoint: str | None, token: str | None = None) -> HubIdentity:
    """Who the token is (whoami-v2); an AccessError when it is missing or refused."""
    return _Hub(endpoint, token).identity()


def check_hub(endpoint: str | None, targets: Targets, *, token: str | None = None) -> HubIdentity | None:
    """The Hub half of check_remote. None when the command writes nothing and reads nothing."""
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    if not (targets.write or targets.read or targets.collection or targets.base):
        return None
    hub = _Hub(endpoint, token)
    source = hub.source
    ident = hub.identity({r.split("/", 1)[0] for r in targets.write} | ({targets.collection} - {None}))
    refused = [r for r in sorted(set(targets.write)) if ident.known and not ident.may_write(r)]
    if refused:
        by_ns: dict[str, list[str]] = {}
        for r in refused:
            by_ns.setdefault(r.split("/", 1)[0], []).append(r)
        ns, repos = next(iter(by_ns.items()))
        raise AccessError(f"{source} ({ident.describe()}) may not write to {ns} ({', '.join(repos)}"
                          + (f"; also {', '.join(n for n in by_ns if n != ns)}" if len(by_ns) > 1 else "")
                          + f"): {_write_hint(ident, ns)}; nothing was done")
    if targets.collection and ident.known and not ident.may_write_collection(targets.collection):
        raise AccessError(f"{source} ({ident.describe()}) may not create the release's collection in "
                          f"{targets.collection}: {_write_hint(ident, targets.collection, 'collection.write')}; "
                          "nothing was done")
    for repo in sorted(set(targets.read) - set(targets.write)):
        if repo.split("/", 1)[0] not in (ident.name, *ident.orgs):
            raise AccessError(f"{source} ({ident.describe()}) cannot read {repo}'s staging; nothing was done")
    if targets.base is not None:
        repo, revision = targets.base
        try:
            hub.call(f"read the base {repo}", lambda: hub.api.model_info(repo, revision=revision),
                     passthrough=(RepositoryNotFoundError, RevisionNotFoundError))
        except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
            why = ("is gated and this account has not been granted access" if isinstance(exc, GatedRepoError) else
                   f"has no revision {revision}" if isinstance(exc, RevisionNotFoundError) else
                   "is not found (or private to another account)")
            raise AccessError(f"the base {repo} {why} with {source} on {hub.url} ([base] repo, revision); "
                              "nothing was done") from None
    return ident


def _write_hint(ident: HubIdentity, namespace: str, permission: str = "repo.write") -> str:
    if namespace != ident.name and namespace not in ident.orgs:
        return f"{ident.name} is not a member of {namespace}"
    if namespace in ident.orgs and ident.orgs[namespace] not in WRITE_ROLES:
        role = ident.orgs[namespace] or "unknown"
        return f"{ident.name}'s role in {namespace} is {role} (writing needs write or admin)"
    if ident.role == "fineGrained":
        return f"give the fine-grained token {permission} on {namespace}"
    return "use a write token (huggingface.co/settings/tokens)"


def check_registry(url: str, model: str, insecure: bool) -> None:
    """The registry half of check_remote: reachable, and it lets this key (or anyone, for a registry without
    auth) push `model`."""

    resolve_host(url, "the Ollama registry (--ollama-registry or [ollama] registry)")
    client = RegistryClient(url, insecure=insecure, retries=2, backoff=0.25, timeout=30)
    try:
        resp = client.request("GET", "/v2/")
        if resp.status not in (200, 401):
            raise AccessError(f"{client.host}: GET /v2/ answered HTTP {resp.status}: not a registry; nothing was done")
        client.blob_size(model, EMPTY_BLOB, push=True)  # a push-scope request: the token exchange happens here
    except InputError as exc:
        source = "OLLAMA_KEY" if os.environ.get("OLLAMA_KEY") else "OLLAMA_KEY (unset) or ~/.ollama/id_ed25519"
        raise AccessError(f"{source}: {exc}: {client.host} needs a signing key linked to the account that owns "
                          f"{model.split('/', 1)[0]} to push {model}; nothing was done") from None
    except RemoteError as exc:
        raise AccessError(f"{exc}; nothing was done") from None
    finally:
        client.close()


def check_remote(ctx: Context, targets: Targets) -> list[str]:
    """Check `targets` with this command's endpoint, token and registry; the lines saying what was checked."""
    ident = check_hub(ctx.options.hub_endpoint, targets, token=ctx.options.hub_token)
    lines = []
    if ident is not None:
        where = (ctx.options.hub_endpoint or os.environ.get("HF_ENDPOINT") or OFFICIAL_HUB).rstrip("/")
        namespaces = sorted({r.split("/", 1)[0] for r in targets.write})
        lines.append(f"Hub {where}: token of {ident.describe()}"
                     + (f"; may write {', '.join(namespaces)}" if namespaces else "")
                     + (f"; base {targets.base[0]}@{targets.base[1][:12]} readable" if targets.base else ""))
    if targets.registry is not None:
        url, model, insecure = targets.registry
        check_registry(url, model, insecure)
        lines.append(f"Ollama registry {url}: may push {model}")
    return lines


# ---- what each command touches ---------------------------------------------------------------------

def _hub_repos(ctx: Context, ids: Iterable[str] | None = None) -> list[str]:
    chosen = set(ids) if ids is not None else None
    return sorted({a.destination.repo for a in ctx.artifacts if a.destination is not None
                   and a.destination.kind == "hub" and (chosen is None or a.id in chosen)})


def _base(ctx: Context) -> tuple[str, str] | None:
    """The base, when this command would download it (not generated, no local copy)."""
    base = ctx.release.definition.base
    local = ctx.release.base_path
    if base.generator or (local is not None and (local / "config.json").is_file()):
        return None
    return base.repo, base.revision


def _registry(ctx: Context) -> tuple[str, str, bool] | None:
    o = ctx.release.definition.ollama
    return None if o is None else (ctx.options.ollama_registry or o.registry, o.model, o.insecure)


def release_targets(ctx: Context) -> Targets:
    """Everything a release touches (`release check NAME --remote`)."""
    repos = _hub_repos(ctx)
    return Targets(write=repos, collection=ctx.release.definition.release.owner if repos else None, base=_base(ctx),
                   registry=_registry(ctx))


def publish_targets(ctx: Context, ids: list[str]) -> Targets:
    """A publish from one machine of the artifacts `ids` (and what they are made from)."""
    repos = _hub_repos(ctx, ids)
    reads_base = any(BASE in ctx.artifacts[i].needs for i in closure(ctx.artifacts, ids))
    tags = any(ctx.artifacts[i].kind == "ollama" for i in ids)
    return Targets(write=repos, collection=ctx.release.definition.release.owner if repos else None,
                   base=_base(ctx) if reads_base else None, registry=_registry(ctx) if tags else None)


def job_targets(ctx: Context, job_id: str | None) -> Targets:
    """One job of the plan (`--job ID`: its repos, the base if it reads it, the registry if it pushes its
    tiers' Ollama model blobs), or the promotion (`job_id` None: `--finish`)."""
    repos = _hub_repos(ctx)
    if job_id is None:
        tags = any(a.kind == "ollama" for a in ctx.artifacts)
        return Targets(write=repos, collection=ctx.release.definition.release.owner if repos else None,
                       registry=_registry(ctx) if tags else None)
    plan = plan_jobs(ctx)
    reads_base = any(u.id == job_id and any(BASE in ctx.artifacts[i].needs for i in u.artifacts) for u in plan.units)
    return Targets(write=repos, base=_base(ctx) if reads_base else None,
                   registry=_registry(ctx) if plan.job(job_id).ollama_blobs else None)


def _with_retries(fn: Callable[[], T]) -> T:
    """A few quick retries of a 5xx/429 answer or a transport failure (a host that does not resolve is
    refused before)."""
    from huggingface_hub.errors import HfHubHTTPError

    for wait in (*WAITS, None):
        try:
            return fn()
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status not in TRANSIENT or wait is None:
                raise
        except Exception as exc:
            if network_failure(exc) is None or wait is None:
                raise
        time.sleep(wait)
    raise AssertionError("unreachable")
