"""What the local commands do, without the command line: one plan per command, checked selectors, the
lock on DIST/NAME, then the work. The CLI (release/cli/) parses, calls one function here, and prints
what it returns; publishing commands live in release/publishing.py.

One plan per command: `open_locked` plans the release once, checks `--only` against that plan before the
lock is taken (bad input writes nothing, not even the lock), and opens the context on the same plan.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from .access import check_remote, release_targets
from .distributed.jobs import RUNNER_VARIABLES, JobPlan, plan_jobs, runner_fit
from .errors import InputError
from .fsutil import folder_problem
from .lock import dist_lock
from .manifest import ArtifactRegistry
from .pipeline import Context, Options, parse_only, restore_recorded, run_build, select, select_ids
from .plan import plan_artifacts, recorded_withheld_in_use
from .quality.chart import CHART_FILE
from .spec.load import Release, load_release
from .steps import closure, dependents

if TYPE_CHECKING:
    from .publish.hub import HubResult

# What `cards --push` commits: the cards, and the GGUF repo's quality chart its card embeds.
CARD_FILES = ("README.md", CHART_FILE)
Selectors = tuple[str, ...] | list[str]  # --only as given: KIND or KIND:ID, comma-separated or repeated


@contextlib.contextmanager
def open_locked(release: Release, options: Options, console: Console,
                planned: ArtifactRegistry | None = None) -> Iterator[Context]:
    """Plan the release once (unless the caller did), check --only against that plan, lock DIST/NAME for
    the block, and open the context on the same plan (one plan per command)."""
    planned = planned if planned is not None else plan_artifacts(release)
    if options.only:
        select_ids(planned, options.only, release.name)
    with dist_lock(options.dist_root.absolute() / release.name):
        yield Context(release, options, console=console, artifacts=planned)


def say_warnings(release: Release, console: Console) -> None:
    for w in release.warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)


def forget_from(ctx: Context, kind: str) -> None:
    """Forget recorded builds of `kind` and of everything made from it, so they are rebuilt."""
    ids = [a.id for a in ctx.artifacts if ("cards" if a.kind == "card" else a.kind) == kind]
    for i in ids + dependents(ctx.artifacts, ids):
        ctx.state.forget(i)


# ---- check ---------------------------------------------------------------------------------------------

@dataclass
class CheckOutcome:
    release: Release
    target: Path  # DIST/NAME
    remote: list[str] = field(default_factory=list)  # what --remote checked, one line each


def check_release(name: str, dist: Path, *, dist_given: bool, remote: bool, hub_endpoint: str | None,
                  ollama_registry: str | None, console: Console) -> CheckOutcome:
    """Validate the definition, that DIST/NAME can take the outputs (a problem with the default --dist is
    a warning), and with `remote` the credentials and access the release needs. Writes nothing."""
    release = load_release(name)
    target = dist / release.name
    unusable = folder_problem(target)
    if unusable:
        if dist_given:
            raise InputError(unusable, file="--dist")
        # Not asked about: a validation run elsewhere (a read-only checkout) is still a validation.
        release.warnings.append(f"--dist: {unusable} (the default; build, plan and publish write there)")
    withheld = recorded_withheld_in_use(release, target)  # with figures built there
    if withheld:
        raise InputError(withheld)
    outcome = CheckOutcome(release, target)
    if remote:
        rctx = Context(release, Options(dist_root=dist, hub_endpoint=hub_endpoint, ollama_registry=ollama_registry),
                       console=console, estimates=False)
        outcome.remote = check_remote(rctx, release_targets(rctx))
    return outcome


# ---- plan ----------------------------------------------------------------------------------------------

@dataclass
class PlanOutcome:
    ctx: Context
    shown: list[str]  # the artifact ids to show: all, or what `build --only` would make or restore
    manifest: Path


def plan_release(name: str, options: Options, console: Console, *, only: Selectors = ()) -> PlanOutcome:
    """Write DIST/NAME/manifest.json with every planned artifact (built ones stay built)."""
    release = load_release(name)
    options.only = parse_only(only)
    with open_locked(release, options, console) as ctx:
        restore_recorded(ctx)  # built artifacts stay built in the manifest
        path = ctx.write_manifest()
    # --only: what `build --only` would make or restore (the selection and what it needs)
    shown = closure(ctx.artifacts, select(ctx)) if options.only else [a.id for a in ctx.artifacts]
    return PlanOutcome(ctx, shown, path)


def plan_matrix(name: str, options: Options, console: Console, *, only: Selectors = (),
                check_runners: bool = False) -> JobPlan:
    """The job plan for many machines; with `check_runners`, refuse jobs that outgrow the workflow's runners
    (labels from the environment). Writes nothing."""
    release = load_release(name, tool_checks=False)
    options.only = parse_only(only)
    jobs = plan_jobs(Context(release, options, console=console))
    if check_runners:
        misfits = runner_fit(jobs, {v: os.environ.get(v, "") for v in RUNNER_VARIABLES.values()})
        if misfits:
            raise InputError(misfits)
    return jobs


# ---- build, cards, preview --------------------------------------------------------------------------

def build_release(name: str, options: Options, console: Console, *, only: Selectors = (),
                  from_kind: str | None = None) -> tuple[Context, list[str]]:
    """Build what `only` selects and is not up to date (with `from_kind`, that kind and what is made from
    it again); returns the context and the ids built in this run."""
    release = load_release(name)
    say_warnings(release, console)
    options.only = parse_only(only)
    with open_locked(release, options, console) as ctx:
        if from_kind:
            forget_from(ctx, from_kind)
        return ctx, run_build(ctx)


@dataclass
class CardsOutcome:
    ctx: Context
    built: list[str]  # the card ids rendered
    pushed: HubResult | None = None  # with --push: the README commits


def render_cards(name: str, options: Options, console: Console, *, push: bool) -> CardsOutcome:
    """Render every card and the preview; with `push`, commit only the READMEs to the Hub repos."""
    release = load_release(name)
    options.only, options.force = ["cards"], True
    with open_locked(release, options, console) as ctx:
        restore_recorded(ctx)
        outcome = CardsOutcome(ctx, run_build(ctx))
        if push:
            from .publish.hub import HubPublisher  # lazy: huggingface_hub takes ~0.3 s, only --push needs it

            pub = HubPublisher(options.hub_endpoint, None, hash_cache=ctx.hash_cache, progress=console.print)
            outcome.pushed = pub.push_readmes(
                [ctx.artifacts[i] for i in outcome.built if ctx.artifacts[i].destination], ctx.dist,
                files=CARD_FILES, message=f"Update model cards of {release.name}")
    return outcome


def write_preview(name: str, dist: Path, console: Console) -> tuple[Release, Path]:
    """Render the cards and write the static HTML preview of the release family; returns its index page."""
    from .cards import build_preview  # lazy: the card renderer loads huggingface_hub (~0.3 s)

    release = load_release(name)
    with open_locked(release, Options(dist_root=dist), console) as ctx:
        restore_recorded(ctx)
        cards_dir = ctx.dist / "cards"
        ctx.options.only = ["cards"]
        run_build(ctx)
        return release, build_preview(release, ctx.artifacts, cards_dir, ctx.dist / "preview")
