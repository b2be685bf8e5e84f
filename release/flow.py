"""`release publish NAME` on one machine: the whole flow, from the base model to tagged remotes.

    check → fetch base → prune → build → cards → verify → plan → publish (hub, ollama) → tag

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

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, RemoteError, WorkError
from .gittag import record_message, tag_pipelines_repo
from .pipeline import Context, ensure, restore_recorded, select
from .publish.redact import Redactor
from .quality.facts import withheld


@dataclass
class RepoSummary:
    repo: str
    url: str
    sent_files: int = 0
    sent_bytes: int = 0
    unchanged_files: int = 0
    commits: int = 0
    planned_bytes: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)  # dry run: {path, size, action} of every file


@dataclass
class TagSummary:
    ref: str
    digest: str = ""
    sent_blobs: int = 0
    sent_bytes: int = 0
    unchanged_blobs: int = 0
    manifest: str = ""  # put | unchanged | planned
    planned_bytes: int = 0  # dry run: what a publish would send
    files: list[dict[str, Any]] = field(default_factory=list)  # dry run: blobs and manifests, {path, size, action}


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

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

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
    from .verify import verify_release

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
    hub_pub = _hub_publisher(ctx) if hub else None
    plan = hub_pub.plan(hub, ctx.dist, prune_remote=opts.prune_remote) if hub_pub else None
    ctx.write_manifest()  # the remote diff, recorded before anything is written
    send(ctx, summary, hub_pub, plan, tags)
    if git_tag and not opts.only and not summary.dry_run:
        summary.git_tag = tag_pipelines_repo(ctx, release_record(ctx, summary), move=opts.move_tags)
    return summary


def send(ctx: Context, summary: PublishSummary, hub_pub: Any, plan: Any, tags: bool) -> PublishSummary:
    """Publish what `plan` (Hub) and the Ollama build hold, in the order that keeps a release all or
    nothing: hash afresh → Ollama blobs and Hub LFS objects (invisible until referenced) → Hub commits →
    Ollama manifests → visibility → tags and collection → the publish record. A repo this run creates is
    created private and made public (unless `[release] private`) only once it holds the release. A dry
    run stops before the first write, with the plan in the summary. The git tag is the caller's."""
    if summary.dry_run:
        summary.repos += [_repo_summary(rp, files=True) for rp in (plan.repos if plan is not None else [])]
        if tags:
            _plan_ollama(ctx, summary)
        return summary
    if ctx.options.local_state is not None and plan is not None:
        check_local_room(ctx, plan.bytes_to_send)
    preflight(ctx, plan, tags)
    ollama = _ollama_push(ctx, "blobs") if tags else None
    result = None
    if hub_pub is not None and plan is not None:
        hub_pub.upload(plan, rehash=False)  # LFS objects of every repo before the first commit
        result = hub_pub.apply(plan, message=f"Release {ctx.release.name}")
    if tags:
        ollama = _ollama_push(ctx, "manifests", ollama)
    if result is not None:
        d = ctx.release.definition
        repos = [r.repo for r in plan.repos]
        for repo in repos:
            hub_pub.set_private(repo, d.release.private)
        result.tags = hub_pub.tag(repos, d.release.version_tag or ctx.release.name, move=ctx.options.move_tags)
        result.notes.extend(t.note for t in result.tags if t.note)
        result.collection = hub_pub.ensure_collection(d.release.title, d.release.owner, repos, d.release.summary,
                                                      private=d.release.private)
        for rp in plan.repos:
            rr = next(r for r in result.repos if r.repo == rp.repo)
            summary.repos.append(_repo_summary(rp, rr))
        summary.notes.extend(result.notes)
    if ollama is not None:
        _ollama_summary(ctx, summary, ollama)
    ctx.write_manifest()
    record_published(ctx, summary)
    return summary


def release_record(ctx: Context, summary: PublishSummary) -> str:
    """The git tag's message: what was sent, and the manifest."""
    return record_message(ctx.release.name, summary, ctx.manifest().to_json())


def preflight(ctx: Context, plan: Any, ollama: bool) -> None:
    """Before the first remote write: hash afresh every file that will be sent (the hash cache trusts
    path, size and mtime; bit rot keeps all three) and every Ollama blob against its digest. One
    mismatch stops the release with nothing sent. A file is hashed once however many names it has."""
    from .fsutil import sha256_file
    from .ollama.build import load_builds

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
    from .quality.facts import withheld_in_use

    conflicts = withheld_in_use(ctx.release, ctx.artifacts)
    if conflicts:
        raise InputError(conflicts)


def check_local_room(ctx: Context, nbytes: int) -> None:
    """A rehearsal stores what it sends on this machine's disk: refuse before sending when it cannot."""
    import shutil

    folder = ctx.options.local_state
    assert folder is not None
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise WorkError(f"the rehearsal Hub keeps what it receives under {folder}: {nbytes / 1e9:.2f} GB to send, "
                        f"{free / 1e9:.2f} GB free there; nothing was sent")


