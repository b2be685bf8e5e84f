"""`release check`: validate a release definition (and with --remote, the access it needs)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.markup import escape

from ..completion import complete_release
from ..engine import check_release, say_warnings
from ..outcome import ReleaseCommand
from .common import dist_option, err, handle_errors, hub_endpoint_option, out


@click.command(cls=ReleaseCommand)
@click.argument("name", shell_complete=complete_release)
@dist_option
@click.option("--remote", is_flag=True,
              help="Also check that the Hub token and the Ollama key may do what the release does (writes nothing).")
@hub_endpoint_option()
@click.option("--ollama-registry", default=None, help="Ollama registry URL (default: the definition's).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
@handle_errors
def check(ctx: click.Context, name: str, dist: Path, remote: bool, hub_endpoint: str | None,
          ollama_registry: str | None, as_json: bool) -> None:
    """Validate a release definition, its drop map and scores, and that DIST/NAME can take the
    outputs. Writes nothing. With --remote, also the credentials and access the release needs:
    HF_TOKEN may write every destination namespace, the base is readable, the registry takes the key."""
    result = check_release(name, dist, remote=remote, hub_endpoint=hub_endpoint, ollama_registry=ollama_registry,
                           dist_given=ctx.get_parameter_source("dist") != click.core.ParameterSource.DEFAULT,
                           console=err)
    release = result.release
    if as_json:
        out.print_json(json.dumps({"release": release.name, "ok": True, "dist": str(result.target),
                                   "warnings": release.warnings, "remote": result.remote}))
        return
    say_warnings(release, err)
    for line in result.remote:
        out.print(f"[green]✓[/] {escape(line)}", soft_wrap=True)
    d = release.definition
    parts = [f"{len(d.gguf.tiers)} GGUF tiers" if d.gguf else "",
             f"{len(d.ollama.tags)} Ollama tags" if d.ollama else "",
             "NVFP4A16" if d.nvfp4 else "", "BF16" if d.bf16 else ""]
    out.print(f"[green]✓[/] {release.name}: {release.family.family}, "
              f"{release.drop_map.num_experts} → {release.drop_map.kept_count} experts in "
              f"{len(release.drop_map.kept)} MoE layers; " + ", ".join(p for p in parts if p))
