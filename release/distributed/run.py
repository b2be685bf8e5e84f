"""`release publish NAME --job ID`: one job of the plan on this machine.

    check free disk and memory → nothing to do when this definition is promoted already (its promotion
    record) → read the records of the units it needs → for each of its units, nothing to do if the
    unit's record holds the same key and its files are intact on its branch → fetch the inputs of the
    others from the staging branches (size and sha256 checked against the records) → build
    (release/pipeline.py) → verify → per unit: push the Ollama model blobs it made (by digest, no
    manifest) → commit its outputs and its record to `release-<name>-<unit>` of each destination repo it
    writes, in one commit per repo (a repo that does not exist is created private; the record rides in
    the last commit if the Hub's per-commit limits ever split one).

Main of every destination is never touched. A job killed anywhere is rerun as is: built files are
restored from state.json, LFS objects already on the Hub are not sent again, commits check the branch
head they were planned against. A unit's record that cannot be read is replaced by the rerun (finish
refuses it, naming it, until then). Units, not jobs, are staged: a job packed differently after a change
of estimates or budgets finds its units staged and does nothing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..destinations import HubDestination, hub_publisher
from ..errors import InputError, RemoteError, WorkError
from ..fsutil import atomic_write_text, link_or_copy, sha256_file
from ..manifest import Artifact, Destination, FileEntry
from ..ollama import layers as L
from ..ollama.registry import RegistryClient
from ..pipeline import Context, ensure
from ..steps import BASE
from ..verify import verify_release
from .jobs import GB, Job, JobInput, JobPlan, Unit, plan_jobs
from .keys import definition_key, promoted, unit_key
from .records import (
    UnitRecord,
    git_sha1s,
    path_in_repo,
    read_record,
    record_path,
    stage_repo,
    staged_problems,
    staging_branch,
)

if TYPE_CHECKING:
    from ..publish.hub import HubPublisher


@dataclass
class JobSummary:
    release: str
    job: str
    dry_run: bool
    skipped: bool = False  # every unit already staged for the same inputs (or the release promoted)
    built: list[str] = field(default_factory=list)
    fetched_files: int = 0
    fetched_bytes: int = 0  # downloaded from staging branches (files already here are not)
    uploaded_files: int = 0
    uploaded_bytes: int = 0
    commits: int = 0
    ollama_blobs: dict[str, str] = field(default_factory=dict)  # digest → exists | uploaded
    ollama_bytes: int = 0
    branches: list[str] = field(default_factory=list)  # the staging branch of each unit
    units: dict[str, str] = field(default_factory=dict)  # unit → staged | already staged | would stage
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_resources(ctx: Context, job: Job) -> None:
    """Refuse before anything is written when this machine lacks the job's disk or memory."""
    from ..gguf.build import mem_available  # lazy: the GGUF builder loads numpy and gguf (~0.35 s)

    folder = ctx.dist
    while not folder.exists():
        folder = folder.parent
    free = shutil.disk_usage(folder).free
    here = sum(p.stat().st_size for p in ctx.dist.rglob("*") if p.is_file()) if ctx.dist.is_dir() else 0
    need = max(job.disk_gb * GB - here, 0)
    problems = []
    if free < need:
        problems.append(f"{need / GB:.1f} GB of free disk under {folder} (there are {free / GB:.1f} GB)")
    ram = mem_available()
    if ram < job.ram_gb * GB:
        problems.append(f"{job.ram_gb:.1f} GB of available memory (there are {ram / GB:.1f} GB)")
    if problems:
        raise WorkError(f"job {job.id} needs " + " and ".join(problems) + "; nothing was done "
                        f"(runner {job.runner!r}; see `release plan {ctx.release.name} --matrix`)")


def adopt_upstream(ctx: Context, plan: JobPlan, job: Job, pub: HubPublisher) -> dict[str, UnitRecord]:
    """Read the records of the units `job` takes inputs from and put their artifacts into the registry as
    built (their files stay on the Hub until fetched)."""
    records: dict[str, UnitRecord] = {}
    for unit_id in dict.fromkeys(i.unit for i in job.inputs if i.unit):
        rerun = f"`release publish {ctx.release.name} --job {plan.job_of_unit(unit_id).id}`"
        try:
            rec = read_record(pub, ctx, plan.unit(unit_id))
        except RemoteError as exc:
            raise RemoteError(f"{exc}; rerun {rerun}") from None
        if rec is None:
            raise RemoteError(f"{unit_id} has not staged its outputs yet (no record on "
                              f"{staging_branch(ctx.release.name, unit_id)}); run {rerun} first")
        for a in rec.artifacts:
            a.needs = ctx.artifacts[a.id].needs if a.id in ctx.artifacts else a.needs
            a.status = "built"
            ctx.adopt(a)
        records[unit_id] = rec
    return records


