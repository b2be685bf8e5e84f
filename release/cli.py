"""The `release` command line: thin click commands over the pipeline.

Exit status: 0 success, 1 a failure while working (network, verify, build), 2 bad input or usage.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from . import __version__
from .completion import complete_only, complete_release
from .console import VERBOSITY, ReleaseConsole
from .errors import InputError, Problem, ReleaseError, Terminated, WorkError, describe, disk_full, network_failure
from .fsutil import folder_problem
from .manifest import ArtifactRegistry
from .outcome import EXIT_STATUS, ReleaseGroup, error_object, resume_command
from .pipeline import Context, Options, parse_only, restore_recorded, run_build, select
from .plan import plan_artifacts, recorded_withheld_in_use
from .spec.load import load_release
from .spec.placeholders import refuse_placeholders
from .steps import closure
from .tables import print_files, print_status

err = ReleaseConsole(stderr=True, highlight=False)  # what the run says (silent with -q)
out = ReleaseConsole(highlight=False)  # the result
errors = ReleaseConsole(stderr=True, highlight=False)  # errors: even with -q


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map every way a command can end to one clear line and the contract's exit status: our own
    errors, a full disk, a network failure, Ctrl-C and SIGTERM (never a traceback for those). With --json
    the error is also a JSON object on stdout (release/outcome.py)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))

        def fail(code: int, lines: list[str], problems: list[Problem] | None = None,
                 cause: BaseException | None = None) -> None:
            for line in lines:  # `error: …`; a stop says how it stopped (`interrupted …`, `terminated …`)
                errors.print(("[bold red]error:[/] " if code in (1, 2) else "") + escape(line), soft_wrap=True)
            if cause is not None and VERBOSITY.verbose:
                errors.print(f"cause: {escape(describe(cause))}", soft_wrap=True)
            if as_json:
                click.echo(json.dumps(error_object("\n".join(lines), code, problems or [])))
            sys.exit(code)

        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            fail(exc.exit_code, [str(p) for p in exc.problems], exc.problems, exc)
        except ReleaseError as exc:
            full = disk_full(exc)
            fail(exc.exit_code, [str(exc) + (f" (no space left on device{_on(full)})"
                                             if full and "space" not in str(exc) else "")], cause=exc)
        except KeyboardInterrupt:
            fail(130, [f"interrupted (Ctrl-C); run `{resume_command(sys.argv[1:])}` to resume"])
        except Terminated as exc:
            fail(143, [f"terminated ({exc.signal}); run `{resume_command(sys.argv[1:])}` to resume"])
        except Exception as exc:
            full, net = disk_full(exc), network_failure(exc)
            if full is not None:
                fail(1, [f"no space left on device{_on(full)}; free some and run the same command again"], cause=exc)
            if net is not None:
                fail(1, [f"network failure: {describe(exc)}"], cause=exc)
            raise

    return wrapper


def hold_dist(dist: Path, release: Any, only: list[str] | None = None, artifacts: Any = None) -> None:
    """Lock DIST/NAME until the command ends (one run at a time per output folder). Selectors are
    checked first (against `artifacts`, the release's plan, when given): bad input writes nothing, not
    even the lock."""
    from .lock import dist_lock
    from .pipeline import select_ids

    if only:
        select_ids(artifacts if artifacts is not None else plan_artifacts(release, estimates=False), only,
                   release.name)
    click.get_current_context().with_resource(dist_lock(dist.absolute() / release.name))


def locked_context(release: Any, options: Options, planned: ArtifactRegistry | None = None) -> Context:
    """Plan the release once (unless the command did), check --only against that plan, lock DIST/NAME, and
    open the context on the same plan (one plan per command)."""
    planned = planned if planned is not None else plan_artifacts(release)
    hold_dist(options.dist_root, release, options.only, artifacts=planned)
    return Context(release, options, console=err, artifacts=planned)


def _on(exc: OSError | None) -> str:
    return f" writing {exc.filename}" if exc is not None and exc.filename else ""


class FiniteFloat(click.ParamType):
    """A finite number in (low, high]: click's FloatRange lets nan and inf through."""

    name = "number"

    def __init__(self, low: float, high: float, unit: str = "") -> None:
        self.low, self.high, self.unit = low, high, unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.low < number <= self.high:
            self.fail(f"{value!r} is not a finite number in ({self.low:g}, {self.high:g}]{self.unit}", param, ctx)
        return number


MEMORY_GB = FiniteFloat(0, 1e6, " GB")
JOBS = click.IntRange(1, 1024)


def dist_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--dist", "dist", type=click.Path(file_okay=False, path_type=Path),
                        default=Path("dist"), show_default=True,
                        help="Output root; a release's outputs live in DIST/<name>/.")(fn)


@click.group(cls=ReleaseGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_STATUS)
@click.version_option(__version__, "-V", "--version", prog_name="release")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final result.")
@click.option("-v", "--verbose", is_flag=True,
              help="More detail: what was restored rather than made, and the causes of an error.")
