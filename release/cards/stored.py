"""What each GGUF file stores, tensor by tensor, as the GGUF card lists it.

A built tier's row is read from the types its file records (`facts.stored_types`, written by
release/gguf/inspect.py when the file is read back), so it shows what llama.cpp really stored: the ftype's
mixture by layer and every row-width fallback (G4), whether or not a recipe asked for the type. A tier not
built yet gets the types llama.cpp's rules give for it (release/gguf/mixture.py, checked against built
files by tests/test_gguf_estimate.py), marked as planned. Nothing here reads a recipe's or a note's
description of the types.
"""

from __future__ import annotations

from typing import Any

from ..estimate import Census, census
from ..gguf import tiers as T
from ..gguf.checks import tier_recipe
from ..gguf.inspect import stored_types, tensor_kind
from ..gguf.mixture import tensor_types
from ..gguf.names import group_of
from ..manifest import Artifact, ArtifactRegistry
from ..spec.load import Release

# Card columns: histogram groups of release/gguf/names.py, in reading order.
COLUMNS = (("ffn_gate_up_exps", "Experts (gate/up)"), ("ffn_down_exps", "Experts (down)"), ("attn", "Attention"),
           ("ffn_dense", "Dense FFN"), ("token_embd", "Embeddings"), ("output", "Output"), ("other", "Other"))
UNQUANTIZED = "f32"  # norms, router, scales: llama.cpp never quantizes them


def layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → "0–2, 5, 7–8"."""
    parts: list[str] = []
    start = prev = None
    for n in sorted(layers):
        if prev is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            parts.append(f"{start}–{prev}" if prev != start else str(start))
        start = prev = n
    if start is not None:
        parts.append(f"{start}–{prev}" if prev != start else str(start))
    return ", ".join(parts)


def _describe_kind(by_type: dict[str, list[int]]) -> str:
    """"Q8_0 (layers 0, 4–5), Q5_0 (layers 1–3)", or "Q4_K" when one type fills every layer."""
    every = sorted({n for layers in by_type.values() for n in layers})
    parts = []
    for typ, layers in sorted(by_type.items(), key=lambda kv: (kv[1][:1], kv[0])):
        name = typ.upper()
        if not layers or layers == every:
            parts.append(name)
        else:
            parts.append(f"{name} ({'layer' if len(layers) == 1 else 'layers'} {layer_ranges(layers)})")
    return ", ".join(parts)


def _group(kind: str, by_type: dict[str, list[int]]) -> str:
    layered = any(by_type.values())
    return group_of(f"blk.0.{kind}.weight" if layered else f"{kind}.weight")


def cells(stored: dict[str, dict[str, list[int]]]) -> dict[str, str]:
    """Histogram group → what the card's cell says, from kind → type → layers (F32 tensors left out).

    Kinds of a group that store the same are named together: "attn_q, attn_k: Q4_K; attn_v: Q6_K (layers 0–1),
    Q4_K (layers 2–5)"; a group whose kinds all agree is described once."""
    by_group: dict[str, dict[str, str]] = {}
    for kind, by_type in stored.items():
        quantized = {t: layers for t, layers in by_type.items() if t != UNQUANTIZED}
        if quantized:
            by_group.setdefault(_group(kind, by_type), {})[kind] = _describe_kind(quantized)
    out: dict[str, str] = {}
    for group, kinds in by_group.items():
        same: dict[str, list[str]] = {}
        for kind, text in sorted(kinds.items()):
            same.setdefault(text, []).append(kind)
        if len(same) == 1:
            out[group] = next(iter(same))
        else:
            ordered = sorted(same.items(), key=lambda kv: (-len(kv[1]), kv[1]))
            out[group] = "; ".join(f"{', '.join(names)}: {text}" for text, names in ordered)
    return out


def _planned(release: Release, c: Census, tier: str, baseline: bool) -> dict[str, dict[str, list[int]]] | None:
    if c.gguf_tensors is None or c.gguf_hparams is None:
        return None
    recipe = T.TierRecipe(tier, tier) if baseline else tier_recipe(release, tier)
    return stored_types(tensor_types(list(c.gguf_tensors), recipe, c.gguf_hparams, has_imatrix=c.has_imatrix))


def _stored(release: Release, c: Census, a: Artifact, tier: str) -> tuple[dict[str, dict[str, list[int]]] | None, bool]:
    """(kind → type → layers, planned): the file's record once built, else the planned types."""
    if a.status != "planned":
        return a.facts.get("stored_types"), False
    return _planned(release, c, tier, bool(a.recipe.get("baseline"))), True


def narrow_rows(c: Census) -> list[dict[str, Any]]:
    """Quantizable tensor kinds whose rows are not a whole number of 256-value blocks (G4): their K- and
    IQ-quants fall back. From the tensors the base's config converts to."""
    widths: dict[str, int] = {}
    for t in c.gguf_tensors or ():
        if t.quantizable and t.ne0 % 256:
            widths.setdefault(tensor_kind(t.name)[0], t.ne0)
    return [{"kind": k, "width": w} for k, w in sorted(widths.items())]


def fallback_rules() -> list[dict[str, Any]]:
    """llama.cpp's row-width fallbacks, grouped by what is stored: [{stored: Q4_0, requested: [Q2_K, …]}]."""
    by_target: dict[str, list[str]] = {}
    for want, got in T.FALLBACKS.items():
        by_target.setdefault(got.upper(), []).append(want.upper())
    return [{"stored": got, "requested": wants} for got, wants in by_target.items()]


def stored_table(release: Release, artifacts: ArtifactRegistry, tiers: list[str]) -> dict[str, Any] | None:
    """The card's "What each file stores" table for `tiers` (the tier table's order), or None when no row
    can be given (a family whose tensors the tool cannot list, nothing built)."""
    c = census(release)
    rows = []
    for tier in tiers:
        a = artifacts.get(f"gguf:{tier}")
        if a is None:
            continue
        stored, planned = _stored(release, c, a, tier)
        rows.append({"tier": tier, "planned": planned, "cells": cells(stored) if stored is not None else None})
    if not any(r["cells"] for r in rows):
        return None
    present = {g for r in rows if r["cells"] for g in r["cells"]}
    columns = [{"group": g, "title": title} for g, title in COLUMNS if g in present]
    tied = "output" not in present and "token_embd" in present
    if tied:  # no output.weight in any file: the output head is the embedding matrix
        columns = [{**c, "title": "Embeddings (= output)"} if c["group"] == "token_embd" else c for c in columns]
    return {"columns": columns, "rows": rows, "any_planned": any(r["planned"] for r in rows),
            "unrecorded": [r["tier"] for r in rows if r["cells"] is None and not r["planned"]],
            "narrow": narrow_rows(c), "fallbacks": fallback_rules()}
