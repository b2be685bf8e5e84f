"""Who a token is and what it may do on the stand-in Hub, the way huggingface.co's access tokens work.

    LocalHub(root, tokens={
        "hf_a": ["alice", "demo"],                   # a write token of user alice, member of the org demo
        "hf_b": {"user": "bob", "role": "read"},     # read-only: sees bob's private repos, writes nothing
        "hf_c": {"user": "carol", "orgs": ["demo"], "role": "fineGrained",
                 "scoped": {"demo/x-GGUF": ["repo.content.read", "repo.write"], "demo": ["collection.write"]}},
    })

A list (or one name) is the historical form: the first name is the user, the others its organisations,
role "write". Roles "read" and "write" act on the user's namespace and its organisations; "fineGrained"
acts only where `scoped` grants it, per namespace (user or org) or per repo id: `repo.content.read`
(see private repos), `repo.write` (create repos in a namespace; commit, branches, tags, settings,
delete), `collection.read` / `collection.write`. `GET /api/whoami-v2` answers with the Hub's shape
(`whoami`), the fine-grained permissions included, so a credentials check can be tested against it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

REPO_READ = "repo.content.read"
REPO_WRITE = "repo.write"
COLLECTION_READ = "collection.read"
COLLECTION_WRITE = "collection.write"
ROLES = ("read", "write", "fineGrained")


def entity_id(name: str) -> str:
    """A stable 24-hex id, like the Hub's object ids."""
    return hashlib.sha1(name.encode()).hexdigest()[:24]


@dataclass
class Token:
    user: str
    orgs: tuple[str, ...] = ()
    role: str = "write"
    scoped: dict[str, tuple[str, ...]] = field(default_factory=dict)  # namespace or repo id → permissions
    global_permissions: tuple[str, ...] = ()
    name: str = "localhub"

    @classmethod
    def parse(cls, value: Token | str | Iterable[str] | Mapping[str, Any]) -> Token:
        if isinstance(value, Token):
            return value
        if isinstance(value, str):
            return cls(user=value)
        if isinstance(value, Mapping):
            role = str(value.get("role", "write"))
            if role not in ROLES:
                raise ValueError(f"token role {role!r}: one of {', '.join(ROLES)}")
            return cls(user=str(value["user"]), orgs=tuple(value.get("orgs", ())), role=role,
                       scoped={str(k): tuple(v) for k, v in (value.get("scoped") or {}).items()},
                       global_permissions=tuple(value.get("global", ())), name=str(value.get("name", "localhub")))
        names = list(value)
        if not names:
            raise ValueError("a token needs at least one namespace")
        return cls(user=names[0], orgs=tuple(names[1:]))

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.user, *self.orgs)

    def _granted(self, permission: str, namespace: str, repo_id: str | None = None) -> bool:
        if self.role == "fineGrained":
            return permission in self.scoped.get(namespace, ()) or (
                repo_id is not None and permission in self.scoped.get(repo_id, ()))
        if namespace not in self.namespaces:
            return False
        return permission in (REPO_READ, COLLECTION_READ) or self.role == "write"

    def can_read(self, namespace: str, repo_id: str | None = None) -> bool:
        return self._granted(REPO_READ, namespace, repo_id) or self._granted(REPO_WRITE, namespace, repo_id)

    def can_write(self, namespace: str, repo_id: str | None = None) -> bool:
        return self._granted(REPO_WRITE, namespace, repo_id)

    def can_read_collections(self, namespace: str) -> bool:
        return self._granted(COLLECTION_READ, namespace) or self._granted(COLLECTION_WRITE, namespace)

    def can_write_collections(self, namespace: str) -> bool:
        return self._granted(COLLECTION_WRITE, namespace)

    def whoami(self, created_at: str) -> dict[str, Any]:
        """`GET /api/whoami-v2` as the Hub answers it for a user access token."""
        access: dict[str, Any] = {"displayName": self.name, "role": self.role, "createdAt": created_at}
        if self.role == "fineGrained":
            def kind(entity: str) -> str:
                return "model" if "/" in entity else "user" if entity == self.user else "org"

            access["fineGrained"] = {
                "canReadGatedRepos": False,
                "global": list(self.global_permissions),
                "scoped": [{"entity": {"_id": entity_id(e), "type": kind(e), "name": e}, "permissions": list(p)}
                           for e, p in self.scoped.items()],
            }
        return {
            "type": "user", "id": entity_id(self.user), "name": self.user, "fullname": self.user,
            "email": f"{self.user}@users.localhub.invalid", "emailVerified": True, "canPay": False, "isPro": False,
            "periodEnd": None, "avatarUrl": "",
            "orgs": [{"type": "org", "id": entity_id(o), "name": o, "fullname": o, "email": None, "canPay": False,
                      "periodEnd": None, "avatarUrl": "", "roleInOrg": "write"} for o in self.orgs],
            "auth": {"type": "access_token", "accessToken": access},
        }
