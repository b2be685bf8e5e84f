"""Drop maps (`dropmap.json`, format `moe-drop-map/1`): parsing and validation.

Shape (fixed; other tools write these too):
    {"format": "moe-drop-map/1", "base": "google/gemma-4-26B-A4B-it", "num_experts": 128,
     "drop": {"0": [3, 17, …], "1": […], …}}        # or "keep" instead of "drop", never both
Extra top-level keys `source` and `notes` are allowed. Layer keys are decimal MoE layer indices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem, ProblemCollector
from ..families import Family
from .bounds import MAX_EXPERTS, MAX_LAYERS, int_problem, is_int
from .readers import parse_json, read_input_bytes

FORMAT = "moe-drop-map/1"
ALLOWED_KEYS = {"format", "base", "num_experts", "drop", "keep", "source", "notes"}


@dataclass(frozen=True)
class DropMap:
    file: str
    base: str
    num_experts: int
    kept: dict[int, tuple[int, ...]]  # MoE layer → kept expert indices, ascending
    sha256: str
    source: str = ""
    notes: str = ""
    planned_kept: int = 0  # a map the release derives itself, before it exists: experts it will keep

    @property
    def pending(self) -> bool:
        """Not derived yet ([dropmap] derive): only the counts are known."""
        return not self.kept and self.planned_kept > 0

    @property
    def layers(self) -> list[int]:
        return sorted(self.kept)

    @property
    def kept_count(self) -> int:
        """Experts kept per layer (uniform: validated at load)."""
        if self.kept:
            return len(next(iter(self.kept.values())))
        return self.planned_kept or self.num_experts

    @property
    def dropped_count(self) -> int:
        return self.num_experts - self.kept_count

    def dropped(self, layer: int) -> tuple[int, ...]:
        keep = set(self.kept[layer])
        return tuple(i for i in range(self.num_experts) if i not in keep)

    def is_identity(self) -> bool:
        return all(len(v) == self.num_experts for v in self.kept.values())


def parse_drop_map(raw: bytes, file: str) -> DropMap:
    """Structural validation; every problem of the file is reported at once."""
    errors = ProblemCollector()
    data = parse_json(raw, file)
    if not isinstance(data, dict):
        raise InputError("top level must be a JSON object", file=file)

    for key in sorted(set(data) - ALLOWED_KEYS):
        errors.add(file, key, f"unknown key (allowed: {', '.join(sorted(ALLOWED_KEYS))})")
    if data.get("format") != FORMAT:
        errors.add(file, "format", f"must be {FORMAT!r}, got {data.get('format')!r}")
    base = data.get("base")
    if not isinstance(base, str) or not base:
        errors.add(file, "base", "must be the base model's repo id (a non-empty string)")
        base = ""
    num_experts = data.get("num_experts")
    # Bounded before `range(num_experts)` below turns it into a set.
    bad = int_problem(num_experts, 1, MAX_EXPERTS)
    if bad:
        errors.add(file, "num_experts", bad)
        num_experts = None

    has_drop, has_keep = "drop" in data, "keep" in data
    if has_drop and has_keep:
        errors.add(file, "drop", "give either 'drop' or 'keep', never both")
    elif not has_drop and not has_keep:
        errors.add(file, "drop", "missing: give 'drop' (or 'keep') per MoE layer")
    mode = "drop" if has_drop else "keep"
    layers_raw = data.get(mode, {})
    for key in ("source", "notes"):
        if key in data and not isinstance(data[key], str):
            errors.add(file, key, "must be a string")

    kept: dict[int, tuple[int, ...]] = {}
    if (has_drop or has_keep) and not isinstance(layers_raw, dict):
        errors.add(file, mode, "must be an object mapping layer index → list of expert indices")
        layers_raw = {}
    for key, indices in layers_raw.items():
        where = f"{mode}.{key}"
        # Length first: int() refuses strings of more than 4300 digits with a ValueError.
        if not (isinstance(key, str) and 0 < len(key) <= 6 and key.isdecimal() and str(int(key)) == key):
            errors.add(file, where, "layer key must be a decimal layer index like \"17\"")
            continue
        if int(key) >= MAX_LAYERS:
            errors.add(file, where, f"layer {key} is out of range 0..{MAX_LAYERS - 1}")
            continue
        if not isinstance(indices, list):
            errors.add(file, where, "must be a list of expert indices")
            continue
        seen: set[int] = set()
        ok = True
        for pos, idx in enumerate(indices):
            if not is_int(idx):
                errors.add(file, f"{where}[{pos}]", f"expert index must be an integer, got {idx!r}")
                ok = False
            elif num_experts is not None and not 0 <= idx < num_experts:
                errors.add(file, where, f"index {idx} out of range 0..{num_experts - 1}")
                ok = False
            elif idx in seen:
                errors.add(file, where, f"duplicate index {idx}")
                ok = False
            else:
                seen.add(idx)
        if ok and num_experts is not None:
            keep = seen if mode == "keep" else set(range(num_experts)) - seen
            kept[int(key)] = tuple(sorted(keep))

    if kept and not errors:
        counts = {layer: len(v) for layer, v in kept.items()}
        most = max(set(counts.values()), key=list(counts.values()).count)
        for layer, count in sorted(counts.items()):
            if count != most:
                errors.add(file, f"{mode}.{layer}",
                           f"keeps {count} experts but most layers keep {most}; every runtime needs one "
                           "expert count for all layers")
        if most == 0:
            errors.add(file, mode, "every expert would be dropped")
    errors.raise_if_any()
    return DropMap(
        file=file,
        base=base,
        num_experts=int(num_experts or 0),
        kept=dict(sorted(kept.items())),
        sha256=hashlib.sha256(raw).hexdigest(),
        source=data.get("source", "") or "",
        notes=data.get("notes", "") or "",
    )


def load_drop_map(path: Path, display: str | None = None) -> DropMap:
    file = display or path.name
    return parse_drop_map(read_input_bytes(path, file), file)


def check_against_config(
    drop_map: DropMap, config: dict[str, Any], family: Family, *, config_file: str = "config.json",
    base_repo: str | None = None,
) -> list[Problem]:
    """Problems between a structurally valid drop map and the base model's raw config."""
    file = drop_map.file
    problems: list[Problem] = []
    try:
        n_experts = family.num_experts(config)
        top_k = family.top_k(config)
        moe_layers = family.moe_layers(config)
    except (KeyError, TypeError, ValueError) as exc:
        return [Problem(config_file, family.config_root or "(top level)",
                        f"not a {family.family} MoE config: {exc}")]
    if base_repo and drop_map.base and drop_map.base != base_repo:
        problems.append(Problem(file, "base", f"drop map is for {drop_map.base!r}, the release's base is "
                                              f"{base_repo!r}"))
    if drop_map.num_experts != n_experts:
        problems.append(Problem(file, "num_experts", f"{drop_map.num_experts} disagrees with the base config "
                                                     f"({config_file}: {n_experts} experts)"))
        return problems
    expected = set(moe_layers)
    for layer in sorted(expected - set(drop_map.kept)):
        problems.append(Problem(file, f"drop.{layer}", f"MoE layer {layer} missing (the base has MoE layers "
                                                       f"{_ranges(sorted(expected))})"))
    for layer in sorted(set(drop_map.kept) - expected):
        problems.append(Problem(file, f"drop.{layer}", f"layer {layer} is not a MoE layer of the base "
                                                       f"(MoE layers: {_ranges(sorted(expected))})"))
    kept = drop_map.kept_count
    if kept < top_k:
        problems.append(Problem(file, "drop", f"keeps {kept} experts per layer, fewer than top-k = {top_k}"))
    groups = family.num_groups(config)
    if groups > 1:
        if kept % groups:
            problems.append(Problem(file, "drop", f"keeps {kept} experts, not a multiple of n_group = {groups}"))
        per_group = n_experts // groups
        for layer, keep in drop_map.kept.items():
            counts = [sum(1 for i in keep if i // per_group == g) for g in range(groups)]
            if len(set(counts)) > 1:
                problems.append(Problem(file, f"drop.{layer}",
                                        f"kept experts per group {counts} differ; group-limited routing is "
                                        "exact only when every group drops the same number"))
    return problems


def _ranges(values: list[int]) -> str:
    if not values:
        return "none"
    out, start, prev = [], values[0], values[0]
    for v in [*values[1:], None]:  # type: ignore[list-item]
        if v is not None and v == prev + 1:
            prev = v
            continue
        out.append(f"{start}" if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(out)
