"""The job plan: the flow's artifact graph (release/steps.py) cut into jobs in which nothing is made twice.

    prepare   what several others are made from (base → bf16 → F16 → imatrix, the quality reference): made
              once, staged once
    build     each remaining heavy artifact with what is made from it alone (a GGUF tier and its quality
              measurement, or a few such tiers sharing one download of the baseline; NVFP4 and its
              measurement), fetching only what it needs from prepare's staging branches
    finish    cards, Ollama tags, side files: made from the jobs' records, then promoted atomically

The cut is derived, not listed: `finish` takes what describes others (cards) or only wraps them
(Ollama tags, the definition's side files); of the rest, an artifact another one needs goes to
`prepare`, and every leaf gets a unit of its own.

A unit is what is staged and recorded: a leaf and what it alone needs (a tier and its measurement;
NVFP4 and its measurement), `prepare`, or an artifact with a stage of its own (a derived drop map). Its
id comes from its leaf artifact (`gguf-q4_k_m`, `nvfp4`, `prepare`) and names its staging branch, so it
never changes with an estimate, the held-out text or the packing budgets. A job is a pack of units run
on one machine, named by its first unit: tiers with the same needs are packed together while the job
stays within the definition's `[jobs]` budgets (repacking changes job ids, never units or branches).

Each job carries what a runner must have: the inputs it fetches, and estimates of its peak disk, RAM
and hours for the planned sizes. The estimates use the throughputs below: assumptions, stated so a
reader can redo them, not measurements of any particular runner.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from ..context import BASE
from ..costs import (  # the throughputs and budgets of the job plan live with the costs they price
    CORES,
    DISK_GB,
    DOWNLOAD_BPS,
    GB,
    OVERHEAD_GB,
    RAM_GB,
    UPLOAD_BPS,
    artifact_size,
    measure_cost,
    quantize_cost,
)
from ..errors import InputError, Problem
from ..kinds import kind_of
from ..pipeline import select
from ..steps import closure, topological

if TYPE_CHECKING:
    from ..context import Context
    from ..manifest import Artifact

STAGES = ("dropmap", "prepare", "build", "finish")


@dataclass
class JobInput:
    """One thing a job fetches: an artifact staged by another job, or the base checkpoint."""

    id: str  # artifact id, or "base"
    job: str  # the job that stages it ("" for the base: it comes from its own repo)
    size: int | None  # bytes
    unit: str = ""  # the unit whose branch and record hold it ("" for the base)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Unit:
    """What is staged on one branch with one record: `release-<name>-<id>`."""

    id: str
    stage: str
    artifacts: list[str]  # in build order

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Job:
    id: str
    stage: str
    artifacts: list[str]
    units: list[str] = field(default_factory=list)  # unit ids, the first names the job
    needs: list[str] = field(default_factory=list)  # job ids
    inputs: list[JobInput] = field(default_factory=list)
    disk_gb: float = 0.0
    ram_gb: float = 0.0
    hours: float = 0.0
    runner: str = ""  # standard | large | gpu (set by _estimate unless a step asks for one)
    ollama_blobs: list[str] = field(default_factory=list)  # tags whose model blob this job pushes

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "stage": self.stage, "artifacts": self.artifacts, "units": self.units,
                "needs": self.needs,
                "inputs": [i.to_json() for i in self.inputs], "disk_gb": round(self.disk_gb, 3),
                "ram_gb": round(self.ram_gb, 3), "hours": round(self.hours, 3), "runner": self.runner,
                "ollama_blobs": self.ollama_blobs}


@dataclass
class JobPlan:
    release: str
    jobs: list[Job]
    notes: list[str] = field(default_factory=list)
    units: list[Unit] = field(default_factory=list)  # needs first

    def job(self, job_id: str) -> Job:
        for j in self.jobs:
            if j.id == job_id:
                return j
        raise InputError(f"no job {job_id!r} in the plan of {self.release} (jobs: "
                         f"{', '.join(j.id for j in self.jobs)}; see `release plan {self.release} --matrix`)",
                         file="--job")

    def unit(self, unit_id: str) -> Unit:
        return next(u for u in self.units if u.id == unit_id)

    def job_of_unit(self, unit_id: str) -> Job:
        return next(j for j in self.jobs if unit_id in j.units)

    def of_artifact(self, artifact_id: str) -> Job:
        return next(j for j in self.jobs if artifact_id in j.artifacts)

    def stage(self, stage: str) -> list[Job]:
        return [j for j in self.jobs if j.stage == stage]

    def to_json(self) -> dict[str, Any]:
        """The fixed interface of `release plan NAME --matrix --json`: every job, and per stage the
        `include` list a GitHub Actions matrix takes (empty stages included, for `if:` guards)."""
        return {"release": self.release,
                "jobs": [j.to_json() for j in self.jobs],
                "units": [u.to_json() for u in self.units],
                "stages": {s: {"include": [{"job": j.id, "runner": j.runner} for j in self.stage(s)]}
                           for s in STAGES},
                "notes": self.notes}


def job_slug(text: str) -> str:
    """A job id part: lowercase, [a-z0-9_-] (it names a Hub branch and a CLI argument)."""
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")


def finish_side(a: Artifact) -> bool:
    """Made by `finish`: cards (they describe everything), Ollama tags (their model blob is pushed by the
    job that made the GGUF; the rest is small), and artifacts made from the definition alone."""
    return kind_of(a.kind).describes_all or kind_of(a.kind).wraps or not a.needs


def plan_jobs(ctx: Context) -> JobPlan:
    """The job plan of the release (or of what `--only` selects and its needs)."""
    reg = ctx.artifacts
    chosen = closure(reg, select(ctx))
    own_stage = [i for i in chosen if kind_of(reg[i].kind).stage]  # e.g. a derived drop map, on a GPU
    heavy = [i for i in chosen if not finish_side(reg[i]) and i not in own_stage]
    consumers = {i: [c for c in heavy if i in reg[c].needs] for i in heavy}
    # Shared: what two or more others are made from, and everything upstream of that.
    shared: set[str] = set()
    for i in heavy:
        if len(consumers[i]) >= 2:
            shared |= {n for n in closure(reg, [i]) if n in consumers}
    prepare = [i for i in heavy if i in shared]
    # Every other artifact leads to exactly one leaf: the leaf's unit is made on one machine.
    by_leaf: dict[str, list[str]] = {}
    for i in heavy:
        if i not in shared:
            leaf = i
            while consumers[leaf]:
                leaf = consumers[leaf][0]
            by_leaf.setdefault(leaf, []).append(i)
    d = ctx.release.definition
    budget = d.jobs
    own = [Unit(job_slug(i), kind_of(reg[i].kind).stage, [i]) for i in own_stage]
    leaves = list(by_leaf.values())
    build_units = [Unit(_unit_id(reg, u), "build", topological(reg, u)) for u in leaves]
    units = [*own, *([Unit("prepare", "prepare", prepare)] if prepare else []), *build_units]
    _refuse_same_ids(ctx, units)
    jobs = [Job(u.id, u.stage, u.artifacts, [u.id], runner=kind_of(reg[u.artifacts[0]].kind).runner) for u in own]
    if prepare:
        jobs.append(Job("prepare", "prepare", prepare, ["prepare"]))
    unit_of_leaf = {tuple(members): u for members, u in zip(leaves, build_units, strict=True)}
    for group in _groups(ctx, leaves, budget.tiers_per_job, budget.max_disk_gb, budget.max_hours):
        packed = [unit_of_leaf[tuple(members)] for members in group]
        jobs.append(Job(packed[0].id, "build", topological(reg, [i for members in group for i in members]),
                        [u.id for u in packed]))  # artifacts in build order
    finishing = [i for i in chosen if finish_side(reg[i])]
    if finishing or jobs:
        jobs.append(Job("finish", "finish", finishing))
    owner = {i: j.id for j in jobs for i in j.artifacts}
    unit_owner = {i: u.id for u in units for i in u.artifacts}
    for j in jobs:
        external = sorted({n for i in j.artifacts for n in reg[i].needs if owner.get(n, "") != j.id},
                          key=lambda n: (n != BASE, n))
        if j.stage == "finish":
            j.needs = [x.id for x in jobs if x is not j]
        else:
            j.needs = sorted({owner[n] for n in external if n != BASE})
            j.inputs = [JobInput(n, owner.get(n, ""), artifact_size(ctx, n), unit_owner.get(n, "")) for n in external]
        if j.stage == "build":
            j.ollama_blobs = [a.id for a in reg if a.kind == "ollama" and a.id in chosen
                              and a.recipe["gguf"] in j.artifacts]
        _estimate(ctx, j)
    plan = JobPlan(ctx.release.name, jobs, units=units)
    for j in plan.stage("build"):
        if j.disk_gb > budget.max_disk_gb or j.ram_gb > budget.max_ram_gb:
            plan.notes.append(f"{j.id} needs {j.disk_gb:.0f} GB of disk and {j.ram_gb:.0f} GB of RAM, over the "
                              f"fan-out budget ({budget.max_disk_gb:.0f} GB / {budget.max_ram_gb:.0f} GB): "
                              "it is planned for the large runner")
    return plan


def _unit_id(reg: Any, members: list[str]) -> str:
    """Named for the leaf it makes, a measurement for what it measures: gguf-q4_k_m, nvfp4."""
    leaf = ([i for i in members if not kind_of(reg[i].kind).measures] or members)[-1]
    kind, _, name = leaf.partition(":")
    return job_slug(f"{kind}-{name}" if name else kind)


def _refuse_same_ids(ctx: Context, units: list[Unit]) -> None:
    """Two leaves whose names differ only in case (or in characters a branch name cannot hold) would share
    a staging branch."""
    seen: dict[str, Unit] = {}
    for u in units:
        if u.id in seen:
            raise InputError(f"{seen[u.id].artifacts[-1]} and {u.artifacts[-1]} would share the staging branch "
                             f"release-{ctx.release.name}-{u.id}; rename one", file="release.toml", field="gguf.tiers")
        seen[u.id] = u


def _groups(ctx: Context, units: list[list[str]], per_job: int, max_disk_gb: float,
            max_hours: float) -> list[list[list[str]]]:
    """Units that need the same things from outside, packed first-fit (costliest first) within the count,
    disk and hour budgets; a group shares one download of what it needs. Units other than GGUF tiers
    stay alone."""
    reg = ctx.artifacts

    def external(unit: list[str]) -> tuple[str, ...]:
        return tuple(sorted({n for i in unit for n in reg[i].needs if n not in unit}))

    def cost(unit: list[str]) -> float:
        return sum(quantize_cost(ctx, i) + measure_cost(ctx, i) for i in unit)

    def size(unit: list[str]) -> int:
        return sum(artifact_size(ctx, i) or 0 for i in unit)

    by_needs: dict[tuple[str, ...], list[list[str]]] = {}
    for u in units:
        by_needs.setdefault(external(u), []).append(u)
    groups: list[list[list[str]]] = []
    for needs, members in by_needs.items():
        if len(members) == 1 or not any(kind_of(reg[i].kind).packs for i in members[0]):
            groups += [[m] for m in members]
            continue
        inputs_gb = sum((artifact_size(ctx, n) or 0) for n in needs if n != BASE) / GB
        packed: list[list[list[str]]] = []
        for m in sorted(members, key=lambda u: -cost(u)):
            for g in packed:
                disk = inputs_gb + sum(size(x) for x in [*g, m]) / GB + OVERHEAD_GB
                hours = sum(cost(x) for x in [*g, m]) / CORES["standard"] / 3600
                if len(g) < per_job and disk <= max_disk_gb and hours <= max_hours:
                    g.append(m)
                    break
            else:
                packed.append([m])
        order = {u[-1]: n for n, u in enumerate(members)}
        groups += sorted((sorted(g, key=lambda u: order[u[-1]]) for g in packed), key=lambda g: order[g[0][-1]])
    position = {u[-1]: n for n, u in enumerate(units)}
    return sorted(groups, key=lambda g: position[g[0][-1]])


def _estimate(ctx: Context, job: Job) -> None:
    """Peak disk and RAM, and hours, of one job for the planned sizes (release/costs.py). Transfers are
    serial; each artifact adds its kind's share (`Kind.cost`): serial seconds (pruning, conversion, reading
    checkpoints), core-seconds spread over the cores of the runner the job gets (the large one when disk or
    RAM exceed the standard one), and the memory of its step (the job's is the largest step's)."""
    reg = ctx.artifacts
    # What only wraps another kind's files (an Ollama tag made by finish) holds only small blobs there: its
    # model is the tier's GGUF, pushed by the job that made it.
    size = {i: (artifact_size(ctx, i) or 0) if not kind_of(reg[i].kind).wraps else 0 for i in job.artifacts}
    fetched = sum(i.size or 0 for i in job.inputs)
    made = sum(size.values())
    ram = 1.0
    serial = fetched / DOWNLOAD_BPS + made / UPLOAD_BPS
    cpu = 0.0  # core-seconds
    # A job frees a downloaded base once what is made from it is built and verified (run.free_base):
    # the peak is the base beside those, or them beside everything else, whichever is larger.
    base = sum(i.size or 0 for i in job.inputs if i.id == BASE)
    from_base = sum(size[i] for i in job.artifacts if BASE in reg[i].needs)
    disk = fetched - base + max(base + from_base, made)
    for i in job.artifacts:
        cost = kind_of(reg[i].kind).cost(ctx, reg[i], job)
        serial += cost.serial_s
        cpu += cost.cpu_s
        ram = max(ram, cost.ram_gb)
        disk += cost.disk
    job.disk_gb = disk / GB + OVERHEAD_GB
    job.ram_gb = ram
    fits_standard = job.disk_gb <= DISK_GB["standard"] and job.ram_gb <= RAM_GB["standard"]
    if not job.runner or job.runner == "standard":
        job.runner = "standard" if fits_standard or job.stage == "finish" else "large"
    job.hours = (serial + cpu / CORES.get(job.runner, CORES["standard"])) / 3600


# -- runner fit ----------------------------------------------------------------------------------------
# The repository variables that give a job planned for a runner class its runner label
# (.github/workflows/release.yml); without one, the workflow runs the job on a standard hosted runner.
RUNNER_VARIABLES = {"large": "RELEASE_LARGE_RUNNER", "gpu": "RELEASE_GPU_RUNNER"}
STANDARD_RUNNER = "ubuntu-24.04"


def runner_fit(plan: JobPlan, labels: Mapping[str, str]) -> list[Problem]:
    """The jobs that will not fit the runner the workflow gives them, one problem each.

    `labels` maps the variables of RUNNER_VARIABLES to runner labels (the environment of the plan job).
    A job planned for a class whose variable is set gets that runner: its size is the person's choice.
    Any other job — a `gpu` job included, which then runs slowly on the CPU — gets a standard runner, and
    its disk and RAM must fit one (DISK_GB / RAM_GB["standard"])."""
    problems: list[Problem] = []
    for job in plan.jobs:
        variable = RUNNER_VARIABLES.get(job.runner)
        if variable and labels.get(variable, "").strip():
            continue
        if job.ram_gb <= RAM_GB["standard"] and job.disk_gb <= DISK_GB["standard"]:
            continue
        need = (f"needs {job.ram_gb:.1f} GB of RAM and {job.disk_gb:.1f} GB of disk; a standard runner "
                f"({STANDARD_RUNNER}) has {RAM_GB['standard']:g} GB / {DISK_GB['standard']:g} GB")
        at_least = f"at least {math.ceil(job.ram_gb)} GB of RAM and {math.ceil(job.disk_gb)} GB of disk"
        if variable:
            problems.append(Problem(f"job {job.id}", "", f"{need}: set {variable} to a runner with {at_least}"))
        else:  # planned standard and still too big: no variable moves it (finish runs on a standard runner)
            problems.append(Problem(f"job {job.id}", "", f"{need}, and no runner variable moves a "
                                    f"{job.runner or 'standard'} job off one"))
    return problems
