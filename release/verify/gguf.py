"""GGUF gate: each file opens with the gguf reader with the expected expert count, top-k and known
tensor types, and carries the pruned checkpoint's chat template unchanged; the Q8_0 tier (or, lacking
one, the baseline) runs a forward pass in llama.cpp with finite logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..gguf import tiers as T
from ..gguf.inspect import file_facts
from ..manifest import Artifact
from ..pipeline import Context

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
        bf16 = ctx.require("bf16")
        first = min(f.path for f in a.files if f.path.endswith(".gguf"))  # metadata lives in shard 1
        problems += template_problems(ctx.artifact_dir(a) / first, ctx.artifact_dir(bf16), name=first)
    unknown = sorted(t for t in facts["types"] if t not in T.GGML_TYPES)
    if unknown:
        problems.append(f"unknown tensor types {unknown}")
    tier = a.id.split(":", 1)[1]
    g = release.definition.gguf
    forward = tier in FORWARD_TIERS or (g is not None and "Q8_0" not in g.tiers and tier == g.baseline)
    if forward and not problems and len(paths) == 1:
        problems += _forward(paths[0])
    return problems


def template_problems(gguf_path: Path, hf_dir: Path, *, name: str | None = None) -> list[str]:
    """Differences between the chat templates in a GGUF and those the converter takes from `hf_dir`."""
    import gguf

    from ..gguf.convert import expected_chat_templates

    expected, source = expected_chat_templates(hf_dir)
    reader = gguf.GGUFReader(str(gguf_path))
    name = name or gguf_path.name
    keys = set(expected) | {k for k in reader.fields if k.startswith("tokenizer.chat_template")
                            and k != "tokenizer.chat_templates"}
    problems: list[str] = []
    for key in sorted(keys):
        field = reader.fields.get(key)
        got = field.contents() if field is not None else None
        want = expected.get(key)
        if got == want:
            continue
        if want is None:
            problems.append(f"{name}: {key} is not in the pruned checkpoint ({hf_dir.name}/)")
        elif got is None:
            problems.append(f"{name}: no {key}; expected the template of {hf_dir.name}/{source}")
        else:
            at = next((i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y), min(len(got), len(want)))
            problems.append(f"{name}: {key} differs from {hf_dir.name}/{source} of the pruned checkpoint "
                            f"({len(got)} vs {len(want)} characters, first difference at character {at})")
    return problems


def _forward(path) -> list[str]:  # type: ignore[no-untyped-def]
    from ..gguf.runtime import Runner

    try:
        with Runner(path, n_ctx=128) as runner:
            tokens = runner.tokenize(PROMPT)
            logits = runner.logits(tokens)
    except RuntimeError as exc:
        return [f"llama.cpp forward pass failed: {exc}"]
    if logits.shape[0] != len(tokens) or not np.isfinite(logits).all():
        return ["llama.cpp forward pass gave non-finite logits"]
    return []