def cli(quiet: bool, verbose: bool) -> None:
    """Turn an expert-pruned MoE checkpoint into a complete, consistent public release.

    NAME is a folder under pipelines/ (e.g. `v4`, `demo`) or a path to a pipeline folder. Shell
    completion of names and --only values: eval "$(_RELEASE_COMPLETE=bash_source release)" (zsh_source,
    fish_source for those shells).
    """
    if quiet and verbose:
        raise click.UsageError("-q and -v ask for opposite things; give one")
    VERBOSITY.quiet, VERBOSITY.verbose = quiet, verbose
    err.quiet = quiet


@cli.command()
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--remote", is_flag=True,
              help="Also check that the Hub token and the Ollama key may do what the release does (writes nothing).")
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL (default: HF_ENDPOINT or the Hub).")
@click.option("--ollama-registry", default=None, help="Ollama registry URL (default: the definition's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@handle_errors
def check(ctx: click.Context, name: str, dist: Path, remote: bool, hub_endpoint: str | None,
          ollama_registry: str | None, as_json: bool) -> None:
    """Validate a release definition, its drop map and scores, and that DIST/NAME can take the
    outputs. Writes nothing. With --remote, also the credentials and access the release needs:
    HF_TOKEN may write every destination namespace, the base is readable, the registry takes the key."""
    release = load_release(name)
    target = dist / release.name
    unusable = folder_problem(target)
    if unusable:
        if ctx.get_parameter_source("dist") != click.core.ParameterSource.DEFAULT:
            raise InputError(unusable, file="--dist")
        # Not asked about: a validation run elsewhere (a read-only checkout) is still a validation.
        release.warnings.append(f"--dist: {unusable} (the default; build, plan and publish write there)")
    withheld = recorded_withheld_in_use(release, target)  # with figures built there
    if withheld:
        raise InputError(withheld)
    checked: list[str] = []
    if remote:
        from .access import check_remote, release_targets

        rctx = Context(release, Options(dist_root=dist, hub_endpoint=hub_endpoint, ollama_registry=ollama_registry),
                       console=err, estimates=False)
        checked = check_remote(rctx, release_targets(rctx))
    if as_json:
        out.print_json(json.dumps({"release": release.name, "ok": True, "dist": str(target),
                                   "warnings": release.warnings, "remote": checked}))
        return
    for w in release.warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    for line in checked:
        out.print(f"[green]✓[/] {escape(line)}", soft_wrap=True)
    d = release.definition
    parts = [f"{len(d.gguf.tiers)} GGUF tiers" if d.gguf else "",
             f"{len(d.ollama.tags)} Ollama tags" if d.ollama else "",
             "NVFP4A16" if d.nvfp4 else "", "BF16" if d.bf16 else ""]
    out.print(f"[green]✓[/] {release.name}: {release.family.family}, "
              f"{release.drop_map.num_experts} → {release.drop_map.kept_count} experts in "
              f"{len(release.drop_map.kept)} MoE layers; " + ", ".join(p for p in parts if p))


@cli.command()
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
    release = load_release(name, tool_checks=not matrix)
    options = Options(dist_root=dist, only=parse_only(only))
    if matrix:
        from .distributed.jobs import RUNNER_VARIABLES, plan_jobs, runner_fit

        jobs = plan_jobs(Context(release, options, console=err))
        if check_runners:
            misfits = runner_fit(jobs, {v: os.environ.get(v, "") for v in RUNNER_VARIABLES.values()})
            if misfits:
                raise InputError(misfits)
        if as_json:
            click.echo(json.dumps(jobs.to_json(), indent=1))
        else:
            _print_jobs(jobs)
        return
    ctx = locked_context(release, options)
    restore_recorded(ctx)  # built artifacts stay built in the manifest
    path = ctx.write_manifest()
    # --only: what `build --only` would make or restore (the selection and what it needs)
    shown = closure(ctx.artifacts, select(ctx)) if options.only else [a.id for a in ctx.artifacts]
    if as_json:
        manifest = ctx.manifest().to_json()
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["id"] in shown]
        click.echo(json.dumps(manifest, indent=2))
        return
    _print_plan(ctx, shown)
    err.print(f"manifest: {path}")


def _print_jobs(jobs: Any) -> None:
    table = Table(title=f"release {jobs.release}: {len(jobs.jobs)} jobs")
    for col in ("job", "stage", "artifacts", "needs", "fetches", "disk", "RAM", "hours", "runner"):
        table.add_column(col)
    for j in jobs.jobs:
        table.add_row(j.id, j.stage, ", ".join(j.artifacts), ", ".join(j.needs),
                      _fmt_size(sum(i.size or 0 for i in j.inputs), False), f"{j.disk_gb:.1f} GB",
                      f"{j.ram_gb:.1f} GB", f"{j.hours:.2f}", j.runner)
    # Stages run one after another, the jobs of a stage at once (the workflow's matrices).
    stages = {j.stage: max((k.hours for k in jobs.jobs if k.stage == j.stage), default=0.0) for j in jobs.jobs}
    table.add_section()
    table.add_row("total", f"{len(stages)} stages", f"{sum(len(j.artifacts) for j in jobs.jobs)} artifacts", "",
                  _fmt_size(sum(i.size or 0 for j in jobs.jobs for i in j.inputs), False),
                  f"≤ {max((j.disk_gb for j in jobs.jobs), default=0):.1f} GB",
                  f"≤ {max((j.ram_gb for j in jobs.jobs), default=0):.1f} GB",
                  f"{sum(j.hours for j in jobs.jobs):.2f}", "")
    table.caption = (f"{sum(j.hours for j in jobs.jobs):.2f} machine-hours; wall-clock ≈ {sum(stages.values()):.2f} "
                     "hours (stages in turn, the jobs of a stage at once)")
    out.print(table)
    for note in jobs.notes:
        err.print(f"note: {note}", soft_wrap=True)


