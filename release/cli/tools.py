"""The tools around a release: `prune` a checkpoint, derive a `dropmap`, `init` a release, `doctor`."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from ..completion import complete_release
from ..doctor import run_doctor
from ..dropmap.derive import DropmapRequest, derive
from ..errors import InputError
from ..init import init_release
from ..init_base import read_base, token_owner
from ..outcome import ReleaseCommand
from ..prune import prune_checkpoint
from ..spec.dropmap import load_drop_map
from .common import err, handle_errors, hub_endpoint_option, out


@click.command(cls=ReleaseCommand)
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
    dm = load_drop_map(drop_map, display=str(drop_map))
    result = prune_checkpoint(base, dm, out_dir, base_repo=base_repo, base_revision=base_revision,
                              mtp="drop" if drop_mtp else "refuse")
    if as_json:
        out.print_json(json.dumps(_jsonable(result)))
    else:
        out.print(f"[green]✓[/] pruned {base} → {out_dir}")


@click.command(cls=ReleaseCommand)
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
@hub_endpoint_option("Hub URL for downloading the base.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def dropmap(name: str, calibration: Path | None, out_file: Path, recipe: str | None, keep_top_per_class: int | None,
            class_weights: tuple[str, ...], device: str, dtype: str, max_tokens: int | None, batch_tokens: int,
            hub_endpoint: str | None, as_json: bool) -> None:
    """Derive the drop map of release NAME from calibration text: run its base model layer by layer, measure
    each expert's router-weighted output per class, rank by the recipe, keep [prune] experts_kept per layer."""
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



@click.command("init", cls=ReleaseCommand)
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option("--base", "base_ref", required=True, metavar="REPO_OR_PATH",
              help="The base model: a Hub repo id, or a checkpoint folder on this machine.")
@click.option("--revision", default=None, help="The base's revision on the Hub (default main, pinned to its commit).")
@click.option("--name", default=None, help="The release name (default: the folder's name).")
@click.option("--owner", default=None, help="Hugging Face namespace of the repos (default: the token's, if HF_TOKEN).")
@click.option("--experts-kept", type=click.IntRange(1), default=None, help="Experts each MoE layer keeps.")
@click.option("--derive", is_flag=True, help="Derive the drop map in the release ([dropmap] derive) from calibration "
                                             "texts, instead of a drop-map placeholder.")
@hub_endpoint_option()
@click.option("--json", "as_json", is_flag=True, help="Print what was made as JSON.")
@handle_errors
def init(folder: Path, base_ref: str, revision: str | None, name: str | None, owner: str | None,
         experts_kept: int | None, derive: bool, hub_endpoint: str | None, as_json: bool) -> None:
    """Start a new release in FOLDER from a base model: its family detected, its config recorded, every
    section of release.toml filled; what only you can give is marked # PLACEHOLDER. `release check` accepts
    the result."""
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


@click.command(cls=ReleaseCommand)
@click.option("--install", is_flag=True, help="Install what is missing (llama.cpp tools; cached).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def doctor(install: bool, as_json: bool) -> None:
    """Check (and with --install, set up) the external tools: llama.cpp, registry, browser."""
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
    if is_dataclass(obj):
        return json.loads(json.dumps(asdict(obj), default=str))
    return obj
