"""What a produced GGUF really is, read back with the gguf reader: type histogram per tensor group, the
type of every tensor by kind and layer (what the GGUF card lists), effective bits per weight, requested
vs actual types (fallbacks are silent apart from a log line, G4), and metadata checks. The results go
into Artifact.facts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from . import tiers as T
from .names import GROUPS, group_of


def _reader(path: Path):
    import gguf

    return gguf.GGUFReader(str(path))


def _field(r, key: str) -> Any:
    f = r.fields.get(key)
    if f is None:
        return None
    try:
        return f.contents()
    except Exception:  # an unreadable field counts as absent
        return None


def read_tensors(paths: list[Path]) -> tuple[list[tuple[str, str, int, int]], dict[str, Any]]:
    """(name, ggml type, ne0, n_elements) of every tensor across split shards, and the first shard's metadata."""
    rows: list[tuple[str, str, int, int]] = []
    meta: dict[str, Any] = {}
    for i, path in enumerate(paths):
        r = _reader(path)
        if i == 0:
            arch = _field(r, "general.architecture") or ""
            for key in ("general.architecture", "general.name", "general.file_type", f"{arch}.expert_count",
                        f"{arch}.expert_used_count", f"{arch}.block_count", "tokenizer.ggml.model",
                        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "quantize.imatrix.file",
                        "quantize.imatrix.dataset", "quantize.imatrix.entries_count",
                        "quantize.imatrix.chunks_count", "split.count"):
                v = _field(r, key)
                if v is not None:
                    meta[key.replace(f"{arch}.", "arch.") if arch else key] = v
            tmpl = _field(r, "tokenizer.chat_template")
            meta["chat_template"] = bool(tmpl)
            meta["chat_template_chars"] = len(tmpl) if tmpl else 0
        for t in r.tensors:
            rows.append((t.name, t.tensor_type.name.lower(), int(t.shape[0]), int(t.n_elements)))
    return rows, meta


def tensor_kind(name: str) -> tuple[str, int | None]:
    """("ffn_down_exps", 3) for `blk.3.ffn_down_exps.weight`; ("token_embd", None) outside the layers."""
    m = re.match(r"blk\.(\d+)\.(.+?)(?:\.weight)?$", name)
    if m:
        return m.group(2), int(m.group(1))
    return name.removesuffix(".weight"), None


def stored_types(types: dict[str, str]) -> dict[str, dict[str, list[int]]]:
    """Tensor kind → ggml type → the layers whose tensor of that kind has it ([] outside the layers), from
    tensor name → type: what a file stores, tensor by tensor, small enough for the manifest."""
    out: dict[str, dict[str, set[int]]] = {}
    for name, typ in types.items():
        kind, layer = tensor_kind(name)
        layers = out.setdefault(kind, {}).setdefault(typ, set())
        if layer is not None:
            layers.add(layer)
    return {kind: {typ: sorted(layers) for typ, layers in sorted(by_type.items())}
            for kind, by_type in sorted(out.items())}


def file_facts(paths: list[Path], *, requested: dict[str, str] | None = None, ftype: str | None = None,
               expected_experts: int | None = None, expected_used: int | None = None) -> dict[str, Any]:
    """Facts of one GGUF (all shards): size, bpw, per-group histogram, the type of every tensor
    (`stored_types`), fallbacks, metadata checks.

    `requested` maps tensor name → type the recipe asked for explicitly (overrides, embed, output);
    `ftype` adds the ftype's main type for tensors the recipe did not name, to spot fallbacks there too.
    """
    rows, meta = read_tensors(paths)
    size = sum(p.stat().st_size for p in paths)
    n_elements = sum(n for *_, n in rows)
    hist: dict[str, dict[str, int]] = {g: defaultdict(int) for g in GROUPS}
    bits: dict[str, float] = defaultdict(float)
    elems: dict[str, int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    for name, typ, _ne0, n in rows:
        g = group_of(name)
        hist[g][typ] += n
        totals[typ] += n
        bits[g] += n * T.GGML_TYPES.get(typ, 0.0)
        elems[g] += n
    histogram = {g: dict(sorted(h.items())) for g, h in hist.items() if h}
    group_bpw = {g: round(bits[g] / elems[g], 4) for g in elems if elems[g]}

    fallbacks: list[dict[str, Any]] = []
    overrides_applied: dict[str, int] = defaultdict(int)
    main = T.FTYPE_MAIN_TYPE.get(ftype or "", None)
    for name, typ, ne0, _n in rows:
        want = (requested or {}).get(name)
        explicit = want is not None
        if want is None and main and group_of(name) in ("ffn_gate_up_exps", "ffn_down_exps", "attn", "ffn_dense"):
            want = main
        if want is None:
            continue
        if explicit and typ == want:
            overrides_applied[want] += 1
        if not explicit and not (want in T._BLOCK_256 and ne0 % 256 and typ not in T._BLOCK_256):
            continue  # the ftype's mixture picks other types on purpose; only width fallbacks count here
        if typ != want and (T.fallback_type(want, ne0) == typ or not explicit):
            fallbacks.append({"tensor": name, "requested": want, "actual": typ, "ne0": ne0,
                              "explicit": explicit})
        elif explicit and typ != want:
            fallbacks.append({"tensor": name, "requested": want, "actual": typ, "ne0": ne0,
                              "explicit": True, "unexplained": True})
    checks = {
        "chat_template": meta.get("chat_template", False),
        "expert_count": meta.get("arch.expert_count"),
        "expert_used_count": meta.get("arch.expert_used_count"),
    }
    if expected_experts is not None:
        checks["expert_count_ok"] = checks["expert_count"] == expected_experts
    if expected_used is not None:
        checks["expert_used_count_ok"] = checks["expert_used_count"] == expected_used
    return {
        "size": size,
        "n_elements": n_elements,
        "bpw": round(size * 8 / n_elements, 4) if n_elements else None,
        "tensor_bpw": round(sum(bits.values()) / n_elements, 4) if n_elements else None,
        "group_bpw": group_bpw,
        "histogram": histogram,
        "types": dict(sorted(totals.items())),
        "stored_types": stored_types({name: typ for name, typ, _ne0, _n in rows}),
        "fallbacks": _summarise(fallbacks),
        "fallback_count": len(fallbacks),
        "overrides_applied": dict(overrides_applied),
        "metadata": {k: v for k, v in meta.items() if not isinstance(v, list | dict)},
        "checks": checks,
    }


def _summarise(fallbacks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fallbacks folded over layers: one row per (tensor kind, requested, actual)."""
    rows: dict[tuple[str, str, str, bool], dict[str, Any]] = {}
    for f in fallbacks:
        kind = re.sub(r"^blk\.\d+\.", "blk.N.", f["tensor"])
        key = (kind, f["requested"], f["actual"], bool(f.get("explicit")))
        row = rows.setdefault(key, {"tensor": kind, "requested": f["requested"], "actual": f["actual"],
                                    "ne0": f["ne0"], "explicit": f["explicit"], "count": 0})
        row["count"] += 1
        if f.get("unexplained"):
            row["unexplained"] = True
    return list(rows.values())
