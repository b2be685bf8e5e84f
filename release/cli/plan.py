"""`release plan`: the manifest of every planned artifact, or (--matrix) the job plan for many machines."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from ..completion import complete_only, complete_release
from ..distributed.jobs import JobPlan
from ..engine import plan_matrix, plan_release
from ..errors import InputError
from ..outcome import ReleaseCommand
from ..pipeline import Context, Options
from .common import dist_option, err, fmt_size, handle_errors, out


@click.command(cls=ReleaseCommand)
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest (with --matrix: the job plan) as JSON.")
@click.option("--matrix", is_flag=True,
              help="The job plan for many machines: jobs, what each needs and fetches, its disk, RAM and hours.")
@click.option("--only", "only", multiple=True, metavar="KIND[:ID]", shell_complete=complete_only,
              help="Show only these artifacts and what they need (what `build --only` would make or restore).")
@click.option("--check-runners", is_flag=True,
              help="With --matrix: exit 2 when a job needs more than the runner the release workflow gives it "
                   "(runner labels from RELEASE_LARGE_RUNNER and RELEASE_GPU_RUNNER in the environment).")
@handle_errors
def plan(name: str, dist: Path, as_json: bool, matrix: bool, only: tuple[str, ...], check_runners: bool) -> None:
    """Write dist/NAME/manifest.json with every planned artifact and show a summary.

    With --matrix, show the jobs `release publish NAME --job ID` runs on separate machines (and, with
    --json, the GitHub Actions matrix of each stage). Writes nothing then.
    """
    if check_runners and not matrix:
        raise InputError("checks the job plan: use it with --matrix", file="--check-runners")
    options = Options(dist_root=dist)
    if matrix:
        jobs = plan_matrix(name, options, err, only=only, check_runners=check_runners)
        if as_json:
            click.echo(json.dumps(jobs.to_json(), indent=1))
        else:
            print_jobs(jobs)
        return
    result = plan_release(name, options, err, only=only)
    if as_json:
        manifest = result.ctx.manifest().to_json()
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["id"] in result.shown]
        click.echo(json.dumps(manifest, indent=2))
        return
    print_plan(result.ctx, result.shown)
    err.print(f"manifest: {result.manifest}")


def print_jobs(jobs: JobPlan) -> None:
    table = Table(title=f"release {jobs.release}: {len(jobs.jobs)} jobs")
    for col in ("job", "stage", "artifacts", "needs", "fetches", "disk", "RAM", "hours", "runner"):
        table.add_column(col)
    for j in jobs.jobs:
        table.add_row(j.id, j.stage, ", ".join(j.artifacts), ", ".join(j.needs),
                      fmt_size(sum(i.size or 0 for i in j.inputs), False), f"{j.disk_gb:.1f} GB",
                      f"{j.ram_gb:.1f} GB", f"{j.hours:.2f}", j.runner)
    # Stages run one after another, the jobs of a stage at once (the workflow's matrices).
    stages = {j.stage: max((k.hours for k in jobs.jobs if k.stage == j.stage), default=0.0) for j in jobs.jobs}
    table.add_section()
    table.add_row("total", f"{len(stages)} stages", f"{sum(len(j.artifacts) for j in jobs.jobs)} artifacts", "",
                  fmt_size(sum(i.size or 0 for j in jobs.jobs for i in j.inputs), False),
                  f"≤ {max((j.disk_gb for j in jobs.jobs), default=0):.1f} GB",
                  f"≤ {max((j.ram_gb for j in jobs.jobs), default=0):.1f} GB",
                  f"{sum(j.hours for j in jobs.jobs):.2f}", "")
    table.caption = (f"{sum(j.hours for j in jobs.jobs):.2f} machine-hours; wall-clock ≈ {sum(stages.values()):.2f} "
                     "hours (stages in turn, the jobs of a stage at once)")
    out.print(table)
    for note in jobs.notes:
        err.print(f"note: {note}", soft_wrap=True)


def print_plan(ctx: Context, ids: list[str] | None = None) -> None:
    shown = [ctx.artifacts[i] for i in ids] if ids is not None else list(ctx.artifacts)
    of = "" if len(shown) == len(ctx.artifacts) else f" of {len(ctx.artifacts)}"
    table = Table(title=f"release {ctx.release.name}: {len(shown)}{of} artifacts")
    for col in ("artifact", "kind", "destination", "size", "status"):
        table.add_column(col)
    sizes = [a.size or a.facts.get("size") or 0 for a in shown]
    for a in shown:
        dest = ""
        if a.destination is not None:
            dest = a.destination.repo if a.destination.kind == "hub" else \
                f"{a.destination.name}:{a.destination.tag}"
            if a.recipe.get("aliases"):
                dest += " (+" + ", ".join(a.recipe["aliases"]) + ")"
        size = a.size or a.facts.get("size")
        table.add_row(a.id, a.kind, dest, fmt_size(size, bool(a.facts.get("estimated")) and not a.size),
                      a.status)
    statuses = {s: sum(a.status == s for a in shown) for s in ("published", "built", "planned")}
    bound = [(a, s) for a, s in zip(shown, sizes, strict=True) if a.destination is not None]
    to_publish = fmt_size(sum(s for _, s in bound), any(not a.size for a, _ in bound))
    table.add_section()
    table.add_row("total", f"{len(shown)} artifact{'s' if len(shown) != 1 else ''}", f"{to_publish} to publish",
                  fmt_size(sum(sizes), any(not a.size for a in shown)),
                  ", ".join(f"{n} {s}" for s, n in statuses.items() if n))
    out.print(table)
