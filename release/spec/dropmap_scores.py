"""`release check` for a derived drop map: the scores file beside it (`<map stem>.scores.json`, written by
`release dropmap`) must describe the same base and layers and re-derive exactly the map's keep sets with
its recorded recipe. A definition with [dropmap] whose map has no scores yet gets a warning (the map is
derived by a later step)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import InputError, Problem
from ..families import Family
from .definition import ReleaseDefinition
from .drop_recipes import Recipe
from .dropmap import DropMap
from .expert_scores import parse_scores, scores_path_for
from .paths import PathRefused, resolve_inside
from .readers import read_input_bytes


def derived_map_problems(pipeline_dir: Path, definition: ReleaseDefinition, drop_map: DropMap, family: Family,
                         config: dict[str, Any], warnings: list[str]) -> list[Problem]:

    rel = scores_path_for(definition.prune.drop_map)
    file = f"{pipeline_dir.name}/{rel}"
    try:
        path = resolve_inside(pipeline_dir, rel)
    except PathRefused as exc:
        return [Problem(file, "", str(exc))]
    if not path.exists():
        if definition.dropmap is not None:
            warnings.append(f"{file}: not found; the dropmap section of the definition asks for a derived map: "
                            f"run `release dropmap {pipeline_dir.name} --out {definition.prune.drop_map}`")
        return []
    try:
        scores = parse_scores(read_input_bytes(path, file), file)
    except InputError as exc:
        return exc.problems
    p: list[Problem] = []
    if scores.base != drop_map.base:
        p.append(Problem(file, "base", f"{scores.base!r}, the drop map is for {drop_map.base!r}"))
    if scores.num_experts != drop_map.num_experts:
        p.append(Problem(file, "num_experts", f"{scores.num_experts}, the drop map says {drop_map.num_experts}"))
    if scores.groups != family.num_groups(config):
        p.append(Problem(file, "groups", f"{scores.groups}, the base routes in {family.num_groups(config)} groups"))
    if set(scores.layers) != set(drop_map.kept):
        p.append(Problem(file, "layers", f"layers {sorted(scores.layers)}, the drop map has {sorted(drop_map.kept)}"))
    if scores.experts_kept != drop_map.kept_count:
        p.append(Problem(file, "recipe.experts_kept",
                         f"{scores.experts_kept}, the drop map keeps {drop_map.kept_count} per layer"))
    section = definition.dropmap
    if section is not None:
        wanted = Recipe(section.recipe, section.keep_top_per_class, dict(section.class_weights))
        if wanted.to_json() != scores.recipe.to_json():
            p.append(Problem(file, "recipe", f"derived with {scores.recipe.describe()!r}, the definition's "
                                             f"[dropmap] asks for {wanted.describe()!r}; derive the map again"))
    if p:
        return p
    try:
        derived = scores.kept()
    except InputError as exc:
        return [Problem(file, "recipe", q.message) for q in exc.problems]
    for layer in sorted(derived):
        if derived[layer] != drop_map.kept[layer]:
            dropped = sorted(set(range(scores.num_experts)) - set(derived[layer]))
            p.append(Problem(drop_map.file, f"drop.{layer}",
                             f"does not follow from {rel} (recipe {scores.recipe.describe()} drops {dropped}); "
                             "derive the map again or remove the scores file"))
    return p
