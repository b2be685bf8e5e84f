"""GGUF gate: each file opens with the gguf reader with the expected expert count, top-k and known
tensor types, and carries the pruned checkpoint's chat template unchanged; the Q8_0 tier (or, lacking
one, the baseline) runs a forward pass in llama.cpp with finite logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..context import Context
from ..gguf import tiers as T
from ..gguf.convert import expected_chat_templates
from ..gguf.inspect import file_facts
from ..gguf.runtime import Runner
from ..manifest import Artifact

PROMPT = "The quick brown fox jumps over the lazy dog."
FORWARD_TIERS = ("Q8_0",)


def verify_gguf(ctx: Context, a: Artifact) -> list[str]:
    if a.id in ("gguf:ollama-files", "gguf:imatrix"):
        return []
    release = ctx.release
    paths = [ctx.artifact_dir(a) / f.path for f in a.files if f.path.endswith(".gguf")]
    if not paths:
        return ["no .gguf file"]
    facts = file_facts(paths, expected_experts=release.drop_map.kept_count,
                       expected_used=release.family.top_k(release.base_config))
    checks = facts["checks"]
    problems: list[str] = []
    if not checks.get("expert_count_ok"):
        problems.append(f"expert_count {checks.get('expert_count')}, expected {release.drop_map.kept_count}")
    if not checks.get("expert_used_count_ok"):
        problems.append(f"expert_used_count {checks.get('expert_used_count')}")
    if not checks.get("chat_template"):
        problems.append("no tokenizer.chat_template in the metadata")
    else:
        # The baseline against the pruned checkpoint; a tier against the baseline it was made from (the
        # machine that quantizes a tier may hold only the baseline, never the checkpoint).
        g = release.definition.gguf
        baseline = ctx.built(f"gguf:{g.baseline}") if g is not None else None
        if baseline is None or baseline.id == a.id:
            reference = ctx.artifact_dir(ctx.built("bf16"))
        else:
            reference = ctx.artifact_dir(baseline) / min(f.path for f in baseline.files if f.path.endswith(".gguf"))
        first = min(f.path for f in a.files if f.path.endswith(".gguf"))  # metadata lives in shard 1
        problems += template_problems(ctx.artifact_dir(a) / first, reference, name=first)
    unknown = sorted(t for t in facts["types"] if t not in T.GGML_TYPES)
    if unknown:
        problems.append(f"unknown tensor types {unknown}")
    tier = a.id.split(":", 1)[1]
    g = release.definition.gguf
    forward = tier in FORWARD_TIERS or (g is not None and "Q8_0" not in g.tiers and tier == g.baseline)
    if forward and not problems and len(paths) == 1:
        problems += _forward(paths[0])
    return problems


def chat_templates(gguf_path: Path) -> dict[str, str]:
    """Every `tokenizer.chat_template*` key of a GGUF (split files keep them in shard 1)."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path))
    return {k: f.contents() for k, f in reader.fields.items()
            if k.startswith("tokenizer.chat_template") and k != "tokenizer.chat_templates"}


def template_problems(gguf_path: Path, reference: Path, *, name: str | None = None) -> list[str]:
    """Differences between the chat templates in a GGUF and those of `reference`: the pruned checkpoint
    (what the converter takes from it) or the baseline GGUF a tier was quantized from."""

    if reference.is_dir():
        expected, source = expected_chat_templates(reference)
        where = f"{reference.name}/{source} of the pruned checkpoint"
    else:
        expected, where = chat_templates(reference), f"the baseline {reference.name} it was made from"
    got_all = chat_templates(gguf_path)
    name = name or gguf_path.name
    problems: list[str] = []
    for key in sorted(set(expected) | set(got_all)):
        got, want = got_all.get(key), expected.get(key)
        if got == want:
            continue
        if want is None:
            problems.append(f"{name}: {key} is not in {where}")
        elif got is None:
            problems.append(f"{name}: no {key}; expected the template of {where}")
        else:
            at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y), min(len(got), len(want)))
            problems.append(f"{name}: {key} differs from {where} ({len(got)} vs {len(want)} characters, first "
                            f"difference at character {at})")
    return problems


def _forward(path) -> list[str]:  # type: ignore[no-untyped-def]

    try:
        with Runner(path, n_ctx=128) as runner:
            tokens = runner.tokenize(PROMPT)
            logits = runner.logits(tokens)
    except RuntimeError as exc:
        return [f"llama.cpp forward pass failed: {exc}"]
    if logits.shape[0] != len(tokens) or not np.isfinite(logits).all():
        return ["llama.cpp forward pass gave non-finite logits"]
    return []
