"""Recipes: from measured expert contributions to the experts each MoE layer keeps.

Pure Python on the numbers of a scores file, so `release check` can re-derive a drop map from its
scores without torch. Every recipe ranks experts by one score per expert (higher = more important),
breaks ties by the lower expert index, and keeps the first `experts_kept`:

- `pooled`: REAP over every calibration token — Σ router weight × ‖output‖ over the tokens routed to the
  expert, divided by their number (class weights, when given, weight each class's tokens).
- `max-class`: REAP per class; within each layer a class's scores are divided by that class's best
  expert's score (so every class's best expert scores 1), multiplied by the class weight, and the
  expert's score is its maximum over classes: an expert that matters to any single class ranks high even
  when few tokens overall route to it.

`keep_top_per_class = N` keeps, before ranking, each class's N best experts (by that class's REAP
score; experts the class never routes to are never forced). With group-limited routing (DeepSeek-V3
style `n_group` > 1) every group keeps the same number, ranked within the group, since only that is
exact for the pruned model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError, Problem

RECIPES = ("pooled", "max-class")


@dataclass(frozen=True)
class Recipe:
    name: str
    keep_top_per_class: int = 0
    class_weights: Mapping[str, float] = field(default_factory=dict)

    def weight(self, cls: str) -> float:
        return float(self.class_weights.get(cls, 1.0))

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "keep_top_per_class": self.keep_top_per_class,
                "class_weights": {k: float(self.class_weights[k]) for k in sorted(self.class_weights)}}

    def describe(self) -> str:
        parts = [self.name]
        if self.keep_top_per_class:
            parts.append(f"keep top {self.keep_top_per_class} per class")
        weighted = {k: v for k, v in sorted(self.class_weights.items()) if v != 1.0}
        if weighted:
            parts.append("class weights " + ", ".join(f"{k}={v:g}" for k, v in weighted.items()))
        return ", ".join(parts)


def recipe_problems(recipe: Recipe, classes: Sequence[str], *, file: str, field: str) -> list[Problem]:
    """Problems of a recipe against the calibration classes it will be applied to."""
    def at(key: str) -> str:
        return f"{field}.{key}" if field else key

    problems: list[Problem] = []
    if recipe.name not in RECIPES:
        problems.append(Problem(file, at("recipe"), f"unknown recipe {recipe.name!r} (known: {', '.join(RECIPES)})"))
    if recipe.keep_top_per_class < 0:
        problems.append(Problem(file, at("keep_top_per_class"), "must be ≥ 0"))
    for cls, w in sorted(recipe.class_weights.items()):
        where = at(f"class_weights.{cls}")
        if cls not in classes:
            problems.append(Problem(file, where, f"no calibration class {cls!r} (classes: {', '.join(classes)})"))
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w <= 0:
            problems.append(Problem(file, where, f"class weight must be a positive number, got {w!r}"))
    return problems


def _reap(total: float, count: int) -> float:
    return total / count if count else 0.0


def expert_scores(counts: Mapping[str, Sequence[int]], sums: Mapping[str, Sequence[float]],
                  recipe: Recipe) -> list[float]:
    """One score per expert of one layer (higher = keep)."""
    classes = sorted(counts)
    n = len(counts[classes[0]])
    if recipe.name == "pooled":
        out = []
        for j in range(n):
            total = sum(recipe.weight(c) * sums[c][j] for c in classes)
            tokens = sum(recipe.weight(c) * counts[c][j] for c in classes)
            out.append(total / tokens if tokens else 0.0)
        return out
    if recipe.name == "max-class":
        best = [0.0] * n
        for c in classes:
            reap = [_reap(sums[c][j], counts[c][j]) for j in range(n)]
            top = max(reap)
            if top <= 0.0:
                continue  # a class that measured nothing in this layer has no say
            w = recipe.weight(c)
            best = [max(b, w * r / top) for b, r in zip(best, reap, strict=True)]
        return best
    raise ValueError(f"unknown recipe {recipe.name!r}")


def _ranked(scores: Sequence[float], experts: Sequence[int]) -> list[int]:
    return sorted(experts, key=lambda j: (-scores[j], j))


def select_layer(counts: Mapping[str, Sequence[int]], sums: Mapping[str, Sequence[float]], recipe: Recipe,
                 experts_kept: int, *, groups: int = 1, layer: int | None = None,
                 file: str = "", field: str = "keep_top_per_class") -> tuple[int, ...]:
    """The experts one layer keeps, ascending."""
    n = len(next(iter(counts.values())))
    scores = expert_scores(counts, sums, recipe)
    per_group, quota = n // groups, experts_kept // groups
    forced: set[int] = set()
    if recipe.keep_top_per_class:
        for c in sorted(counts):
            reap = [_reap(sums[c][j], counts[c][j]) for j in range(n)]
            for g in range(groups):
                members = [j for j in range(g * per_group, (g + 1) * per_group) if reap[j] > 0.0]
                forced.update(_ranked(reap, members)[:recipe.keep_top_per_class])
    kept: list[int] = []
    for g in range(groups):
        members = list(range(g * per_group, (g + 1) * per_group))
        must = [j for j in members if j in forced]
        if len(must) > quota:
            where = f"layer {layer}" if layer is not None else "a layer"
            scope = f" of group {g}" if groups > 1 else ""
            raise InputError(f"keep_top_per_class = {recipe.keep_top_per_class} forces {len(must)} experts{scope} "
                             f"in {where}, more than the {quota} kept", file=file, field=field)
        rest = [j for j in _ranked(scores, members) if j not in forced]
        kept += must + rest[:quota - len(must)]
    return tuple(sorted(kept))


def select(layers: Mapping[int, tuple[Mapping[str, Sequence[int]], Mapping[str, Sequence[float]]]], recipe: Recipe,
           experts_kept: int, *, groups: int = 1, file: str = "", field: str = "keep_top_per_class",
           ) -> dict[int, tuple[int, ...]]:
    """Layer → kept experts (ascending) for every layer's (tokens routed, summed weighted norms) per class."""
    return {layer: select_layer(counts, sums, recipe, experts_kept, groups=groups, layer=layer, file=file,
                                field=field)
            for layer, (counts, sums) in sorted(layers.items())}
