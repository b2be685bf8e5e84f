"""`release cards` and `release preview`: render the model cards, push only the READMEs, preview the family."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..completion import complete_release
from ..engine import render_cards, write_preview
from ..outcome import ReleaseCommand
from ..pipeline import Options
from .common import dist_option, err, handle_errors, hub_endpoint_option, out


@click.command(cls=ReleaseCommand)
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--push", is_flag=True,
              help="Commit only the cards (READMEs, the GGUF quality chart) to the Hub repos (one commit per repo).")
@hub_endpoint_option()
@click.option("--json", "as_json", is_flag=True, help="Print the rendered cards (and push result) as JSON.")
@handle_errors
def cards(name: str, dist: Path, push: bool, hub_endpoint: str | None, as_json: bool) -> None:
    """Render every card into dist/NAME/cards/ and the preview; with --push, push only the READMEs.

    Cards use what is built (sizes, types, digests) and planned estimates for the rest.
    """
    result = render_cards(name, Options(dist_root=dist, hub_endpoint=hub_endpoint), err, push=push)
    ctx, built, pushed = result.ctx, result.built, result.pushed
    if as_json:
        click.echo(json.dumps({"cards": {i: str(ctx.artifact_dir(ctx.artifacts[i]) / "README.md") for i in built},
                               "commits": pushed.commits if pushed else 0}, indent=2))
        return
    for i in built:
        out.print(f"[green]✓[/] {i}: {ctx.artifact_dir(ctx.artifacts[i]) / 'README.md'}")
    if pushed is not None:
        out.print(f"pushed READMEs: {pushed.commits} commits, {pushed.bytes_sent} bytes")
    err.print(f"preview: {ctx.dist / 'preview' / 'index.html'}")


@click.command(cls=ReleaseCommand)
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--json", "as_json", is_flag=True, help="Print the preview's path as JSON.")
@handle_errors
def preview(name: str, dist: Path, as_json: bool) -> None:
    """Write a static HTML preview of the whole release family to dist/NAME/preview/index.html."""
    release, index = write_preview(name, dist, err)
    if as_json:
        click.echo(json.dumps({"release": release.name, "preview": str(index)}))
        return
    out.print(f"[green]✓[/] preview: {index}")