def _fmt_size(size: int | None, estimated: bool) -> str:
    if not size:
        return "—"
    approx = "≈" if estimated else ""
    if size >= 1e9:
        return f"{approx}{size / 1e9:.2f} GB"
    return f"{approx}{size / 1e6:.1f} MB" if size >= 1e5 else f"{approx}{size / 1e3:.1f} KB"


def _print_plan(ctx: Context, ids: list[str] | None = None) -> None:
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
        table.add_row(a.id, a.kind, dest, _fmt_size(size, bool(a.facts.get("estimated")) and not a.size),
                      a.status)
    statuses = {s: sum(a.status == s for a in shown) for s in ("published", "built", "planned")}
    bound = [(a, s) for a, s in zip(shown, sizes, strict=True) if a.destination is not None]
    to_publish = _fmt_size(sum(s for _, s in bound), any(not a.size for a, _ in bound))
    table.add_section()
    table.add_row("total", f"{len(shown)} artifact{'s' if len(shown) != 1 else ''}", f"{to_publish} to publish",
                  _fmt_size(sum(sizes), any(not a.size for a in shown)),
                  ", ".join(f"{n} {s}" for s, n in statuses.items() if n))
    out.print(table)


@cli.command()
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--only", "only", multiple=True, metavar="KIND[:ID]", shell_complete=complete_only,
              help="Build only these (bf16, gguf, nvfp4, quality, ollama, cards; e.g. gguf:Q4_K_M). Repeatable.")
@click.option("--jobs", type=JOBS, default=2, show_default=True, help="Parallel build jobs.")
@click.option("--max-memory", type=MEMORY_GB, default=None, help="Memory budget for parallel jobs, in GB.")
@click.option("--force", is_flag=True,
              help="Make again what --only selects (all without it) and what is made from it, even when its inputs "
                   "are unchanged; what it needs is kept.")
@click.option("--from", "from_kind", type=click.Choice(["bf16", "gguf", "nvfp4", "quality", "ollama", "cards"]),
              default=None, help="Make this kind and everything made from it again (an upstream step).")
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL for downloading the base.")
@click.option("--json", "as_json", is_flag=True, help="Print what was built and every artifact's status as JSON.")
@handle_errors
def build(name: str, dist: Path, only: tuple[str, ...], jobs: int, max_memory: float | None, force: bool,
          from_kind: str | None, hub_endpoint: str | None, as_json: bool) -> None:
    """Prune, build the artifacts, render cards, and write the manifest.

    Finished artifacts whose inputs are unchanged are restored from dist/NAME/state.json, not rebuilt.
    """
    release = load_release(name)
    for w in release.warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    options = Options(dist_root=dist, only=parse_only(only), jobs=jobs, force=force, hub_endpoint=hub_endpoint,
                      max_memory=int(max_memory * 1e9) if max_memory else None)
    ctx = locked_context(release, options)
    if from_kind:
        forget_from(ctx, from_kind)
    built = run_build(ctx)
    if as_json:
        click.echo(json.dumps({"release": release.name, "built": built, "manifest": str(ctx.dist / "manifest.json"),
                               "artifacts": [{"id": a.id, "status": a.status, "size": a.size or None}
                                             for a in ctx.artifacts]}, indent=2))
        return
    _print_plan(ctx)
    err.print(f"built: {', '.join(built) or 'nothing (everything up to date)'}")


@cli.command()
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--dry-run", is_flag=True,
              help="Build and verify, plan against the remotes, show the diff; change nothing.")
@click.option("--only", "only", multiple=True, metavar="KIND[:ID]", shell_complete=complete_only,
              help="Publish only these (bf16, gguf, nvfp4, ollama, cards; hub = every Hub repo). Repeatable.")
@click.option("--job", "job_id", default=None, metavar="ID",
              help="Run one job of `release plan NAME --matrix` (for a machine of its own): fetch its inputs from "
                   "the staging branches, build, stage its outputs on its own branch. Main is not touched.")
@click.option("--finish", is_flag=True,
              help="Promote what the jobs staged: one commit per repo on main, tags, collection, Ollama manifests.")
@click.option("--local", is_flag=True,
              help="Rehearse against a local Hub and registry on 127.0.0.1 (no account, no network).")
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL (default: HF_ENDPOINT or the Hub).")
@click.option("--ollama-registry", default=None, help="Ollama registry URL (default: the definition's).")
@click.option("--prune-remote", is_flag=True, help="Delete remote files that are not part of the release.")
@click.option("--from", "from_kind", type=click.Choice(["bf16", "gguf", "nvfp4", "quality", "ollama", "cards"]),
              default=None,
              help="Rebuild this kind and everything made from it, even if inputs are unchanged.")
