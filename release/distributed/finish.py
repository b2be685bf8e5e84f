"""`release publish NAME --finish`: promote what every unit staged, atomically per destination.

    promoted already for this definition (its promotion record)? → only what an interrupted finish left:
    the units' branches, the git tag (from the record's message)
    otherwise: read every unit's record (one missing: refuse, nothing deleted; one unreadable: refuse,
    naming it) → check each against the key this definition gives and against the Hub's tree metadata of
    its branch (no weight is downloaded) → make finish's own artifacts from the records (cards, Ollama
    tags, side files) → verify them → Ollama blobs (the models were pushed by the jobs: only checked) →
    one commit per repo on main that copies the staged files server-side and adds the cards and small
    files (a copy moves no bytes: nothing but the Hub's files-per-commit limit could split it, and no v4
    repo comes near) → Ollama manifests → visibility (public, unless `[release] private`) → tags, collection → the
    promotion record → delete the units' branches → the git tag.

Every step is idempotent and the evidence a rerun needs outlives it: the units' records until the
promotion record is written, the promotion record until `release clean NAME --staging`. So a finish
killed anywhere, rerun on a fresh machine (no dist, no git identity, a fresh checkout without the tag),
completes without committing anything twice. Until the commit on main, main of every destination holds
what it held before (a repo that did not exist is created private and empty by the first job that
stages to it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .. import __version__
from ..destinations import hub_publisher
from ..errors import RemoteError
from ..flow import PublishSummary, refuse_removed_conflicts, release_record, send
from ..fsutil import atomic_write_text
from ..gittag import tag_pipelines_repo
from ..manifest import Artifact, Destination, FileEntry
from ..pipeline import Context, ensure
from ..publish.hubplan import HubPlan, PlannedFile, RepoPlan, same_content
from ..quality.facts import withheld
from ..verify import verify_release
from .jobs import JobPlan, plan_jobs
from .keys import definition_key, promoted, unit_key
from .records import (
    PROMOTION,
    PromotionRecord,
    UnitRecord,
    promotion_repo,
    read_record,
    record_path,
    staged_problems,
    staging_branch,
    unit_repos,
)

if TYPE_CHECKING:
    from ..publish.hub import HubPublisher


def run_finish(ctx: Context, *, git_tag: bool = True) -> PublishSummary:
    plan = plan_jobs(ctx)
    finish = plan.job("finish")
    summary = PublishSummary(dry_run=ctx.options.dry_run)
    pub = hub_publisher(ctx)
    key = definition_key(ctx, plan)  # before any record is adopted
    done = promoted(ctx, pub, key)
    if done is not None:
        summary.notes.append(f"{ctx.release.name} is promoted already for this definition (promotion record on "
                             f"{staging_branch(ctx.release.name, PROMOTION)} of {promotion_repo(ctx)})")
        if not summary.dry_run:
            _delete_branches(ctx, plan, pub, summary)
            if git_tag:
                summary.git_tag = tag_pipelines_repo(ctx, done.message, move=ctx.options.move_tags)
        return summary
    records = _read_records(ctx, plan, pub)
    _adopt(ctx, plan, records, pub)

    with ctx.live():
        summary.built = ensure(ctx, finish.artifacts)
    ctx.write_manifest()
    verify_release(ctx, [ctx.artifacts[i] for i in finish.artifacts])
    refuse_removed_conflicts(ctx)

    repos = sorted({a.destination.repo for a in ctx.artifacts
                    if a.destination is not None and a.destination.kind == "hub"})
    promotion = _promotion_plan(ctx, pub, records, repos)
    tags = any(ctx.artifacts[i].kind == "ollama" for i in finish.artifacts)
    send(ctx, summary, pub, promotion, tags)
    if summary.dry_run:
        return summary
    message = release_record(ctx, summary)
    _write_promotion(ctx, pub, PromotionRecord(ctx.release.name, key, message, repos))
    _delete_branches(ctx, plan, pub, summary)
    if git_tag:
        summary.git_tag = tag_pipelines_repo(ctx, message, move=ctx.options.move_tags)
    return summary


def _read_records(ctx: Context, plan: JobPlan, pub: HubPublisher) -> dict[str, UnitRecord]:
    """Every unit's record; refuses (nothing written, nothing deleted) when one is missing or unreadable."""
    records: dict[str, UnitRecord] = {}
    missing: list[str] = []
    for unit in plan.units:
        try:
            rec = read_record(pub, ctx, unit)
        except RemoteError as exc:
            raise RemoteError(f"{exc}; rerun `release publish {ctx.release.name} --job "
                              f"{plan.job_of_unit(unit.id).id}` (it replaces the record) before --finish") from None
        if rec is None:
            missing.append(plan.job_of_unit(unit.id).id)
        else:
            records[unit.id] = rec
    if missing:
        raise RemoteError(f"not staged yet: {', '.join(dict.fromkeys(missing))}; run `release publish "
                          f"{ctx.release.name} --job ID` for each (see `release plan --matrix`) before --finish; "
                          "nothing was changed")
    return records