def fetch_inputs(ctx: Context, inputs: list[JobInput], records: dict[str, UnitRecord], pub: HubPublisher,
                 summary: JobSummary) -> None:
    """Download `inputs` from the staging branches, each file checked against its record."""
    for inp in inputs:
        if inp.unit == "":
            continue  # the base: fetched by the bf16 step itself
        rec = records[inp.unit]
        a = ctx.artifacts[inp.id]
        repo = rec.repos[a.id]
        for f in a.files:
            local = ctx.artifact_dir(a) / f.path
            if local.is_file() and local.stat().st_size == f.size and ctx.hash_cache.sha256(local) == f.sha256:
                continue
            got = pub.download(repo, path_in_repo(a, f.path), rec.branch, ctx.dist / ".hub-cache").resolve()
            if got.stat().st_size != f.size or sha256_file(got) != f.sha256:
                raise RemoteError(f"{repo}@{rec.branch}/{path_in_repo(a, f.path)} does not match the record of "
                                  f"{inp.unit} (size or sha256); rerun `release publish {ctx.release.name} "
                                  f"--job {inp.job}`")
            link_or_copy(got, local)
            ctx.hash_cache.remember(local, f.sha256 or "")
            summary.fetched_files += 1
            summary.fetched_bytes += f.size or 0
        ctx.state.record(a, rec.inputs[a.id])
    ctx.hash_cache.save()


def run_job(ctx: Context, job_id: str, plan: JobPlan | None = None) -> JobSummary:
    plan = plan or plan_jobs(ctx)
    job = plan.job(job_id)
    if job.stage == "finish":
        raise InputError("finish is not a job to run with --job: use `release publish NAME --finish`", file="--job")
    units = [plan.unit(u) for u in job.units]
    summary = JobSummary(ctx.release.name, job.id, ctx.options.dry_run,
                         branches=[staging_branch(ctx.release.name, u.id) for u in units])
    check_resources(ctx, job)
    pub = hub_publisher(ctx)
    if promoted(ctx, pub, definition_key(ctx, plan)) is not None:  # before any record is adopted
        summary.skipped = True
        summary.notes.append(f"{ctx.release.name} is promoted already for this definition (its promotion record): "
                             "nothing to do")
        return summary
    records = adopt_upstream(ctx, plan, job, pub)
    todo: list[tuple[Unit, str]] = []
    for unit in units:
        key = unit_key(ctx, unit)
        try:
            mine = read_record(pub, ctx, unit)
        except RemoteError as exc:
            summary.notes.append(f"{exc}: staging {unit.id} again replaces it")
            mine = None
        if mine is not None and mine.key == key and not staged_problems(pub, mine) and _blobs_present(ctx, mine):
            summary.units[unit.id] = "already staged"
            summary.notes.append(f"{unit.id}: already staged on {mine.branch} for the same inputs")
            continue
        todo.append((unit, key))
    if not todo:
        summary.skipped = True
        return summary
    making = [i for unit, _ in todo for i in unit.artifacts]
    fetch_inputs(ctx, [i for i in job.inputs if any(i.id in ctx.artifacts[m].needs for m in making)], records,
                 pub, summary)
    # What is made from the base first (built and verified), then the base is freed, then the rest:
    # a job's peak disk is the base or its products, not both with everything else.
    first = [i for i in making if BASE in ctx.artifacts[i].needs]
    with ctx.live():
        summary.built = ensure(ctx, first)
        verify_release(ctx, [ctx.artifacts[i] for i in first])
        if first:
            free_base(ctx)
        summary.built += ensure(ctx, making)
    ctx.write_manifest()
    verify_release(ctx, [ctx.artifacts[i] for i in making])
    for unit, key in todo:
        _stage(ctx, pub, job, unit, key, summary)
    return summary


