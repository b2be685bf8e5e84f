"""The scores file written beside a derived drop map (`<map stem>.scores.json`, format `moe-expert-scores/1`).

Per MoE layer, per calibration class, per expert (lists indexed by expert):
    tokens_routed      — tokens of the class whose top-k included the expert
    weighted_norm_sum  — Σ over those tokens of router weight × ‖expert output‖₂
    weighted_norm_mean — sum / tokens_routed (0 when never routed): REAP (arXiv 2510.13999)
    frequency          — tokens_routed / tokens of the class
plus what produced them: base, family, routing, dtype, device, calibration files (sha256, samples,
tokens), the recipe and the sha256 of the drop map derived from them. Pure Python (no torch), so
`release check` reads it cheaply. Floats are written as Python's shortest round-trip repr, so a
re-read file gives the same numbers and the same drop map.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import InputError, ProblemCollector
from .drop_recipes import RECIPES, Recipe, select
from .readers import loads_guarded

FORMAT = "moe-expert-scores/1"
MEASURE = "REAP: mean over the tokens routed to the expert of router weight × L2 norm of the expert's output"
SCORES_SUFFIX = ".scores.json"


@dataclass(frozen=True)
class ClassInfo:
    file: str
    sha256: str
    samples: int
    tokens: int


@dataclass(frozen=True)
class LayerScores:
    tokens_routed: Mapping[str, tuple[int, ...]]
    weighted_norm_sum: Mapping[str, tuple[float, ...]]

    def mean(self, cls: str) -> tuple[float, ...]:
        return tuple(s / n if n else 0.0 for s, n in zip(self.weighted_norm_sum[cls], self.tokens_routed[cls],
                                                         strict=True))

    def frequency(self, cls: str, class_tokens: int) -> tuple[float, ...]:
        return tuple(n / class_tokens if class_tokens else 0.0 for n in self.tokens_routed[cls])

    def total(self) -> tuple[float, ...]:
        """Summed weighted norm per expert over every class: its measured contribution."""
        classes = sorted(self.weighted_norm_sum)
        return tuple(math.fsum(self.weighted_norm_sum[c][j] for c in classes)
                     for j in range(len(self.weighted_norm_sum[classes[0]])))


@dataclass(frozen=True)
class ExpertScores:
    tool: str
    base: str
    revision: str
    family: str
    num_experts: int
    top_k: int
    groups: int
    routing: str
    dtype: str
    device: str
    max_tokens: int
    classes: Mapping[str, ClassInfo]
    recipe: Recipe
    experts_kept: int
    layers: Mapping[int, LayerScores]
    drop_map_sha256: str = ""

    def kept(self) -> dict[int, tuple[int, ...]]:
        """The drop map's keep sets, re-derived from these scores with the recorded recipe."""
        return select({layer: (s.tokens_routed, s.weighted_norm_sum) for layer, s in self.layers.items()},
                      self.recipe, self.experts_kept, groups=self.groups)

    def to_json(self) -> dict[str, Any]:
        layers: dict[str, Any] = {}
        for layer, s in sorted(self.layers.items()):
            classes = sorted(s.tokens_routed)
            layers[str(layer)] = {
                "tokens_routed": {c: list(s.tokens_routed[c]) for c in classes},
                "weighted_norm_sum": {c: list(s.weighted_norm_sum[c]) for c in classes},
                "weighted_norm_mean": {c: list(s.mean(c)) for c in classes},
                "frequency": {c: list(s.frequency(c, self.classes[c].tokens)) for c in classes},
            }
        return {
            "format": FORMAT, "tool": self.tool, "base": self.base, "revision": self.revision,
            "family": self.family, "num_experts": self.num_experts, "top_k": self.top_k, "groups": self.groups,
            "measure": MEASURE, "routing": self.routing, "dtype": self.dtype, "device": self.device,
            "max_tokens": self.max_tokens,
            "classes": {c: {"file": i.file, "sha256": i.sha256, "samples": i.samples, "tokens": i.tokens}
                        for c, i in sorted(self.classes.items())},
            "recipe": {**self.recipe.to_json(), "experts_kept": self.experts_kept},
            "drop_map_sha256": self.drop_map_sha256,
            "layers": layers,
        }

    def to_bytes(self) -> bytes:
        return dumps(self.to_json()).encode("utf-8")


