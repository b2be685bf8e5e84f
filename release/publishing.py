"""What the publishing commands do, without the command line: `publish` (one machine, a job, or finish;
for real or rehearsed with --local), `clean --staging` and `status`. The CLI (release/cli/publish.py)
parses into a `PublishRequest`, calls one function here and prints what it returns.

Order of a publish, as the contract asks: every option conflict is bad input before anything is read;
placeholders are refused before a real publish; credentials and access are checked against the one plan
of the command before anything is built, fetched or locked (not with --local); then the lock, the
rebuild of `--from`, and the work.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from .access import Targets, check_remote, job_targets, publish_targets
from .destinations import hub_publisher
from .distributed.clean import clean_staging, release_repos
from .distributed.finish import run_finish
from .distributed.run import JobSummary, run_job
from .engine import forget_from, open_locked, say_warnings
from .errors import InputError, WorkError
from .flow import PublishSummary, publish_selection, run_publish
from .local import local_targets
from .pipeline import Context, Options, parse_only
from .plan import plan_artifacts
from .spec.load import Release, load_release
from .spec.placeholders import refuse_placeholders
from .status import StatusReport, release_status

# What a one-machine --local rehearsal publishes when no registry is installed: everything but Ollama tags.
LOCAL_WITHOUT_REGISTRY = ["bf16", "gguf", "nvfp4", "cards", "hub"]


@dataclass
class PublishRequest:
    """`release publish`'s options, as given."""

    name: str
    dist: Path = Path("dist")
    dry_run: bool = False
    only: tuple[str, ...] = ()
    job_id: str | None = None
    finish: bool = False
    local: bool = False
    hub_endpoint: str | None = None
    ollama_registry: str | None = None
    prune_remote: bool = False
    from_kind: str | None = None
    force: bool = False
    jobs: int = 2
    max_memory_gb: float | None = None
    via_ollama_cli: bool = False
    git_tag: bool = True
    move_tags: bool = False
    hub_max_wait: float = 900.0

    def refuse_conflicts(self) -> None:
        """Options that cannot go together: bad input, before anything is read."""
        if self.job_id == "finish":
            raise InputError("finish is not a job to run with --job: promote with `release publish NAME --finish`",
                             file="--job")
        if self.prune_remote and self.only:
            # Pruning deletes every remote file no given artifact provides: with a subset it would delete the rest.
            raise InputError("--prune-remote needs the whole release; drop --only", file="--prune-remote")
        if self.job_id and self.finish:
            raise InputError("--job and --finish are separate runs", file="--finish")
        if (self.job_id or self.finish) and (self.only or self.prune_remote or self.via_ollama_cli):
            raise InputError("--only, --prune-remote and --via-ollama-cli are for a publish from one machine; a "
                             "job's scope is the plan's", file="--job" if self.job_id else "--finish")

    def options(self) -> Options:
        return Options(dist_root=self.dist, only=parse_only(self.only), dry_run=self.dry_run,
                       hub_endpoint=self.hub_endpoint, ollama_registry=self.ollama_registry,
                       prune_remote=self.prune_remote, force=self.force, jobs=self.jobs,
                       via_ollama_cli=self.via_ollama_cli, move_tags=self.move_tags,
                       max_memory=int(self.max_memory_gb * 1e9) if self.max_memory_gb else None)


@dataclass
class PublishOutcome:
    ctx: Context
    job: JobSummary | None = None  # --job: what the job built and staged
    summary: PublishSummary | None = None  # one machine or --finish: per destination
    local_hub: str | None = None  # --local: where the rehearsal Hub was served during the run


