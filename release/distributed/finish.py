"""`release publish NAME --finish`: promote what every job staged, atomically per destination.

    read every job's record → check each against the key this definition gives (stale jobs are refused)
    and against the Hub's tree metadata of its branch (no weight is downloaded) → make finish's own
    artifacts from the records (cards, Ollama tags, side files) → verify them → Ollama blobs (the
    models were pushed by the jobs: only checked) → one commit per repo on main that copies the staged
    files server-side and adds the cards and small files (a copy moves no bytes: nothing but the Hub's
    files-per-commit limit could split it, and no v4 repo comes near) → Ollama manifests → tags,
    collection → delete the staging branches → the git tag.

Until that commit, main of every destination holds what it held before (a repo that did not exist is
created empty by the first job that stages to it). A second finish finds the files on main already and
makes no commit; once the branches are gone it recognises the release by its tag on every main.
"""

from __future__ import annotations

from typing import Any

from ..errors import RemoteError
from ..flow import PublishSummary, refuse_removed_conflicts, send
from ..pipeline import Context, ensure
from ..publish.hubplan import HubPlan, PlannedFile, RepoPlan
from ..quality.facts import withheld
from .jobs import JobPlan, plan_jobs
from .records import JobRecord, read_record, stage_repo, staged_problems, staging_branch
from .run import hub_publisher, job_key


def run_finish(ctx: Context, *, git_tag: bool = True) -> PublishSummary:
    from ..verify import verify_release

    plan = plan_jobs(ctx)
    finish = plan.job("finish")
    summary = PublishSummary(dry_run=ctx.options.dry_run)
    pub = hub_publisher(ctx)
    d = ctx.release.definition
    tag = d.release.version_tag or ctx.release.name
    repos = sorted({a.destination.repo for a in ctx.artifacts
                    if a.destination is not None and a.destination.kind == "hub"})
    records: dict[str, JobRecord] = {}
    missing: list[str] = []
    for job in plan.jobs:
        if job.stage == "finish":
            continue
        rec = read_record(pub, ctx, job)
        if rec is None:
            missing.append(job.id)
        else:
            records[job.id] = rec
    if missing:
        if _promoted(pub, repos, tag):
            _delete_branches(ctx, plan, pub, summary)
            summary.notes.append(f"release {ctx.release.name} is already promoted (tag {tag} on main of every "
                                 "repo, no staging left): nothing to do")
            return summary
        raise RemoteError(f"not staged yet: {', '.join(missing)}; run `release publish {ctx.release.name} "
                          "--job ID` for each (see `release plan --matrix`) before --finish")
    _adopt(ctx, plan, records, pub)

    with ctx.live():
        summary.built = ensure(ctx, finish.artifacts)
    ctx.write_manifest()
    verify_release(ctx, [ctx.artifacts[i] for i in finish.artifacts])
    refuse_removed_conflicts(ctx)

    promotion = _promotion_plan(ctx, pub, records, repos)
    tags = any(ctx.artifacts[i].kind == "ollama" for i in finish.artifacts)
    return send(ctx, summary, pub, promotion, tags, git_tag=git_tag,
                after_tags=lambda: _delete_branches(ctx, plan, pub, summary))


def _adopt(ctx: Context, plan: JobPlan, records: dict[str, JobRecord], pub: Any) -> None:
    """Put every staged artifact into the registry, after checking that its job ran for this
    definition (same key) and that its branch holds exactly what the record says."""
    for job in plan.jobs:  # needs first: a job's key is computed from its upstream records
        rec = records.get(job.id)
        if rec is None:
            continue
        expected = job_key(ctx, job)
        if rec.key != expected:
            raise RemoteError(f"job {job.id} staged outputs for other inputs than this definition gives "
                              f"(the definition or an upstream job changed since); rerun `release publish "
                              f"{ctx.release.name} --job {job.id}`")
        problems = staged_problems(pub, rec)
        if problems:
            raise RemoteError(f"job {job.id}: staging differs from its record; rerun the job:\n  "
                              + "\n  ".join(problems[:10]))
        for a in rec.artifacts:
            a.needs = ctx.artifacts[a.id].needs
            a.status = "built"
            ctx.adopt(a)


def _promotion_plan(ctx: Context, pub: Any, records: dict[str, JobRecord], repos: list[str]) -> HubPlan:
    """Per repo: finish's own files (cards, side files) planned as usual, plus every staged file that
    main lacks as a server-side copy from its job's branch."""
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
            if pub._same(pf, trees[repo].get(path)):
                pf.action = "unchanged"
            rp.files = [f for f in rp.files if f.path != path] + [pf]
    for rp in plan.repos:
        rp.files.sort(key=lambda f: f.path)
        pub.say(rp.summary())
    plan.artifacts += [a for rec in records.values() for a in rec.artifacts
                       if a.destination is not None and a.destination.kind == "hub"]
    return plan


def _staged(artifact_id: str, records: dict[str, JobRecord]) -> bool:
    return any(artifact_id in rec.repos for rec in records.values())


def _promoted(pub: Any, repos: list[str], tag: str) -> bool:
    for repo in repos:
        head = pub.head(repo)
        if head is None or pub.tag_target(repo, tag) != head:
            return False
    return bool(repos)


def _delete_branches(ctx: Context, plan: JobPlan, pub: Any, summary: PublishSummary) -> None:
    deleted = 0
    for job in plan.jobs:
        if job.stage == "finish":
            continue
        branch = staging_branch(ctx.release.name, job.id)
        for repo in sorted({r for i in job.artifacts if (r := stage_repo(ctx, ctx.artifacts[i]))}):
            if branch in pub.branches(repo):
                pub.delete_branch(repo, branch)
                deleted += 1
    if deleted:
        summary.notes.append(f"deleted {deleted} staging branches")

