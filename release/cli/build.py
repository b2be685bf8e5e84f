"""`release build`: prune, build the artifacts, render cards, write the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..completion import complete_release
from ..engine import build_release
from ..outcome import ReleaseCommand
from ..pipeline import Options
from .common import JOBS, MEMORY_GB, dist_option, err, from_option, handle_errors, hub_endpoint_option, only_option
from .plan import print_plan


@click.command(cls=ReleaseCommand)
@click.argument("name", shell_complete=complete_release)
@dist_option
@only_option("Build")
@click.option("--jobs", type=JOBS, default=2, show_default=True, help="Parallel build jobs.")
@click.option("--max-memory", type=MEMORY_GB, default=None, help="Memory budget for parallel jobs, in GB.")
@click.option("--force", is_flag=True,
              help="Make again what --only selects (all without it) and what is made from it, even when its inputs "
                   "are unchanged; what it needs is kept.")
@from_option("Make this kind and everything made from it again (an upstream step).")
@hub_endpoint_option("Hub URL for downloading the base.")
@click.option("--json", "as_json", is_flag=True, help="Print what was built and every artifact's status as JSON.")
@handle_errors
def build(name: str, dist: Path, only: tuple[str, ...], jobs: int, max_memory: float | None, force: bool,
          from_kind: str | None, hub_endpoint: str | None, as_json: bool) -> None:
    """Prune, build the artifacts, render cards, and write the manifest.

    Finished artifacts whose inputs are unchanged are restored from dist/NAME/state.json, not rebuilt.
    """
    options = Options(dist_root=dist, jobs=jobs, force=force, hub_endpoint=hub_endpoint,
                      max_memory=int(max_memory * 1e9) if max_memory else None)
    ctx, built = build_release(name, options, err, only=only, from_kind=from_kind)
    if as_json:
        click.echo(json.dumps({"release": ctx.release.name, "built": built,
                               "manifest": str(ctx.dist / "manifest.json"),
                               "artifacts": [{"id": a.id, "status": a.status, "size": a.size or None}
                                             for a in ctx.artifacts]}, indent=2))
        return
    print_plan(ctx)
    err.print(f"built: {', '.join(built) or 'nothing (everything up to date)'}")