def _adopt(ctx: Context, plan: JobPlan, records: dict[str, UnitRecord], pub: HubPublisher) -> None:
    """Put every staged artifact into the registry, after checking that its unit was staged for this
    definition (same key) and that its branch holds exactly what the record says."""
    for unit in plan.units:  # needs first: a unit's key is computed from its upstream records
        rec = records[unit.id]
        rerun = f"`release publish {ctx.release.name} --job {plan.job_of_unit(unit.id).id}`"
        if rec.key != unit_key(ctx, unit):
            raise RemoteError(f"{unit.id} staged outputs for other inputs than this definition gives (the "
                              f"definition or an upstream unit changed since); rerun {rerun}")
        problems = staged_problems(pub, rec)
        if problems:
            raise RemoteError(f"{unit.id}: staging differs from its record; rerun {rerun}:\n  "
                              + "\n  ".join(problems[:10]))
        for a in rec.artifacts:
            a.needs = ctx.artifacts[a.id].needs
            a.status = "built"
            ctx.adopt(a)


def _promotion_plan(ctx: Context, pub: HubPublisher, records: dict[str, UnitRecord], repos: list[str]) -> HubPlan:
    """Per repo: finish's own files (cards, side files) planned as usual, plus every staged file that
    main lacks as a server-side copy from its unit's branch."""
    local = [a for a in ctx.artifacts if a.destination is not None and a.destination.kind == "hub"
             and a.status == "built" and a.root and not _staged(a.id, records)]
    plan = pub.plan(local, ctx.dist)
    by_repo = {rp.repo: rp for rp in plan.repos}
    for repo in repos:
        if repo not in by_repo:
            head = pub.head(repo)
            by_repo[repo] = RepoPlan(repo=repo, url=pub.url(repo), exists=head is not None, head=head)
            plan.repos.append(by_repo[repo])
    trees = {rp.repo: pub.tree(rp.repo, rp.head) if rp.head else {} for rp in plan.repos}
    for rec in records.values():
        for repo, path, a, size, sha256 in rec.staged_files():
            if a.destination is None or a.destination.kind != "hub":
                continue  # made to be fetched (an unpublished baseline, a measurement), never promoted
            if withheld(ctx.release, ctx.artifacts, a):
                continue  # removed by [quality]'s thresholds: built and measured, not published
            rp = by_repo[repo]
            pf = PlannedFile(path=path, action="copy", size=size, sha256=sha256, artifact=a.id,
                             git_sha1=rec.git_sha1.get(f"{repo}/{path}"), source_revision=rec.branch)
            if same_content(pf, trees[repo].get(path)):
                pf.action = "unchanged"
            rp.files = [f for f in rp.files if f.path != path] + [pf]
    for rp in plan.repos:
        rp.files.sort(key=lambda f: f.path)
        pub.say(rp.summary())
    plan.artifacts += [a for rec in records.values() for a in rec.artifacts
                       if a.destination is not None and a.destination.kind == "hub"]
    return plan


def _staged(artifact_id: str, records: dict[str, UnitRecord]) -> bool:
    return any(artifact_id in rec.repos for rec in records.values())


def _write_promotion(ctx: Context, pub: HubPublisher, rec: PromotionRecord) -> None:
    """The promotion record on its branch (made from main): the evidence a rerun needs once the units'
    branches are gone. An identical record makes no commit."""
    repo = promotion_repo(ctx)
    if repo is None:
        return
    path = record_path(PROMOTION)
    atomic_write_text(ctx.dist / path, json.dumps(rec.to_json(), indent=1, sort_keys=True) + "\n")
    carrier = Artifact(id="record:promotion", kind="record", status="built", root="", files=[FileEntry(path)],
                       recipe={"tool_version": __version__}, destination=Destination(kind="hub", repo=repo))
    branch = staging_branch(ctx.release.name, PROMOTION)
    # A promotion record of an earlier release (another key) is replaced on its own branch.
    plan = pub.plan([carrier], ctx.dist, revision=branch)
    pub.apply(plan, message=f"Promotion record of {ctx.release.name}")


def _delete_branches(ctx: Context, plan: JobPlan, pub: HubPublisher, summary: PublishSummary) -> None:
    """The units' staging branches (the promotion record's stays: see the module docstring)."""
    deleted = 0
    for unit in plan.units:
        branch = staging_branch(ctx.release.name, unit.id)
        for repo in unit_repos(ctx, unit):
            if branch in pub.branches(repo):
                pub.delete_branch(repo, branch)
                deleted += 1
    if deleted:
        summary.notes.append(f"deleted {deleted} staging branches")
