"""`release publish NAME` on one machine: the whole flow, from the base model to tagged remotes.

    check → fetch base → [dropmap] → prune (bf16) → build (gguf | nvfp4) → quality → ollama → cards
          → verify → plan → publish (hub, ollama) → tag

Every stage is idempotent: built artifacts whose inputs are unchanged are restored from state.json,
the Hub publisher sends only files whose remote copy differs, the registry client only blobs the
registry lacks. A verify gate runs before the first remote write; if it fails nothing is published.

A release is all or nothing as far as the remotes allow: every file to be sent is hashed afresh, then
content goes first (Ollama blobs, Hub LFS objects: invisible until referenced), then the Hub commits,
then the Ollama manifests, then tags and the collection. A failure while sending content leaves every
destination as it was. (Across machines, `release.distributed` stages on branches and promotes with
one commit per repo.)
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .destinations import Announcement, DestinationResult, HubDestination, OllamaDestination, hub_publisher
from .errors import InputError, WorkError
from .fsutil import sha256_file
from .gittag import record_message, tag_pipelines_repo
from .ollama.build import load_builds
from .pipeline import Context, ensure, restore_recorded, select
from .publish.hubplan import HubPlan
from .quality.facts import withheld, withheld_in_use
from .verify import verify_release

if TYPE_CHECKING:
    from .publish.hub import HubPublisher


@dataclass
class RepoSummary:
    """A Hub repo's line of the summary: a view of its DestinationResult."""

    repo: str
    url: str
    sent_files: int = 0
    sent_bytes: int = 0
    unchanged_files: int = 0
    commits: int = 0
    planned_bytes: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)  # dry run: {path, size, action} of every file

    @classmethod
    def of(cls, r: DestinationResult) -> RepoSummary:
        return cls(repo=r.ref, url=r.url, sent_files=r.sent, sent_bytes=r.sent_bytes, unchanged_files=r.unchanged,
                   commits=len(r.commits), planned_bytes=r.planned_bytes, files=r.files)


@dataclass
class TagSummary:
    """An Ollama tag's line of the summary: a view of its DestinationResult."""

    ref: str
    digest: str = ""
    sent_blobs: int = 0
    sent_bytes: int = 0
    unchanged_blobs: int = 0
    manifest: str = ""  # put | unchanged | planned
    planned_bytes: int = 0  # dry run: what a publish would send
    files: list[dict[str, Any]] = field(default_factory=list)  # dry run: blobs and manifests, {path, size, action}

    @classmethod
    def of(cls, r: DestinationResult) -> TagSummary:
        return cls(ref=r.ref, digest=r.digest, sent_blobs=r.sent, sent_bytes=r.sent_bytes, unchanged_blobs=r.unchanged,
                   manifest=r.manifest, planned_bytes=r.planned_bytes, files=r.files)


@dataclass
class PublishSummary:
    dry_run: bool
    repos: list[RepoSummary] = field(default_factory=list)
    tags: list[TagSummary] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    git_tag: str | None = None

    @property
    def commits(self) -> int:
        return sum(r.commits for r in self.repos)

    @property
    def bytes_sent(self) -> int:
        return sum(r.sent_bytes for r in self.repos) + sum(t.sent_bytes for t in self.tags)

    @property
    def bytes_to_send(self) -> int:
        """A dry run's plan: what a publish would send now."""
        return sum(r.planned_bytes for r in self.repos) + sum(t.planned_bytes for t in self.tags)

    def add(self, results: list[DestinationResult]) -> None:
        """Destinations' results, as summary lines (and their notes)."""
        for r in results:
            if r.kind == "hub":
                self.repos.append(RepoSummary.of(r))
            else:
                self.tags.append(TagSummary.of(r))
        for r in results:
            self.notes.extend(r.notes)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "commits": self.commits, "bytes_sent": self.bytes_sent,
                "bytes_to_send": self.bytes_to_send if self.dry_run else 0}


def publish_selection(ctx: Context) -> list[str]:
    """What a publish sends: the selected artifacts, plus the card of every Hub repo they touch (a card
    follows what it describes)."""
    ids = select(ctx)
    repos = {ctx.artifacts[i].destination.repo for i in ids  # type: ignore[union-attr]
             if ctx.artifacts[i].destination is not None and ctx.artifacts[i].destination.kind == "hub"}
    cards = [a.id for a in ctx.artifacts if a.kind == "card" and a.destination is not None
             and a.destination.repo in repos and a.id not in ids]
    return ids + cards


