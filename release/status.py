"""`release status NAME`: what is published where, read-only.

Per Hub repo: whether it exists, its head commit, its files, whether they match what this machine built
(the artifacts recorded in dist/NAME/state.json whose inputs are current and files intact, the same ones
the manifest calls built), and the `release-NAME-*` staging branches jobs left. Per Ollama tag: the digest
of the registry's manifest against the local build's. Then what a publish would do next: the artifacts it
would build first, and the Hub and registry plan of what is built — the same plan `publish --dry-run`
makes (release/flow.py), so the two never disagree. Nothing is built, written remotely, or locked.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any

from .destinations import hub_token, ollama_registry
from .errors import InputError
from .ollama.build import load_builds
from .ollama.publish import plan_ollama
from .ollama.registry import RegistryClient
from .pipeline import Context, restore_recorded
from .quality.facts import withheld

BUILT = ("built", "published")


@dataclass
class RepoStatus:
    repo: str
    url: str
    exists: bool = False
    head: str | None = None
    files: int = 0
    bytes: int = 0
    matches: bool | None = None  # None: nothing built here to compare with
    differing: list[str] = field(default_factory=list)  # built here, absent or other content there
    extra: list[str] = field(default_factory=list)  # there, not part of what is built here
    staging: dict[str, str] = field(default_factory=dict)  # release-NAME-* branch → head


@dataclass
class TagStatus:
    ref: str  # model:tag
    digest: str | None = None  # of the registry's manifest; None: no such tag
    built: str | None = None  # of the manifest built here
    matches: bool | None = None


@dataclass
class StatusReport:
    release: str
    hub: str
    registry: str
    repos: list[RepoStatus] = field(default_factory=list)
    tags: list[TagStatus] = field(default_factory=list)
    to_build: list[str] = field(default_factory=list)  # what a publish would make first
    next: list[dict[str, Any]] = field(default_factory=list)  # per destination: files a publish would send

    @property
    def in_sync(self) -> bool:
        return not self.to_build and all(r.matches for r in self.repos) and all(t.matches for t in self.tags) \
            and not any(r.staging for r in self.repos)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "in_sync": self.in_sync}


def release_status(ctx: Context) -> StatusReport:
    from .publish.hub import HubPublisher  # lazy: huggingface_hub at start-up

    restore_recorded(ctx)
    reg = ctx.artifacts
    pub = HubPublisher(ctx.options.hub_endpoint, hub_token(ctx), hash_cache=ctx.hash_cache)
    o = ctx.release.definition.ollama
    report = StatusReport(ctx.release.name, pub.endpoint, ollama_registry(ctx) if o is not None else "")
    report.to_build = [a.id for a in reg if a.status not in BUILT and a.destination is not None]
    # What a publish would send: built, bound for the Hub, not withheld by the quality thresholds.
    built = [a for a in reg if a.status in BUILT and a.destination is not None and a.destination.kind == "hub"
             and not withheld(ctx.release, reg, a)]
    plan = pub.plan(built, ctx.dist) if built else None
    repos = dict.fromkeys(a.destination.repo for a in reg if a.destination and a.destination.kind == "hub")
    for repo in repos:
        rs = RepoStatus(repo, pub.url(repo))
        rs.head = pub.head(repo)
        rs.exists = rs.head is not None
        if rs.exists:
            tree = pub.tree(repo, rs.head)  # type: ignore[arg-type]
            rs.files, rs.bytes = len(tree), sum(int(f.size or 0) for f in tree.values())
            prefix = f"release-{ctx.release.name}-"
            rs.staging = {b: h for b, h in pub.branches(repo).items() if b.startswith(prefix)}
        rp = next((r for r in plan.repos if r.repo == repo), None) if plan is not None else None
        if rp is not None:
            rs.differing = [f.path for f in rp.files if f.action in ("upload", "copy")]
            rs.extra = [f.path for f in rp.files if f.action in ("keep", "delete")]
            rs.matches = rs.exists and not rs.differing
            sending = [{"path": f.path, "size": f.size, "action": f.action} for f in rp.files
                       if f.action in ("upload", "copy", "delete")]
            if sending:
                report.next.append({"destination": repo, "files": sending})
        report.repos.append(rs)
    if o is not None:
        _ollama_status(ctx, report)
    return report


def _ollama_status(ctx: Context, report: StatusReport) -> None:

    o = ctx.release.definition.ollama
    assert o is not None
    try:
        _, latest, builds = load_builds(ctx.dist / "ollama")
    except InputError:
        builds, latest = [], o.latest  # nothing built here yet
    local = {b.tag: b.manifest_digest for b in builds}
    if latest in local:
        local["latest"] = local[latest]
    client = RegistryClient(report.registry, insecure=o.insecure)
    try:
        for tag in [*o.tags, "latest"]:
            got = client.get_manifest(o.model, tag)
            digest = (got[1] or f"sha256:{hashlib.sha256(got[0]).hexdigest()}") if got else None
            ts = TagStatus(f"{o.model}:{tag}", digest=digest, built=local.get(tag))
            ts.matches = None if ts.built is None else ts.digest == ts.built
            report.tags.append(ts)
    finally:
        client.close()
    if builds:
        for aid, files in plan_ollama(ctx.dist / "ollama", registry=report.registry, insecure=o.insecure).items():
            sending = [{"path": f.path, "size": f.size, "action": f.action} for f in files
                       if f.action not in ("unchanged", "keep")]
            if sending:
                report.next.append({"destination": f"{o.model}:{aid.split(':', 1)[1]}", "files": sending})