def _stage(ctx: Context, pub: HubPublisher, job: Job, unit: Unit, key: str, summary: JobSummary) -> None:
    """The unit's model blobs on the registry, then its outputs and its record on its branch in one commit
    per repo: the record exists only once everything it names does."""
    made = [ctx.artifacts[i] for i in unit.artifacts]
    branch = staging_branch(ctx.release.name, unit.id)
    if ctx.options.dry_run:
        stage = pub.plan(made, ctx.dist, revision=branch, repo_of=lambda a: stage_repo(ctx, a))
        planned = HubDestination(pub, stage, message=f"Stage {unit.id} of {ctx.release.name}").plan()
        summary.uploaded_files += sum(r.sent for r in planned)  # a unit stages uploads (copies are finish's)
        summary.uploaded_bytes += sum(r.planned_bytes for r in planned)
        summary.notes += [rp.summary() for rp in stage.repos]
        summary.units[unit.id] = "would stage"
        return
    ollama = _push_model_blobs(ctx, [t for t in job.ollama_blobs if ctx.artifacts[t].recipe["gguf"] in unit.artifacts],
                               summary)
    rec = UnitRecord(release=ctx.release.name, unit=unit.id, key=key, tool_version=__version__,
                     artifacts=made, inputs={a.id: ctx.state.get(a.id)["inputs"] for a in made},  # type: ignore[index]
                     repos={a.id: stage_repo(ctx, a) for a in made},  # type: ignore[misc]
                     git_sha1=git_sha1s(ctx, made), ollama_blobs=ollama)
    carriers = _record_carriers(ctx, rec)
    stage = pub.plan([*made, *carriers], ctx.dist, revision=branch,
                     repo_of=lambda a: a.recipe["repo"] if a.kind == "record" else stage_repo(ctx, a))
    records = {a.id for a in carriers}
    for rp in stage.repos:
        for pf in rp.files:
            pf.last = pf.artifact in records
    outputs = [pf for rp in stage.repos for pf in rp.uploads if not pf.last]
    summary.uploaded_files += len(outputs)
    summary.uploaded_bytes += sum(pf.size for pf in outputs)
    staged = HubDestination(pub, stage, message=f"Stage {unit.id} of {ctx.release.name}")
    summary.commits += sum(len(r.commits) for r in staged.send("commit"))
    summary.units[unit.id] = "staged"


def free_base(ctx: Context) -> None:
    """Drop the base checkpoint this job downloaded into the Hugging Face cache (a job's machine is
    disposable; a base given as a local folder or generated is left alone)."""
    base = ctx.release.definition.base
    if base.generator or (base.path and (ctx.release.path(base.path) / "config.json").is_file()):
        return
    from huggingface_hub import scan_cache_dir

    try:
        cache = scan_cache_dir()
    except Exception:  # no cache, or one the client cannot read: nothing of ours to free
        return
    hashes = [rev.commit_hash for repo in cache.repos if repo.repo_id == base.repo and repo.repo_type == "model"
              for rev in repo.revisions if rev.commit_hash == base.revision]
    if hashes:
        strategy = cache.delete_revisions(*hashes)
        strategy.execute()
        ctx.say(f"freed the base checkpoint ({strategy.expected_freed_size / 1e9:.2f} GB) from the Hugging Face "
                "cache: what this job makes from it is built and verified")


def _push_model_blobs(ctx: Context, tag_ids: list[str], summary: JobSummary) -> dict[str, str]:
    """Each Ollama tag's model layer is a GGUF this job made: push it by digest now (no manifest: the
    registry shows nothing new), so finish never moves a weight."""

    o = ctx.release.definition.ollama
    if o is None or not tag_ids:
        return {}
    registry = ctx.options.ollama_registry or o.registry
    client = RegistryClient(registry, insecure=o.insecure)
    pushed: dict[str, str] = {}
    try:
        for tag_id in tag_ids:
            g = ctx.artifacts[ctx.artifacts[tag_id].recipe["gguf"]]
            f = g.files[0]
            blob = L.Blob(L.MT_MODEL, f"sha256:{f.sha256}", f.size or 0)
            how, sent = client.upload_blob(o.model, blob, ctx.artifact_dir(g) / f.path)
            if client.blob_size(o.model, blob.digest, push=True) != blob.size:
                raise RemoteError(f"{client.host}: {o.model} lacks blob {blob.digest[:19]} after pushing it")
            summary.ollama_blobs[blob.digest] = how
            summary.ollama_bytes += sent
            pushed[tag_id] = blob.digest
            ctx.say(f"ollama: model blob of {tag_id} {blob.digest[7:19]}: {how}")
    finally:
        client.close()
    return pushed


def _blobs_present(ctx: Context, rec: UnitRecord) -> bool:

    o = ctx.release.definition.ollama
    if not rec.ollama_blobs or o is None:
        return True
    client = RegistryClient(ctx.options.ollama_registry or o.registry, insecure=o.insecure)
    try:
        sizes = {a.files[0].sha256: a.files[0].size for a in rec.artifacts if a.files}
        return all(client.blob_size(o.model, d, push=True) == sizes.get(d.removeprefix("sha256:"))
                   for d in rec.ollama_blobs.values())
    finally:
        client.close()


def _record_carriers(ctx: Context, rec: UnitRecord) -> list[Artifact]:
    """The record, written here, as one artifact per repo the unit stages to: it is committed with the
    unit's outputs, in the last commit of each branch, so it exists only once everything it names does."""
    local = ctx.dist / record_path(rec.unit)
    atomic_write_text(local, json.dumps(rec.to_json(), indent=1, sort_keys=True) + "\n")
    return [Artifact(id=f"record:{repo}", kind="record", status="built", root="",
                     files=[FileEntry(record_path(rec.unit))], recipe={"repo": repo},
                     destination=Destination(kind="hub", repo=repo)) for repo in sorted(set(rec.repos.values()))]