def dumps(data: dict[str, Any]) -> str:
    """Indented JSON with every list of numbers on one line (128 experts × classes × layers stays readable)."""

    def emit(value: Any, indent: int) -> str:
        pad = " " * indent
        if isinstance(value, dict):
            if not value:
                return "{}"
            items = [f'{pad} {json.dumps(k)}: {emit(v, indent + 1)}' for k, v in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(value, list):
            return "[" + ", ".join(json.dumps(v, allow_nan=False) for v in value) + "]"
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    return emit(data, 0) + "\n"


def kept_share(scores: ExpertScores, kept: Mapping[int, tuple[int, ...]]) -> dict[int, float]:
    """Per MoE layer, the share of the measured contribution (Σ router weight × ‖output‖ over every calibration
    token) that the kept experts carry; 1.0 where nothing was measured."""
    out: dict[int, float] = {}
    for layer, s in sorted(scores.layers.items()):
        total = s.total()
        whole = math.fsum(total)
        out[layer] = math.fsum(total[j] for j in kept.get(layer, ())) / whole if whole > 0 else 1.0
    return out


def scores_path_for(drop_map_name: str) -> str:
    """`dropmap.json` → `dropmap.scores.json` (the scores file lives beside its map)."""
    stem = drop_map_name[:-5] if drop_map_name.endswith(".json") else drop_map_name
    return stem + SCORES_SUFFIX


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def parse_scores(raw: bytes, file: str) -> ExpertScores:
    """Structural validation of a scores file; every problem at once (InputError)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", file=file) from exc
    data = loads_guarded(text, file)
    if not isinstance(data, dict):
        raise InputError("top level must be a JSON object", file=file)
    errors = ProblemCollector()
    if data.get("format") != FORMAT:
        errors.add(file, "format", f"must be {FORMAT!r}, got {data.get('format')!r}")
    for key in ("tool", "base", "family", "routing", "dtype", "device"):
        if not isinstance(data.get(key), str) or not data.get(key):
            errors.add(file, key, "must be a non-empty string")
    for key in ("revision", "drop_map_sha256"):
        if not isinstance(data.get(key, ""), str):
            errors.add(file, key, "must be a string")
    for key in ("num_experts", "top_k", "groups", "max_tokens"):
        if not _int(data.get(key)) or data[key] < 1:
            errors.add(file, key, f"must be a positive integer, got {data.get(key)!r}")
    errors.raise_if_any()
    n = int(data["num_experts"])

    classes: dict[str, ClassInfo] = {}
    raw_classes = data.get("classes")
    if not isinstance(raw_classes, dict) or not raw_classes:
        errors.add(file, "classes", "must map each calibration class to {file, sha256, samples, tokens}")
        raw_classes = {}
    for c, info in raw_classes.items():
        where = f"classes.{c}"
        if not (isinstance(info, dict) and isinstance(info.get("file"), str) and isinstance(info.get("sha256"), str)
                and len(info["sha256"]) == 64 and _int(info.get("samples")) and _int(info.get("tokens"))
                and info["tokens"] > 0):
            errors.add(file, where, "needs file, sha256 (64 hex digits), samples and tokens (> 0)")
            continue
        classes[c] = ClassInfo(info["file"], info["sha256"], int(info["samples"]), int(info["tokens"]))

    recipe_raw = data.get("recipe")
    recipe: Recipe | None = None
    experts_kept = 0
    if not isinstance(recipe_raw, dict):
        errors.add(file, "recipe", "must be an object {name, experts_kept, keep_top_per_class, class_weights}")
    else:
        name, ktop, weights, experts_kept = (recipe_raw.get("name"), recipe_raw.get("keep_top_per_class", 0),
                                             recipe_raw.get("class_weights", {}), recipe_raw.get("experts_kept"))
        if name not in RECIPES:
            errors.add(file, "recipe.name", f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
        if not _int(ktop) or ktop < 0:
            errors.add(file, "recipe.keep_top_per_class", "must be an integer ≥ 0")
        if not _int(experts_kept) or not 0 < experts_kept <= n:
            errors.add(file, "recipe.experts_kept", f"must be an integer in 1..{n}")
        if not isinstance(weights, dict) or not all(_num(w) and w > 0 for w in weights.values()):
            errors.add(file, "recipe.class_weights", "must map class → positive number")
        elif set(weights) - set(classes):
            errors.add(file, "recipe.class_weights", f"unknown classes {sorted(set(weights) - set(classes))}")
        if not errors:
            recipe = Recipe(str(name), int(ktop), dict(weights))

    layers: dict[int, LayerScores] = {}
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, dict) or not raw_layers:
        errors.add(file, "layers", "must map each MoE layer to its per-class lists")
        raw_layers = {}
    for key, entry in raw_layers.items():
        where = f"layers.{key}"
        if not (isinstance(key, str) and key.isdecimal() and str(int(key)) == key):
            errors.add(file, where, "layer key must be a decimal layer index")
            continue
        if not isinstance(entry, dict):
            errors.add(file, where, "must be an object")
            continue
        counts: dict[str, tuple[int, ...]] = {}
        sums: dict[str, tuple[float, ...]] = {}
        ok = True
        for part, check in (("tokens_routed", _int), ("weighted_norm_sum", _num), ("weighted_norm_mean", _num),
                            ("frequency", _num)):
            per_class = entry.get(part)
            if not isinstance(per_class, dict) or set(per_class) != set(classes):
                errors.add(file, f"{where}.{part}", f"must have one list per class ({', '.join(sorted(classes))})")
                ok = False
                continue
            for c, values in per_class.items():
                if not (isinstance(values, list) and len(values) == n and all(check(v) and v >= 0 for v in values)):
                    errors.add(file, f"{where}.{part}.{c}", f"must be {n} non-negative numbers (one per expert)")
                    ok = False
        if not ok:
            continue
        counts = {c: tuple(int(v) for v in entry["tokens_routed"][c]) for c in classes}
        sums = {c: tuple(float(v) for v in entry["weighted_norm_sum"][c]) for c in classes}
        layer = LayerScores(counts, sums)
        for c in sorted(classes):
            if tuple(entry["weighted_norm_mean"][c]) != layer.mean(c):
                errors.add(file, f"{where}.weighted_norm_mean.{c}", "is not weighted_norm_sum / tokens_routed")
            if tuple(entry["frequency"][c]) != layer.frequency(c, classes[c].tokens):
                errors.add(file, f"{where}.frequency.{c}", "is not tokens_routed / the class's tokens")
            if any(v > classes[c].tokens for v in counts[c]):
                errors.add(file, f"{where}.tokens_routed.{c}", "more tokens routed than the class has")
        layers[int(key)] = layer
    errors.raise_if_any()
    assert recipe is not None
    return ExpertScores(
        tool=data["tool"], base=data["base"], revision=data.get("revision", ""), family=data["family"],
        num_experts=n, top_k=int(data["top_k"]), groups=int(data["groups"]), routing=data["routing"],
        dtype=data["dtype"], device=data["device"], max_tokens=int(data["max_tokens"]), classes=classes,
        recipe=recipe, experts_kept=int(experts_kept), layers=dict(sorted(layers.items())),
        drop_map_sha256=data.get("drop_map_sha256", ""),
    )


def sha256_hex(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()
