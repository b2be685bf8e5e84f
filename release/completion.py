"""Shell completion (click's own: `eval "$(_RELEASE_COMPLETE=bash_source release)"`): release names —
the folders under pipelines/ here and in this project, or a path — and `--only` values — the kinds, then
the ids of the release named on the line (`gguf:Q4_K_M`, `hub:OWNER/REPO`), typed in any case."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from .errors import ReleaseError
from .pipeline import KINDS, selector_kind
from .plan import plan_artifacts
from .spec.load import DEFINITION_FILE, PROJECT_ROOT, load_release


def complete_release(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    if "/" in incomplete or incomplete.startswith((".", "~")):
        return [CompletionItem(incomplete, type="dir")]  # a path: the shell completes it
    names = sorted({p.parent.name for root in (Path.cwd(), PROJECT_ROOT)
                    for p in (root / "pipelines").glob(f"*/{DEFINITION_FILE}")})
    return [CompletionItem(n) for n in names if n.startswith(incomplete)]


def complete_only(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    values = [*KINDS]
    # While the line ends in `--only`, click leaves NAME among the unparsed arguments.
    name = ctx.params.get("name") or next((a for a in ctx.args if not a.startswith("-")), None)
    if name and ":" in incomplete:
        values += _artifact_selectors(name, selector_kind)
    folded = incomplete.casefold()
    return [CompletionItem(v) for v in values if v.casefold().startswith(folded)]


def _artifact_selectors(name: str, selector_kind: Any) -> list[str]:
    """`kind:id` of every planned artifact of release `name`, and `hub:repo` of its repos; none when the
    release does not load (completion never prints an error)."""
    try:
        planned = plan_artifacts(load_release(name, tool_checks=False), estimates=False)
    except (ReleaseError, OSError, ValueError):
        return []
    ids = [f"{selector_kind(a)}:{a.id.split(':', 1)[-1]}" for a in planned if ":" in a.id]
    repos = sorted({f"hub:{a.destination.repo}" for a in planned if a.destination and a.destination.kind == "hub"})
    return ids + repos
