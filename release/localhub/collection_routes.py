"""The stand-in Hub's collections: create, list, get, delete, add an item; private repos stay invisible to
those who may not read them."""

from __future__ import annotations

from .endpoint import forbidden, hub_of, identity, invisible, paginate, require_write, writer
from .http import Handler
from .store import HubError, RepoKey


def collection_create(h: Handler) -> None:
    body = h.body.json() or {}
    ns, title = body.get("namespace"), body.get("title")
    if not ns or not title:
        raise HubError(400, "namespace and title are required")
    if not writer(h).can_write_collections(ns):
        raise forbidden(ns)
    coll = hub_of(h).store.create_collection(ns, title, body.get("description"), bool(body.get("private")))
    h.answer(200, coll)


def _visible_collection(h: Handler, coll: dict) -> dict | None:
    """The collection as the caller may see it: None when private and not theirs; private repos they
    may not read left out of its items."""
    ident = identity(h)
    if coll["private"] and (ident is None or not ident.can_read_collections(coll["owner"]["name"])):
        return None
    store = hub_of(h).store
    items = []
    for item in coll["items"]:
        if item["type"] in ("model", "dataset", "space"):
            key = RepoKey(item["type"], *str(item["id"]).partition("/")[::2])
            meta = store.repo(key)
            if meta is None or invisible(h, key, meta):
                continue
        items.append(item)
    return {**coll, "items": items}


def collection_list(h: Handler) -> None:
    owner, q = h.q("owner"), (h.q("q") or "").lower()
    out = []
    for c in hub_of(h).store.collections():
        if (not owner or c["owner"]["name"] == owner) and (not q or q in c["title"].lower()):
            seen = _visible_collection(h, c)
            if seen is not None:
                # Like the Hub: listings carry no position and at most 4 items per collection.
                out.append({k: v for k, v in seen.items() if k != "position"} | {"items": seen["items"][:4]})
    paginate(h, out, 100)


def collection_get(h: Handler, slug: str) -> None:
    seen = _visible_collection(h, hub_of(h).store.collection(slug))
    if seen is None:
        raise HubError(404, "Collection not found", "RepoNotFound")
    h.answer(200, seen)


def collection_delete(h: Handler, slug: str) -> None:
    store = hub_of(h).store
    require_write(h, store.collection(slug)["owner"]["name"])
    store.delete_collection(slug)
    h.answer(200, {})


def collection_item_add(h: Handler, slug: str) -> None:
    store = hub_of(h).store
    coll = _visible_collection(h, store.collection(slug))
    if coll is None:
        raise HubError(404, "Collection not found", "RepoNotFound")
    if not writer(h).can_write_collections(coll["owner"]["name"]):
        raise forbidden(coll["owner"]["name"])
    body = h.body.json() or {}
    item = body.get("item") or {}
    if item.get("type") in ("model", "dataset", "space"):
        key = RepoKey(item["type"], *str(item.get("id")).partition("/")[::2])
        meta = store.repo(key)
        if meta is None or invisible(h, key, meta):
            raise HubError(404, f"{item['type']} {item.get('id')} not found", "RepoNotFound")
    h.answer(200, _visible_collection(h, store.add_collection_item(slug, item.get("id"), item.get("type"),
                                                                    body.get("note"))))
