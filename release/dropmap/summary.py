"""What the BF16 card says about how the experts were chosen, from the recorded scores only: the measure,
the calibration classes and tokens, the recipe, and per MoE layer the share of the measured contribution
that the kept experts carry (with a bar chart the BF16 repo ships beside its card).

The facts come from a derived map's artifact (`release build` / a `dropmap` job recorded them) or from the
scores file beside a given map; a map that comes with neither gets the definition's own `[prune] method`
text only.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..spec.expert_scores import ExpertScores, kept_share, parse_scores, scores_path_for

if TYPE_CHECKING:
    from ..manifest import ArtifactRegistry
    from ..spec.load import Release

CHART_FILE = "expert-selection.svg"  # in the BF16 repo, beside its README
REAP_URL = "https://arxiv.org/abs/2510.13999"  # the measure's paper, cited by the cards
LOWEST = 3  # layers named in the text


def selection_facts(scores: ExpertScores, kept: dict[int, tuple[int, ...]]) -> dict[str, Any]:
    """JSON-able facts of a selection (recorded on a derived map's artifact, so another machine can
    render the card without the scores file)."""
    shares = kept_share(scores, kept)
    return {"recipe": scores.recipe.to_json(), "recipe_text": scores.recipe.describe(),
            "experts_kept": scores.experts_kept, "num_experts": scores.num_experts,
            "classes": {c: i.tokens for c, i in sorted(scores.classes.items())},
            "tokens": sum(i.tokens for i in scores.classes.values()), "device": scores.device,
            "dtype": scores.dtype, "kept_share": {str(k): v for k, v in sorted(shares.items())}}


def given_scores(release: Release) -> ExpertScores | None:
    """The scores file beside a given (not derived) drop map, when there is one."""
    d = release.definition
    if d.dropmap is not None and d.dropmap.derive:
        return None
    rel = Path(d.prune.drop_map).with_name(scores_path_for(Path(d.prune.drop_map).name))
    path = release.path(str(rel))
    if not path.is_file():
        return None
    return parse_scores(path.read_bytes(), f"{release.name}/{rel}")  # validated by `check` already


def has_selection(release: Release) -> bool:
    """Whether the BF16 card will describe a measured selection (and its repo ship the chart)."""
    d = release.definition
    return bool(d.dropmap is not None and d.dropmap.derive) or given_scores(release) is not None


def selection_of(release: Release, artifacts: ArtifactRegistry) -> dict[str, Any] | None:
    derived = artifacts.get("dropmap")
    if derived is not None and derived.status != "planned":
        return derived.facts.get("selection")
    scores = given_scores(release)
    if scores is None or release.drop_map.pending:
        return None
    return selection_facts(scores, dict(release.drop_map.kept))


def describe(selection: dict[str, Any]) -> dict[str, Any]:
    """The numbers the card's text shows: share range, mean, and the lowest layers."""
    shares = {int(k): float(v) for k, v in selection["kept_share"].items()}
    ordered = sorted(shares.items(), key=lambda kv: (kv[1], kv[0]))
    return {**selection, "share_min": min(shares.values()), "share_max": max(shares.values()),
            "share_mean": math.fsum(shares.values()) / len(shares),
            "lowest": [{"layer": k, "share": v} for k, v in ordered[:LOWEST]], "layers": len(shares)}


def chart_svg(selection: dict[str, Any], title: str) -> str:
    """A bar per MoE layer: the share of the measured contribution its kept experts carry."""
    shares = sorted((int(k), float(v)) for k, v in selection["kept_share"].items())
    w, h, left, right, top, bottom = 760, 320, 56, 16, 44, 44
    plot_w, plot_h = w - left - right, h - top - bottom
    floor = min(0.5, math.floor(min(v for _, v in shares) * 10) / 10)  # the axis starts at 50 % or lower
    bar = plot_w / max(len(shares), 1)

    def y(v: float) -> float:
        return top + plot_h * (1 - (v - floor) / (1 - floor))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
             f'font-family="sans-serif" font-size="12">',
             f'<rect width="{w}" height="{h}" fill="white"/>',
             f'<text x="{left}" y="20" font-size="14" font-weight="bold">{escape(title)}</text>',
             f'<text x="{left}" y="36" fill="#555">share of the measured contribution (REAP) carried by the '
             f'{selection["experts_kept"]} kept of {selection["num_experts"]} experts, per MoE layer</text>']
    for tick in range(int(floor * 10), 11):
        v = tick / 10
        parts.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.0%}</text>')
    lowest = {d["layer"] for d in describe(selection)["lowest"]}
    for i, (layer, v) in enumerate(shares):
        x = left + i * bar
        colour = "#d62728" if layer in lowest else "#1f77b4"
        parts.append(f'<rect x="{x + bar * 0.1:.1f}" y="{y(v):.1f}" width="{bar * 0.8:.1f}" '
                     f'height="{top + plot_h - y(v):.1f}" fill="{colour}"><title>layer {layer}: {v:.1%}'
                     f'</title></rect>')
        if len(shares) <= 40 or i % 5 == 0:
            parts.append(f'<text x="{x + bar / 2:.1f}" y="{h - bottom + 16}" text-anchor="middle">{layer}</text>')
    parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{h - 8}" text-anchor="middle" fill="#555">MoE layer '
                 f'(lowest {len(lowest)} in red)</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
