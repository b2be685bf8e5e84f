"""`release scores import`: fold benchmark results into a release's scores.json."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from ..completion import complete_release
from ..outcome import ReleaseGroup
from ..spec.lmeval import import_lm_eval
from ..spec.load import load_release
from .common import dist_option, err, handle_errors, out


@click.group(cls=ReleaseGroup)
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