@click.option("--force", is_flag=True, help="Rebuild every selected artifact.")
@click.option("--jobs", type=JOBS, default=2, show_default=True, help="Parallel build jobs.")
@click.option("--max-memory", type=MEMORY_GB, default=None, help="Memory budget for parallel jobs, in GB.")
@click.option("--via-ollama-cli", is_flag=True,
              help="Push Ollama tags with the installed `ollama` binary (create + push), then verify by reading back.")
@click.option("--no-git-tag", is_flag=True, help="Don't tag release/NAME in the pipelines repo.")
@click.option("--move-tags", is_flag=True,
              help="Move the release's Hub tags and git tag to the new heads (by default an existing tag stays).")
@click.option("--hub-max-wait", type=FiniteFloat(0, 86400, " s"), envvar="RELEASE_HUB_MAX_WAIT", default=900.0,
              show_default=True, help="Longest wait, in seconds, for the Hub to take a commit (busy repo, quota).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@handle_errors
def publish(name: str, dist: Path, dry_run: bool, only: tuple[str, ...], job_id: str | None, finish: bool,
            local: bool, hub_endpoint: str | None, ollama_registry: str | None, prune_remote: bool,
            from_kind: str | None, force: bool, jobs: int, max_memory: float | None, via_ollama_cli: bool,
            no_git_tag: bool, move_tags: bool, hub_max_wait: float, as_json: bool) -> None:
    """Run the whole release: build what changed, verify, publish to the Hub and the registry, tag.

    Idempotent: a rerun with nothing changed sends nothing and makes no commit. Across machines, run
    each job of `release plan NAME --matrix` with --job ID, then --finish once. Credentials and access
    are checked before anything is built (not with --local).
    """
    from .local import local_targets

    if job_id == "finish":
        raise InputError("finish is not a job to run with --job: promote with `release publish NAME --finish`",
                         file="--job")
    os.environ["RELEASE_HUB_MAX_WAIT"] = f"{hub_max_wait:g}"  # read by the Hub publisher
    if prune_remote and only:
        # Pruning deletes every remote file no given artifact provides: with a subset it would delete the rest.
        raise InputError("--prune-remote needs the whole release; drop --only", file="--prune-remote")
    if job_id and finish:
        raise InputError("--job and --finish are separate runs", file="--finish")
    if (job_id or finish) and (only or prune_remote or via_ollama_cli):
        raise InputError("--only, --prune-remote and --via-ollama-cli are for a publish from one machine; a job's "
                         "scope is the plan's", file="--job" if job_id else "--finish")
    release = load_release(name)
    if not (dry_run or local):
        refuse_placeholders(release)
    for w in release.warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    options = Options(dist_root=dist, only=parse_only(only), dry_run=dry_run, hub_endpoint=hub_endpoint,
                      ollama_registry=ollama_registry, prune_remote=prune_remote, force=force, jobs=jobs,
                      via_ollama_cli=via_ollama_cli, move_tags=move_tags,
                      max_memory=int(max_memory * 1e9) if max_memory else None)
    planned = plan_artifacts(release)  # the one plan of this command
    if not local:
        # Before anything is built, fetched or locked: a wrong token fails now, not after hours of building.
        for line in check_access(Context(release, options, console=err, artifacts=planned), job_id, finish):
            err.print(f"access: {escape(line)}", soft_wrap=True)
    ctx = locked_context(release, options, planned)
    if from_kind:
        forget_from(ctx, from_kind)

    def run(git_tag: bool, local_hub: str | None = None) -> None:
        if job_id:
            from .distributed.run import run_job

            _print_job(run_job(ctx, job_id), as_json)
            return
        if finish:
            from .distributed.finish import run_finish

            summary = run_finish(ctx, git_tag=git_tag)
        else:
            from .flow import run_publish

            summary = run_publish(ctx, git_tag=git_tag)
        _print_summary(ctx, summary, as_json, local_hub=local_hub)

    if local:
        with local_targets(ctx.dist / "local", release.definition.release.owner) as targets:
            options.hub_endpoint, options.hub_token = targets.hub_url, targets.hub_token
            options.local_state = ctx.dist / "local"
            if targets.registry_url:
                options.ollama_registry = targets.registry_url
            elif release.definition.ollama is not None:
                if job_id or finish:
                    raise WorkError("no docker-registry installed: a job or --finish with --local needs one "
                                    "(apt-get install docker-registry)")
                options.only = options.only or ["bf16", "gguf", "nvfp4", "cards", "hub"]
                err.print(f"no docker-registry installed: Ollama tags stay in the local store "
                          f"(OLLAMA_MODELS={ctx.dist / 'ollama'})")
            # A rehearsal is not a release: it leaves the pipelines repo's tags alone.
            run(False, local_hub=targets.hub_url)
        return
    run(not no_git_tag)


def check_access(ctx: Context, job_id: str | None, finish: bool) -> list[str]:
    """What this publish touches, checked with its credentials (release/access.py)."""
    from .access import check_remote, job_targets, publish_targets
    from .flow import publish_selection

    if job_id or finish:
        return check_remote(ctx, job_targets(ctx, job_id))
    return check_remote(ctx, publish_targets(ctx, publish_selection(ctx)))


def forget_from(ctx: Context, kind: str) -> None:
    """Forget recorded builds of `kind` and of everything made from it, so they are rebuilt."""
    from .steps import dependents

    ids = [a.id for a in ctx.artifacts if ("cards" if a.kind == "card" else a.kind) == kind]
    for i in ids + dependents(ctx.artifacts, ids):
        ctx.state.forget(i)


def _print_job(summary: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
        return
    for note in summary.notes:
        err.print(note, soft_wrap=True)
    if summary.skipped:
        out.print(f"[green]✓[/] job {summary.job}: nothing to do ({', '.join(summary.branches)})")
        return
    verb = "would stage" if summary.dry_run else "staged"
    out.print(f"[green]✓[/] job {summary.job}: built {', '.join(summary.built) or 'nothing (up to date)'}; "
              f"fetched {summary.fetched_files} files ({_human(summary.fetched_bytes)}); {verb} "
              f"{summary.uploaded_files} files ({_human(summary.uploaded_bytes)}) on {', '.join(summary.branches)} "
              f"({'; '.join(f'{u}: {what}' for u, what in summary.units.items())})"
              + ("" if summary.dry_run else f" in {summary.commits} commits")
              + (f"; {len(summary.ollama_blobs)} Ollama model blobs ({_human(summary.ollama_bytes)})"
                 if summary.ollama_blobs else ""))


def _print_summary(ctx: Context, summary: Any, as_json: bool, local_hub: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2))
        return
    title = "dry run: nothing was changed" if summary.dry_run else f"release {ctx.release.name} published"
    table = Table(title=title)
    for col in ("destination", "sent", "bytes", "unchanged", "commits / manifest", "link"):
        table.add_column(col)
    for r in summary.repos:
        sent = f"{r.sent_files} files" + (" (planned)" if summary.dry_run else "")
        nbytes = r.planned_bytes if summary.dry_run else r.sent_bytes
        table.add_row(r.repo, sent, _human(nbytes), str(r.unchanged_files), str(r.commits), r.url)
    for t in summary.tags:
        table.add_row(t.ref, f"{t.sent_blobs} blobs", _human(t.planned_bytes if summary.dry_run else t.sent_bytes),
                      f"{t.unchanged_blobs} blobs", t.manifest, t.digest[7:19] if t.digest else "")
    out.print(table)
    if summary.dry_run:
        print_files(out, [(r.repo, r.files) for r in summary.repos] + [(t.ref, t.files) for t in summary.tags])
    for note in summary.notes:
        err.print(f"note: {note}", soft_wrap=True)
    sent = f"bytes to send: {_human(summary.bytes_to_send)}" if summary.dry_run else \
        f"commits: {summary.commits}; bytes sent: {_human(summary.bytes_sent)}"
    err.print(f"built: {', '.join(summary.built) or 'nothing (up to date)'}; {sent}"
              + (f"; git tag {summary.git_tag}" if summary.git_tag else ""))
    if local_hub:
        err.print(f"local Hub state: {ctx.dist / 'local' / 'hub'} (served at {local_hub} during the run)")
    err.print(f"preview: {ctx.dist / 'preview' / 'index.html'}  manifest: {ctx.dist / 'manifest.json'}")


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@cli.command()
@click.argument("name", shell_complete=complete_release)
@click.option("--staging", is_flag=True, help="Delete every staging branch (release-NAME-*) of every destination repo.")
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL (default: HF_ENDPOINT or the Hub).")
@click.option("--dry-run", is_flag=True, help="List what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what was deleted as JSON.")
@handle_errors
def clean(name: str, staging: bool, hub_endpoint: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove what a release across machines leaves on the Hub: with --staging, the staging branches of
    this run and of earlier ones, and the promotion record (run it once the git tag is pushed)."""
    from .access import Targets, check_remote
    from .distributed.clean import clean_staging, release_repos
    from .distributed.run import hub_publisher

    if not staging:
        raise InputError("say what to clean: --staging (the release's staging branches on the Hub)", file="clean")
    release = load_release(name)
    ctx = Context(release, Options(hub_endpoint=hub_endpoint), console=err, estimates=False)
    repos = release_repos(release)
    check_remote(ctx, Targets(read=repos) if dry_run else Targets(write=repos))
    removed = clean_staging(release, hub_publisher(ctx), dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"release": release.name, "dry_run": dry_run,
                               "branches": [{"repo": r, "branch": b} for r, b in removed]}, indent=2))
        return
    for repo, branch in removed:
        out.print(f"{'would delete' if dry_run else 'deleted'} {repo}@{branch}", soft_wrap=True)
    if not removed:
        out.print(f"[green]✓[/] no staging branch of {release.name} on {', '.join(repos)}")


@cli.command()
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL (default: HF_ENDPOINT or the Hub).")
@click.option("--ollama-registry", default=None, help="Ollama registry URL (default: ollama.com's).")
@click.option("--namespace", default=None, help="Where the scratch repos and model go (default: the token's user).")
@dist_option
@click.option("--keep", is_flag=True, help="Keep the scratch Hub repos (and the workspace) for a look.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def canary(hub_endpoint: str | None, ollama_registry: str | None, namespace: str | None, dist: Path, keep: bool,
           as_json: bool) -> None:
    """Release the bundled demo across machines (plan, prepare, the fan-out at once, finish: one process
    each) into private scratch repos NS/release-canary-<run>-…, verify it, then delete those repos. The
    Ollama model is NS/release-canary, overwritten each run."""
    from .distributed.canary import run_canary

    result = run_canary(hub_endpoint=hub_endpoint, ollama_registry=ollama_registry, namespace=namespace,
                        dist=dist, keep=keep, say=lambda line: err.print(escape(line), soft_wrap=True))
    if not keep:
        shutil.rmtree(result.workspace, ignore_errors=True)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    out.print(f"[green]✓[/] canary {result.run}: {len(result.jobs)} jobs, {result.verified_files} files verified on "
              f"main, {len(result.ollama)} Ollama tags read back; repos private while staged: "
              f"{all(r.get('private_while_staged') for r in result.repos.values() if 'private_while_staged' in r)}; "
              + ("kept: " + ", ".join(result.repos) if keep else
                 f"deleted {sum(1 for r in result.repos.values() if r.get('deleted'))} repos"), soft_wrap=True)


@cli.command()
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--push", is_flag=True,
              help="Commit only the cards (READMEs, the GGUF quality chart) to the Hub repos (one commit per repo).")
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL (default: HF_ENDPOINT or the Hub).")
@click.option("--json", "as_json", is_flag=True, help="Print the rendered cards (and push result) as JSON.")
@handle_errors
def cards(name: str, dist: Path, push: bool, hub_endpoint: str | None, as_json: bool) -> None:
    """Render every card into dist/NAME/cards/ and the preview; with --push, push only the READMEs.

    Cards use what is built (sizes, types, digests) and planned estimates for the rest.
    """
    release = load_release(name)
    ctx = locked_context(release, Options(dist_root=dist, only=["cards"], force=True, hub_endpoint=hub_endpoint))
    restore_recorded(ctx)
    built = run_build(ctx)
    result = None
    if push:
        from .publish.hub import HubPublisher

        pub = HubPublisher(hub_endpoint, None, hash_cache=ctx.hash_cache, progress=err.print)
        result = pub.push_readmes([ctx.artifacts[i] for i in built if ctx.artifacts[i].destination], ctx.dist,
                                  message=f"Update model cards of {release.name}")
    if as_json:
        click.echo(json.dumps({"cards": {i: str(ctx.artifact_dir(ctx.artifacts[i]) / "README.md") for i in built},
                               "commits": result.commits if result else 0}, indent=2))
        return
    for i in built:
        out.print(f"[green]✓[/] {i}: {ctx.artifact_dir(ctx.artifacts[i]) / 'README.md'}")
    if result is not None:
        out.print(f"pushed READMEs: {result.commits} commits, {result.bytes_sent} bytes")
    err.print(f"preview: {ctx.dist / 'preview' / 'index.html'}")


@cli.command()
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--json", "as_json", is_flag=True, help="Print the preview's path as JSON.")
@handle_errors
def preview(name: str, dist: Path, as_json: bool) -> None:
    """Write a static HTML preview of the whole release family to dist/NAME/preview/index.html."""
    from .cards import build_preview

    release = load_release(name)
    ctx = locked_context(release, Options(dist_root=dist))
    restore_recorded(ctx)
    cards_dir = ctx.dist / "cards"
    ctx.options.only = ["cards"]
    run_build(ctx)
    index = build_preview(release, ctx.artifacts, cards_dir, ctx.dist / "preview")
    if as_json:
        click.echo(json.dumps({"release": release.name, "preview": str(index)}))
        return
    out.print(f"[green]✓[/] preview: {index}")


@cli.group()
def scores() -> None:
    """Benchmark scores of a release (its scores.json)."""


@scores.command("import")
@click.argument("name", shell_complete=complete_release)
@click.option("--lm-eval", "results", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="An lm-evaluation-harness results JSON (lm_eval --output_path).")
@click.option("--as", "side", required=True, type=click.Choice(["variant", "reference"]),
              help="Whose scores these are: this release's model (variant) or the model it was pruned from.")
@click.option("--quant", default=None, metavar="TIER", help="Scores of one quantization of the variant (per_quant).")
@click.option("--allow-other-model", is_flag=True,
              help="Import a run whose model_args name a model other than the side's (the base; this release's).")
@dist_option
@click.option("--json", "as_json", is_flag=True, help="Print what was imported as JSON.")
@handle_errors
def scores_import(name: str, results: Path, side: str, quant: str | None, allow_other_model: bool, dist: Path,
                  as_json: bool) -> None:
    """Fold an lm-evaluation-harness results file into the release's scores.json.

    Task metrics map to benchmark rows ([[lm_eval]] in release.toml, then defaults for common tasks);
    fractions become percentages, n the effective sample count. scores.json is rewritten only when the
    result validates; the cards render the rows on the next `release cards`.
    """
    from .spec.lmeval import import_lm_eval

    release = load_release(name)
    result = import_lm_eval(release, results, side=side, quant=quant, dist=dist, allow_other_model=allow_other_model)
    if as_json:
        click.echo(json.dumps({"scores": result.scores_file, "as": result.side, "unmapped": result.unmapped,
                               "pending": result.pending, "rows": [r.__dict__ for r in result.rows]}, indent=2))
        return
    table = Table(title=f"{result.scores_file}: {result.side} scores from {results.name}")
    for col in ("benchmark", "metric", "task", "score", "n"):
        table.add_column(col)
    for r in result.rows:
        table.add_row(r.benchmark, r.metric, r.task, f"{r.value:.2f}", str(r.n or "—"))
    out.print(table)
    if result.pending:
        other = "variant" if side == "reference" else "reference"
        err.print(f"waiting for the {other}'s results (import them with --as {other}): {', '.join(result.pending)}",
                  soft_wrap=True)
    if result.unmapped:
        err.print(escape(f"not imported (no row maps them; add [[lm_eval]] entries to release.toml): "
                         f"{', '.join(result.unmapped)}"), soft_wrap=True)


@cli.command()
@click.option("--base", "base", required=True, type=click.Path(path_type=Path),
              help="The base checkpoint folder (config.json + safetensors).")
@click.option("--drop-map", "drop_map", required=True, type=click.Path(path_type=Path), help="dropmap.json")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--base-repo", default="", help="Base repo id recorded in the sidecar.")
@click.option("--base-revision", default="", help="Base revision recorded in the sidecar.")
@click.option("--drop-mtp", is_flag=True,
              help="Leave out a multi-token-prediction block (its experts are not covered by drop maps).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def prune(base: Path, drop_map: Path, out_dir: Path, base_repo: str, base_revision: str, drop_mtp: bool,
          as_json: bool) -> None:
    """Prune experts from a checkpoint by rewriting safetensors byte ranges (never loads the model)."""
    from .spec.dropmap import load_drop_map

    dm = load_drop_map(drop_map, display=str(drop_map))
    try:
        from .prune import prune_checkpoint  # type: ignore[attr-defined]
    except ImportError as exc:
        from .errors import NotAvailable

        raise NotAvailable("the streaming pruner is not available in this version of moe-release "
                           "(issue 3)") from exc
    result = prune_checkpoint(base, dm, out_dir, base_repo=base_repo, base_revision=base_revision,
                              mtp="drop" if drop_mtp else "refuse")
    if as_json:
        out.print_json(json.dumps(_jsonable(result)))
    else:
        out.print(f"[green]✓[/] pruned {base} → {out_dir}")


@cli.command()
@click.argument("name", shell_complete=complete_release)
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Folder with one .txt or .jsonl file per task class (default: [dropmap] calibration).")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Drop map to write; its scores go beside it as <stem>.scores.json.")
@click.option("--recipe", type=click.Choice(["pooled", "max-class"]), default=None,
              help="How experts are ranked (default: [dropmap] recipe, else max-class).")
@click.option("--keep-top-per-class", type=click.IntRange(0), default=None,
              help="Always keep each class's N best experts.")
@click.option("--class-weight", "class_weights", multiple=True, metavar="CLASS=W",
              help="Weight of a class (default 1). Repeatable.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["auto", "float32", "bfloat16", "float16"]), default="auto",
              show_default=True, help="Compute dtype; auto = the checkpoint's.")
@click.option("--max-tokens", type=click.IntRange(1), default=None, help="Tokens per sample (default 512).")
@click.option("--batch-tokens", type=click.IntRange(1), default=4096, show_default=True,
              help="Padded tokens per batch.")
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL for downloading the base.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def dropmap(name: str, calibration: Path | None, out_file: Path, recipe: str | None, keep_top_per_class: int | None,
            class_weights: tuple[str, ...], device: str, dtype: str, max_tokens: int | None, batch_tokens: int,
            hub_endpoint: str | None, as_json: bool) -> None:
    """Derive the drop map of release NAME from calibration text: run its base model layer by layer, measure
    each expert's router-weighted output per class, rank by the recipe, keep [prune] experts_kept per layer."""
    from .dropmap.derive import DropmapRequest, derive

    weights: dict[str, float] | None = None
    if class_weights:
        weights = {}
        for item in class_weights:
            cls, _, value = item.partition("=")
            try:
                weights[cls] = float(value)
            except ValueError:
                raise InputError(f"{item!r}: expected CLASS=WEIGHT", file="--class-weight") from None
    request = DropmapRequest(out=out_file, calibration=calibration, recipe=recipe,
                             keep_top_per_class=keep_top_per_class, class_weights=weights, device=device,
                             dtype=dtype, max_tokens=max_tokens, batch_tokens=batch_tokens,
                             hub_endpoint=hub_endpoint)
    result = derive(name, request, progress=None if as_json else err.print)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    low = sorted(result.kept_share.items(), key=lambda kv: kv[1])[:3]
    out.print(f"[green]✓[/] {result.drop_map} and {result.scores_file.name}: recipe {result.recipe.describe()}, "
              f"{result.tokens} tokens in {result.seconds:.1f} s ({result.tokens_per_second:.1f} tokens/s); "
              "lowest kept share: " + ", ".join(f"layer {k} {v:.1%}" for k, v in low))


@cli.command()
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL (default: HF_ENDPOINT or the Hub).")
@click.option("--ollama-registry", default=None, help="Ollama registry URL (default: the definition's).")
@click.option("--local", is_flag=True, help="The rehearsal Hub and registry of `publish --local` (dist/NAME/local/).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def status(name: str, dist: Path, hub_endpoint: str | None, ollama_registry: str | None, local: bool,
           as_json: bool) -> None:
    """What is published where: per repo its head, files and whether they match what is built here, the
    staging branches jobs left; per Ollama tag its digest; and what a publish would do next. Read-only."""
    from .local import local_targets
    from .status import release_status

    release = load_release(name, tool_checks=False)
    options = Options(dist_root=dist, hub_endpoint=hub_endpoint, ollama_registry=ollama_registry)
    ctx = Context(release, options, console=err)
    if local:
        with local_targets(ctx.dist / "local", release.definition.release.owner) as targets:
            options.hub_endpoint, options.hub_token = targets.hub_url, targets.hub_token
            options.ollama_registry = targets.registry_url or options.ollama_registry
            report = release_status(ctx)
    else:
        report = release_status(ctx)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    print_status(out, report)


@cli.command("init")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--base", "base_ref", required=True, metavar="REPO_OR_PATH",
              help="The base model: a Hub repo id, or a checkpoint folder on this machine.")
@click.option("--revision", default=None, help="The base's revision on the Hub (default main, pinned to its commit).")
@click.option("--name", default=None, help="The release name (default: the folder's name).")
@click.option("--owner", default=None, help="Hugging Face namespace of the repos (default: the token's, if HF_TOKEN).")
@click.option("--experts-kept", type=click.IntRange(1), default=None, help="Experts each MoE layer keeps.")
@click.option("--derive", is_flag=True, help="Derive the drop map in the release ([dropmap] derive) from calibration "
                                             "texts, instead of a drop-map placeholder.")
@click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help="Hub URL (default: HF_ENDPOINT or the Hub).")
@click.option("--json", "as_json", is_flag=True, help="Print what was made as JSON.")
@handle_errors
def init(folder: Path, base_ref: str, revision: str | None, name: str | None, owner: str | None,
         experts_kept: int | None, derive: bool, hub_endpoint: str | None, as_json: bool) -> None:
    """Start a new release in FOLDER from a base model: its family detected, its config recorded, every
    section of release.toml filled; what only you can give is marked # PLACEHOLDER. `release check` accepts
    the result."""
    from .init import init_release
    from .init_base import read_base, token_owner

    token = os.environ.get("HF_TOKEN") or None
    base = read_base(base_ref, revision=revision, endpoint=hub_endpoint, token=token)
    result = init_release(folder, base, name=name, owner=owner or token_owner(hub_endpoint, token),
                          experts_kept=experts_kept, derive=derive)
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
        return
    out.print(f"[green]✓[/] {result.folder}: release {result.name}, {result.family}, {result.experts} → "
              f"{result.kept} experts per MoE layer", soft_wrap=True)
    err.print(escape(f"to replace before a publish: {', '.join(result.placeholders)}"), soft_wrap=True)
    err.print(f"next: release check {result.folder}", soft_wrap=True)


