"""The Hub publisher's release-family calls: the release tag on every repo, and the collection that
holds the family. A part of `HubPublisher` (publish/hub.py), kept apart by concern: it uses the
publisher's retried calls (`_call`, `_create`, `_head`), its client and its progress line."""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import RemoteError
from .hubplan import CollectionResult, TagResult, short


class ReleaseFamily:
    """Tags and the collection; mixed into HubPublisher."""

    def tag(self, repos: Iterable[str], tag: str, *, move: bool = False, message: str | None = None
            ) -> list[TagResult]:
        """Tag each repo's head. An existing tag on another commit is kept (tags are meant to be
        immutable) and reported, unless `move=True`."""
        out = []
        for repo in repos:
            head = self._head(repo)
            if head is None:
                raise RemoteError(f"cannot tag {repo}: repo not found")
            refs = self._call(f"read refs of {repo}", lambda repo=repo: self._api.list_repo_refs(repo))
            existing = {t.name: t.target_commit for t in refs.tags}
            at = existing.get(tag)
            if at == head:
                out.append(TagResult(repo, tag, head, "unchanged"))
                continue
            if at is not None and not move:
                note = (f"{repo}: tag {tag} stays on {short(at)} (head is {short(head)}); "
                        "release tags are not moved unless asked (--move-tags)")
                self.say(note)
                out.append(TagResult(repo, tag, at, "kept", note))
                continue
            if at is not None:
                self._call(f"delete tag {tag} of {repo}",
                           lambda repo=repo: self._api.delete_tag(repo, tag=tag))
            self._create(f"tag {repo}", lambda repo=repo, head=head: self._api.create_tag(
                repo, tag=tag, revision=head, tag_message=message))
            refs = self._call(f"read refs of {repo}", lambda repo=repo: self._api.list_repo_refs(repo))
            landed = {t.name: t.target_commit for t in refs.tags}.get(tag)
            if landed != head:
                raise RemoteError(f"{repo}: tag {tag} is on {short(landed)} after tagging {short(head)}")
            action = "moved" if at is not None else "created"
            self.say(f"{repo}: tag {tag} {action} at {short(head)}")
            out.append(TagResult(repo, tag, head, action))
        return out

    def ensure_collection(self, title: str, namespace: str, repos: Iterable[str],
                          description: str | None = None, *, private: bool = False) -> CollectionResult:
        """A collection holding the release family; items added once. No write if already complete. A new
        collection is `private` as asked (an existing one keeps its visibility)."""
        found = self._call("list collections", lambda: [
            c for c in self._api.list_collections(owner=namespace, limit=100) if c.title == title])
        made = None
        if not found:
            made = self._create("create collection", lambda: self._api.create_collection(
                title, namespace=namespace, description=description, private=private))
            if made is None:  # made meanwhile by someone else
                found = self._call("list collections", lambda: [
                    c for c in self._api.list_collections(owner=namespace, limit=100) if c.title == title])
            if made is None and not found:
                raise RemoteError(f"collection {title!r} of {namespace}: exists, but is not listed")
        created = made is not None
        coll = made or self._call("read collection", lambda: self._api.get_collection(found[0].slug))
        have = {item.item_id for item in coll.items}
        res = CollectionResult(slug=coll.slug, url=coll.url, created=created)
        for repo in repos:
            if repo in have:
                continue
            after = self._create(f"add {repo} to collection", lambda repo=repo: self._api.add_collection_item(
                coll.slug, item_id=repo, item_type="model")) or self._call(
                "read collection", lambda: self._api.get_collection(coll.slug))
            if repo not in {item.item_id for item in after.items}:
                raise RemoteError(f"collection {coll.slug}: {repo} missing after adding it")
            res.added.append(repo)
        if created or res.added:
            self.say(f"collection {coll.slug}: {len(res.added)} added")
        return res