def publish_release(request: PublishRequest, console: Console) -> PublishOutcome:
    """Run `release publish` as `request` asks; says warnings, access and local notes on `console`."""
    request.refuse_conflicts()
    os.environ["RELEASE_HUB_MAX_WAIT"] = f"{request.hub_max_wait:g}"  # read by the Hub publisher
    release = load_release(request.name)
    if not (request.dry_run or request.local):
        refuse_placeholders(release)
    say_warnings(release, console)
    options = request.options()
    planned = plan_artifacts(release)  # the one plan of this command
    if not request.local:
        # Before anything is built, fetched or locked: a wrong token fails now, not after hours of building.
        access = Context(release, options, console=console, artifacts=planned)
        for line in check_access(access, request.job_id, request.finish):
            console.print(f"access: {escape(line)}", soft_wrap=True)
    with open_locked(release, options, console, planned) as ctx:
        if request.from_kind:
            forget_from(ctx, request.from_kind)
        if not request.local:
            return _publish(ctx, request, git_tag=request.git_tag)
        with _rehearsal(ctx, release, request, console) as local_hub:
            # A rehearsal is not a release: it leaves the pipelines repo's tags alone.
            outcome = _publish(ctx, request, git_tag=False)
            outcome.local_hub = local_hub
            return outcome


def _publish(ctx: Context, request: PublishRequest, *, git_tag: bool) -> PublishOutcome:
    if request.job_id:
        return PublishOutcome(ctx, job=run_job(ctx, request.job_id))
    if request.finish:
        return PublishOutcome(ctx, summary=run_finish(ctx, git_tag=git_tag))
    return PublishOutcome(ctx, summary=run_publish(ctx, git_tag=git_tag))


@contextlib.contextmanager
def _rehearsal(ctx: Context, release: Release, request: PublishRequest, console: Console) -> Iterator[str]:
    """Point the context's options at a local Hub and registry on 127.0.0.1 for the block; yields the Hub's
    URL."""
    options = ctx.options
    with local_targets(ctx.dist / "local", release.definition.release.owner) as targets:
        options.hub_endpoint, options.hub_token = targets.hub_url, targets.hub_token
        options.local_state = ctx.dist / "local"
        if targets.registry_url:
            options.ollama_registry = targets.registry_url
        elif release.definition.ollama is not None:
            if request.job_id or request.finish:
                raise WorkError("no docker-registry installed: a job or --finish with --local needs one "
                                "(apt-get install docker-registry)")
            options.only = options.only or list(LOCAL_WITHOUT_REGISTRY)
            console.print(f"no docker-registry installed: Ollama tags stay in the local store "
                          f"(OLLAMA_MODELS={ctx.dist / 'ollama'})")
        yield targets.hub_url


def check_access(ctx: Context, job_id: str | None, finish: bool) -> list[str]:
    """What this publish touches, checked with its credentials (release/access.py)."""
    if job_id or finish:
        return check_remote(ctx, job_targets(ctx, job_id))
    return check_remote(ctx, publish_targets(ctx, publish_selection(ctx)))


def clean_release(name: str, hub_endpoint: str | None, console: Console, *,
                  dry_run: bool) -> tuple[Release, list[str], list[tuple[str, str]]]:
    """Delete (with `dry_run`, list) the staging branches of every destination repo of release `name`;
    returns the release, its repos and the (repo, branch) pairs removed."""
    release = load_release(name)
    ctx = Context(release, Options(hub_endpoint=hub_endpoint), console=console, estimates=False)
    repos = release_repos(release)
    check_remote(ctx, Targets(read=repos) if dry_run else Targets(write=repos))
    return release, repos, clean_staging(release, hub_publisher(ctx), dry_run=dry_run)


def status_report(name: str, options: Options, console: Console, *, local: bool) -> StatusReport:
    """What is published where (read-only); with `local`, on the rehearsal Hub and registry."""
    release = load_release(name, tool_checks=False)
    ctx = Context(release, options, console=console)
    if not local:
        return release_status(ctx)
    with local_targets(ctx.dist / "local", release.definition.release.owner) as targets:
        options.hub_endpoint, options.hub_token = targets.hub_url, targets.hub_token
        options.ollama_registry = targets.registry_url or options.ollama_registry
        return release_status(ctx)