def run_publish(ctx: Context, *, git_tag: bool = True) -> PublishSummary:
    opts = ctx.options
    summary = PublishSummary(dry_run=opts.dry_run)
    ids = publish_selection(ctx)
    with ctx.live():
        summary.built = ensure(ctx, ids)
    restore_recorded(ctx)  # what --only left out is still built: the manifest says so
    ctx.write_manifest()
    chosen = [ctx.artifacts[i] for i in ids]
    refuse_removed_conflicts(ctx)  # before verify: its card-link check would fail on them, less clearly
    verify_release(ctx, chosen)

    # A tier that [quality]'s thresholds remove is built and measured, and not published.
    hub = [a for a in chosen if a.destination is not None and a.destination.kind == "hub"
           and not withheld(ctx.release, ctx.artifacts, a)]
    tags = any(a.kind == "ollama" for a in chosen)
    hub_pub = hub_publisher(ctx) if hub else None
    plan = hub_pub.plan(hub, ctx.dist, prune_remote=opts.prune_remote) if hub_pub else None
    ctx.write_manifest()  # the remote diff, recorded before anything is written
    send(ctx, summary, hub_pub, plan, tags)
    if git_tag and not opts.only and not summary.dry_run:
        summary.git_tag = tag_pipelines_repo(ctx, release_record(ctx, summary), move=opts.move_tags)
    return summary


def send(ctx: Context, summary: PublishSummary, hub_pub: HubPublisher | None, plan: HubPlan | None,
         tags: bool) -> PublishSummary:
    """Publish what `plan` (Hub) and the Ollama build hold, in the order that keeps a release all or
    nothing: hash afresh → Ollama blobs and Hub LFS objects (invisible until referenced) → Hub commits →
    Ollama manifests → visibility → tags and collection → the publish record. A repo this run creates is
    created private and made public (unless `[release] private`) only once it holds the release. A dry
    run stops before the first write, with the plan in the summary. The git tag is the caller's."""
    hub = HubDestination(hub_pub, plan, message=f"Release {ctx.release.name}", announce=Announcement.of(ctx)) \
        if hub_pub is not None and plan is not None else None
    ollama = OllamaDestination.of(ctx) if tags else None
    if summary.dry_run:
        summary.add(hub.plan() if hub is not None else [])
        summary.add(ollama.plan() if ollama is not None else [])
        return summary
    if ctx.options.local_state is not None and plan is not None:
        check_local_room(ctx, plan.bytes_to_send)
    preflight(ctx, plan, tags)
    if ollama is not None:
        ollama.send("content")
    if hub is not None:
        hub.send("content")
        hub.send("commit")
    tag_results = ollama.send("commit") if ollama is not None else []
    summary.add(hub.send("announce") if hub is not None else [])
    summary.add(tag_results)
    ctx.write_manifest()
    record_published(ctx, summary)
    return summary


def release_record(ctx: Context, summary: PublishSummary) -> str:
    """The git tag's message: what was sent, and the manifest."""
    return record_message(ctx.release.name, summary, ctx.manifest().to_json())


def preflight(ctx: Context, plan: HubPlan | None, ollama: bool) -> None:
    """Before the first remote write: hash afresh every file that will be sent (the hash cache trusts
    path, size and mtime; bit rot keeps all three) and every Ollama blob against its digest. One
    mismatch stops the release with nothing sent. A file is hashed once however many names it has."""

    files: list[tuple[Path, str | None, str]] = [
        (pf.local, pf.sha256, f"{rp.repo}/{pf.path}") for rp in (plan.repos if plan is not None else [])
        for pf in rp.uploads]
    if ollama:
        for b in load_builds(ctx.dist / "ollama")[2]:
            files += [(b.blob_file(blob), blob.hex, f"Ollama blob {blob.digest[:19]}") for blob in b.blobs
                      if b.blob_file(blob).is_file()]
    seen: set[tuple[int, int]] = set()
    bad = []
    for path, want, what in files:
        st = path.stat()
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if sha256_file(path) != want:
            bad.append(f"{what} ({path})")
    if bad:
        raise WorkError("these files do not hash to what was built (changed or corrupt on disk); nothing was "
                        "sent — rebuild them (`--force`, or delete them):\n  " + "\n  ".join(bad))


def refuse_removed_conflicts(ctx: Context) -> None:
    """Nothing may use a tier the thresholds withhold (the quick start, an Ollama tag):
    one error per use, naming the threshold, the tier and what to change."""
    conflicts = withheld_in_use(ctx.release, ctx.artifacts)
    if conflicts:
        raise InputError(conflicts)


def check_local_room(ctx: Context, nbytes: int) -> None:
    """A rehearsal stores what it sends on this machine's disk: refuse before sending when it cannot."""
    folder = ctx.options.local_state
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise WorkError(f"the rehearsal Hub keeps what it receives under {folder}: {nbytes / 1e9:.2f} GB to send, "
                        f"{free / 1e9:.2f} GB free there; nothing was sent")


def record_published(ctx: Context, summary: PublishSummary) -> None:
    """What the preview shows as published: the repos and tags this publish reached."""
    from .cards.preview import record_publish  # lazy: the card renderer loads huggingface_hub (~0.3 s)

    record_publish(ctx.release, ctx.artifacts, ctx.dist, hub={r.repo: r.url for r in summary.repos},
                   ollama={t.ref.rpartition(":")[2]: t.digest for t in summary.tags},
                   ollama_registry=ctx.options.ollama_registry or "")
