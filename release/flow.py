"""`release publish NAME`: the whole flow, from the base model to tagged remotes.

    check → fetch base → prune → build → cards → verify → plan → publish (hub, ollama) → tag

Every stage is idempotent: built artifacts whose inputs are unchanged are restored from state.json,
the Hub publisher sends only files whose remote copy differs, the registry client only blobs the
registry lacks. A verify gate runs before the first remote write; if it fails nothing is published.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, RemoteError
from .pipeline import BUILD_KINDS, Context, ensure, selected_ids
from .publish.redact import Redactor


@dataclass
class RepoSummary:
    repo: str
    url: str
    sent_files: int = 0
    sent_bytes: int = 0
    unchanged_files: int = 0
    commits: int = 0
    planned_bytes: int = 0


@dataclass
class TagSummary:
    ref: str
    digest: str = ""
    sent_blobs: int = 0
    sent_bytes: int = 0
    unchanged_blobs: int = 0
    manifest: str = ""  # put | unchanged | planned


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

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {**asdict(self), "commits": self.commits, "bytes_sent": self.bytes_sent}


def publish_kinds(ctx: Context) -> tuple[set[str], bool, bool]:
    """(build kinds, publish to the Hub?, push Ollama tags?) from --only."""
    only = {sel.partition(":")[0] for sel in ctx.options.only}
    if not only:
        return set(BUILD_KINDS), True, bool(ctx.release.definition.ollama)
    hub = bool(only & {"hub", "bf16", "gguf", "nvfp4", "cards"})
    ollama = "ollama" in only
    kinds = only & set(BUILD_KINDS)
    if "hub" in only:
        kinds |= {"bf16", "gguf", "nvfp4", "cards"}
    return kinds, hub, ollama


def run_publish(ctx: Context, *, git_tag: bool = True) -> PublishSummary:
    from .verify import verify_release

    opts = ctx.options
    summary = PublishSummary(dry_run=opts.dry_run)
    kinds, to_hub, to_ollama = publish_kinds(ctx)
    ids = selected_ids(ctx, tuple(kinds))
    if "cards" not in kinds and to_hub:
        ids += [a.id for a in ctx.artifacts if a.kind == "card"]  # cards always follow what they describe
    with ctx.live():
        summary.built = ensure(ctx, ids)
    ctx.write_manifest()
    verify_release(ctx, [ctx.artifacts[i] for i in ids])

    if to_hub:
        _publish_hub(ctx, summary)
    if to_ollama:
        _publish_ollama(ctx, summary)
    ctx.write_manifest()
    if not opts.dry_run:
        from .cards.preview import record_publish

        record_publish(ctx.release, ctx.artifacts, ctx.dist, hub={r.repo: r.url for r in summary.repos},
                       ollama={t.ref.rpartition(":")[2]: t.digest for t in summary.tags},
                       ollama_registry=opts.ollama_registry or "")
    if git_tag and not opts.dry_run and not opts.only:
        summary.git_tag = tag_pipelines_repo(ctx, summary)
    return summary


def _hub_token(ctx: Context) -> str | None:
    return ctx.options.hub_token or os.environ.get("HF_TOKEN") or None


def _publish_hub(ctx: Context, summary: PublishSummary) -> None:
    from .publish.hub import HubPublisher

    hub_artifacts = [a for a in ctx.artifacts if a.destination is not None and a.destination.kind == "hub"
                     and a.status in ("built", "published")]
    if not hub_artifacts:
        return
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # one progress display: ours
    pub = HubPublisher(ctx.options.hub_endpoint, _hub_token(ctx), hash_cache=ctx.hash_cache, progress=ctx.say)
    d = ctx.release.definition
    plan = pub.plan(hub_artifacts, ctx.dist, prune_remote=ctx.options.prune_remote)
    ctx.write_manifest()  # the remote diff, recorded before anything is written
    result = None
    if not ctx.options.dry_run:
        result = pub.apply(plan, message=f"Release {ctx.release.name}")
        repos = [r.repo for r in plan.repos]
        tag = d.release.version_tag or ctx.release.name
        result.tags = pub.tag(repos, tag)
        result.collection = pub.ensure_collection(d.release.title, d.release.owner, repos, d.release.summary)
    for rp in plan.repos:
        rs = RepoSummary(repo=rp.repo, url=rp.url, planned_bytes=rp.bytes_to_send,
                         unchanged_files=len(rp.of("unchanged")))
        if result is not None:
            rr = next((r for r in result.repos if r.repo == rp.repo), None)
            if rr is not None:
                rs.commits = len(rr.commits)
                rs.sent_files = len(rp.uploads)
                rs.sent_bytes = rr.bytes_sent
        else:
            rs.sent_files = len(rp.uploads)
        summary.repos.append(rs)
    if result is not None:
        summary.notes.extend(result.notes)


def _publish_ollama(ctx: Context, summary: PublishSummary) -> None:
    from .ollama.build import load_builds
    from .ollama.cli_path import CliResult
    from .ollama.publish import plan_ollama, publish_ollama

    o = ctx.release.definition.ollama
    if o is None:
        return
    out_dir = ctx.dist / "ollama"
    registry = ctx.options.ollama_registry or o.registry
    redact = Redactor([os.environ.get("OLLAMA_KEY")])
    try:
        if ctx.options.dry_run:
            for aid, files in plan_ollama(out_dir, registry=registry, insecure=o.insecure).items():
                if aid in ctx.artifacts:
                    ctx.artifacts[aid].remote = files
                manifest = next((f.action for f in files if f.path.startswith("manifests/")), "")
                blobs = [f for f in files if f.path.startswith("blobs/")]
                summary.tags.append(TagSummary(
                    ref=f"{o.model}:{aid.split(':', 1)[1]}", manifest=f"planned {manifest}",
                    sent_blobs=sum(f.action == "upload" for f in blobs),
                    sent_bytes=sum(f.size for f in blobs if f.action == "upload"),
                    unchanged_blobs=sum(f.action == "unchanged" for f in blobs)))
            return
        result = publish_ollama(out_dir, registry=registry, insecure=o.insecure,
                                via_cli=ctx.options.via_ollama_cli, on_progress=ctx.say)
    except (RemoteError, InputError):
        raise
    except OSError as exc:
        raise RemoteError(redact(f"registry {registry}: {exc}")) from exc
    _, _, builds = load_builds(out_dir)
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


def tag_pipelines_repo(ctx: Context, summary: PublishSummary) -> str | None:
    """Annotated tag `release/<name>` in the pipelines repo; its message is the release record."""
    import json

    try:
        import git
    except ImportError:
        return None
    try:
        repo = git.Repo(ctx.release.dir, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        ctx.say("not in a git repository: no release tag")
        return None
    if not repo.head.is_valid():
        return None
    name = f"release/{ctx.release.name}"
    record = {"release": ctx.release.name, "commits": summary.commits, "bytes_sent": summary.bytes_sent,
              "manifest": ctx.manifest().to_json()}
    message = (f"Release {ctx.release.name}\n\n" + json.dumps(record, indent=1, sort_keys=True))
    existing = next((t for t in repo.tags if t.name == name), None)
    if existing is not None:
        if existing.commit.hexsha == repo.head.commit.hexsha:
            return name
        ctx.say(f"git tag {name} exists on {existing.commit.hexsha[:12]}; not moved (HEAD is "
                f"{repo.head.commit.hexsha[:12]})")
        return name
    repo.create_tag(name, message=message)
    ctx.say(f"git tag {name} at {repo.head.commit.hexsha[:12]}")
    return name


def import_artifacts(ctx: Context, folder: Path) -> list[str]:
    """Adopt artifacts built elsewhere (CI matrix jobs): each `<slot>/<name>/manifest.json` below
    `folder` contributes the artifacts it built, after checking their files' sizes and sha256 and
    that their recipe and destination match this plan. Returns the adopted ids."""

    from .fsutil import link_or_copy, sha256_file
    from .manifest import Manifest
    from .pipeline import State

    adopted: list[str] = []
    problems: list[str] = []
    for manifest_path in sorted(folder.glob(f"**/{ctx.release.name}/manifest.json")):
        m = Manifest.read(manifest_path)
        src_dist = manifest_path.parent
        src_state = State(src_dist / "state.json")
        for a in m.artifacts:
            if a.status != "built" or a.id in adopted:
                continue
            planned = ctx.artifacts.get(a.id)
            if planned is None:
                problems.append(f"{manifest_path}: {a.id} is not in this release's plan")
                continue
            if planned.recipe != {k: v for k, v in a.recipe.items() if k in planned.recipe} or \
                    planned.destination != a.destination:
                problems.append(f"{manifest_path}: {a.id} was built from another recipe or destination")
                continue
            for f in a.files:
                p = src_dist / a.root / f.path
                if not p.is_file() or p.stat().st_size != f.size or sha256_file(p) != f.sha256:
                    problems.append(f"{manifest_path}: {a.id}: {f.path} missing or its hash differs")
                    break
            else:
                for f in a.files:
                    link_or_copy(src_dist / a.root / f.path, ctx.dist / a.root / f.path)
                ctx.artifacts.add(a)
                rec = src_state.get(a.id)
                if rec is not None:  # the job's input hash: a later local build sees it as up to date
                    ctx.state.record(a, rec["inputs"])
                adopted.append(a.id)
    if problems:
        raise InputError("\n".join(problems), file=str(folder))
    return adopted


def export_artifacts(ctx: Context, folder: Path) -> Path:
    """Copy the selected built artifacts, a manifest listing only them and their state records to
    `folder/<name>/` (hard links where possible): what one CI matrix job uploads."""
    import json

    from .fsutil import link_or_copy
    from .manifest import ArtifactRegistry, Manifest
    from .pipeline import State

    target = folder / ctx.release.name
    chosen = [a for a in ctx.artifacts if a.status == "built" and a.kind != "card"
              and ctx.options.selects(a.kind, a.id)]
    for a in chosen:
        for f in a.files:
            link_or_copy(ctx.artifact_dir(a) / f.path, target / a.root / f.path)
    m = ctx.manifest()
    Manifest(m.release, m.tool_version, m.pipelines_git, m.inputs, ArtifactRegistry(chosen)).write(
        target / "manifest.json")
    state = State(target / "state.json")
    for a in chosen:
        rec = ctx.state.get(a.id)
        if rec is not None:
            state.record(a, rec["inputs"])
    (target / "export.json").write_text(json.dumps({"artifacts": [a.id for a in chosen]}) + "\n")
    return target