def record_published(ctx: Context, summary: PublishSummary) -> None:
    """What the preview shows as published: the repos and tags this publish reached."""
    from .cards.preview import record_publish

    record_publish(ctx.release, ctx.artifacts, ctx.dist, hub={r.repo: r.url for r in summary.repos},
                   ollama={t.ref.rpartition(":")[2]: t.digest for t in summary.tags},
                   ollama_registry=ctx.options.ollama_registry or "")


def _hub_token(ctx: Context) -> str | None:
    return ctx.options.hub_token or os.environ.get("HF_TOKEN") or None


def _hub_publisher(ctx: Context):  # type: ignore[no-untyped-def]
    from huggingface_hub.utils import disable_progress_bars

    from .publish.hub import HubPublisher

    disable_progress_bars()  # one progress display: ours
    # Private until the release is in: a repo made by this run (or a job) is made public by the promotion.
    return HubPublisher(ctx.options.hub_endpoint, _hub_token(ctx), hash_cache=ctx.hash_cache, progress=ctx.say,
                        private=True)


def _repo_summary(rp: Any, rr: Any = None, *, files: bool = False) -> RepoSummary:
    rs = RepoSummary(repo=rp.repo, url=rp.url, planned_bytes=rp.bytes_to_send,
                     unchanged_files=len(rp.of("unchanged")), sent_files=len(rp.uploads) + len(rp.copies),
                     files=[{"path": f.path, "size": f.size, "action": f.action} for f in rp.files] if files else [])
    if rr is not None:
        rs.commits = len(rr.commits)
        rs.sent_bytes = rr.bytes_sent
    return rs


def _registry(ctx: Context) -> str:
    o = ctx.release.definition.ollama
    assert o is not None
    return ctx.options.ollama_registry or o.registry


def _plan_ollama(ctx: Context, summary: PublishSummary) -> None:
    from .ollama.publish import plan_ollama

    o = ctx.release.definition.ollama
    assert o is not None
    for aid, files in plan_ollama(ctx.dist / "ollama", registry=_registry(ctx), insecure=o.insecure).items():
        if aid in ctx.artifacts:
            ctx.artifacts[aid].remote = files
        manifest = next((f.action for f in files if f.path.startswith("manifests/")), "")
        blobs = [f for f in files if f.path.startswith("blobs/")]
        summary.tags.append(TagSummary(
            ref=f"{o.model}:{aid.split(':', 1)[1]}", manifest=f"planned {manifest}",
            sent_blobs=sum(f.action == "upload" for f in blobs),
            planned_bytes=sum(f.size for f in blobs if f.action == "upload"),
            unchanged_blobs=sum(f.action == "unchanged" for f in blobs),
            files=[{"path": f.path, "size": f.size, "action": f.action} for f in files]))


def _ollama_push(ctx: Context, phase: str, result: Any = None) -> Any:
    from .ollama.publish import publish_ollama

    o = ctx.release.definition.ollama
    assert o is not None
    registry = _registry(ctx)
    redact = Redactor([os.environ.get("OLLAMA_KEY")])
    try:
        return publish_ollama(ctx.dist / "ollama", registry=registry, insecure=o.insecure,
                              via_cli=ctx.options.via_ollama_cli, on_progress=ctx.say,
                              phase=phase, result=result)  # type: ignore[arg-type]
    except (RemoteError, InputError):
        raise
    except OSError as exc:
        raise RemoteError(redact(f"registry {registry}: {exc}")) from exc


def _ollama_summary(ctx: Context, summary: PublishSummary, result: Any) -> None:
    from .ollama.build import load_builds
    from .ollama.cli_path import CliResult

    o = ctx.release.definition.ollama
    assert o is not None
    _, _, builds = load_builds(ctx.dist / "ollama")
    if isinstance(result, CliResult):
        summary.notes.append(f"pushed with the ollama CLI ({len(result.commands)} commands) and verified by "
                             "reading the manifests back")
        summary.tags += [TagSummary(ref=f"{o.model}:{b.tag}", digest=b.manifest_digest, manifest="put")
                         for b in builds]
        return
    # Each blob is counted once, under the first tag (in push order) that references it.
    counted: set[str] = set()
    for ref, dig in result.digests.items():
        build = next((b for b in builds if b.tag == ref), None) if ref != "latest" else None
        t = TagSummary(ref=f"{o.model}:{ref}", digest=dig,
                       manifest="put" if ref in result.manifests_put else "unchanged")
        for blob in build.blobs if build else []:
            if blob.digest in counted:
                continue
            counted.add(blob.digest)
            how = result.blobs.get(blob.digest)
            t.sent_blobs += how == "uploaded"
            t.unchanged_blobs += how in ("exists", "mounted")
            t.sent_bytes += result.bytes_sent.get(blob.digest, 0)
        summary.tags.append(t)