@cli.command()
@click.option("--install", is_flag=True, help="Install what is missing (llama.cpp tools; cached).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def doctor(install: bool, as_json: bool) -> None:
    """Check (and with --install, set up) the external tools: llama.cpp, registry, browser."""
    from .doctor import run_doctor

    rows = run_doctor(install=install)
    if as_json:
        out.print_json(json.dumps([{"component": c, "ok": ok, "detail": d} for c, ok, d in rows]))
    else:
        table = Table(title="release doctor")
        for col in ("component", "ok", "detail"):
            table.add_column(col)
        for c, ok, d in rows:
            table.add_row(c, "[green]yes[/]" if ok else "[red]no[/]", d)
        out.print(table)
    if not all(ok for _, ok, _ in rows):
        sys.exit(1)


def _jsonable(obj: Any) -> Any:
    from dataclasses import asdict, is_dataclass

    if is_dataclass(obj):
        return json.loads(json.dumps(asdict(obj), default=str))
    return obj


def _with_exit_statuses(group: click.Group) -> None:
    """Every command's --help ends with the exit statuses."""
    for command in group.commands.values():
        command.epilog = command.epilog or EXIT_STATUS
        if isinstance(command, click.Group):
            _with_exit_statuses(command)


_with_exit_statuses(cli)


def main() -> None:
    import signal

    def terminate(signum: int, _frame: Any) -> None:
        raise Terminated(signum)

    # SIGTERM (CI cancelling a job, `kill`) unwinds like Ctrl-C: partial outputs are removed by the
    # usual cleanup, child processes stop with us, and the run ends with one line.
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    cli(prog_name="release")


if __name__ == "__main__":
    main()
