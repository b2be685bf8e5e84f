"""GGUF quality through libllama (release/gguf/runtime.py): the baseline conversion's next-token
log-probabilities on the held-out text, computed once and kept as a file (the reference), and each
tier's figures against it.

The reference is two files: `quality-reference.npy`, float16 log-probabilities of every scored position
([scored tokens, vocabulary], memory-mapped when read), and `quality-reference.json`, the tokens, the
window layout, the reference's top-1 tokens and perplexity, and the text's sha256. A tier is measured on
exactly those tokens: it never tokenizes the text again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import WorkError
from ..fsutil import atomic_write_text, sha256_bytes
from ..gguf.runtime import Runner
from ..spec.definition import QualitySection
from .divergence import Figures, ReferenceLogprobs, compare, reference_logprobs
from .windows import Windows, cut

REFERENCE_LOGPROBS = "quality-reference.npy"
REFERENCE_META = "quality-reference.json"
FORMAT = "moe-release/quality-reference/1"

Progress = Callable[[int, int], None] | None


def threads() -> int:
    return max(1, os.cpu_count() or 1)


def make_reference(baseline: Path, text: str, q: QualitySection, out_dir: Path, *, reference: str, shown: str,
                   progress: Progress = None) -> dict[str, Any]:
    """Write the reference files into `out_dir` (each under a temporary name first); returns its facts."""

    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f".{REFERENCE_LOGPROBS}.partial"
    with Runner(baseline, n_ctx=q.context, n_threads=threads(), flash_attn=False) as r:
        tokens = r.tokenize(text, add_special=True)
        windows = cut(tokens, context=q.context, max_tokens=q.max_tokens, bos=r.bos if r.add_bos else None,
                      shown=shown)
        # np.save's header, then the rows written in place as they are computed: the whole array is never
        # in memory (262 144 × 4096 float16 is 2 GB at 26B size).
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(windows.scored, r.n_vocab))
        try:
            ref = reference_logprobs(r.logits, windows, out, progress)
            out.flush()
        finally:
            del out
    meta = {"format": FORMAT, "reference": reference, "text_sha256": sha256_bytes(text.encode("utf-8")),
            "context": windows.context, "bos": windows.bos, "tokens": windows.tokens, "scored": windows.scored,
            "vocab": r.n_vocab, "top1": ref.top1.tolist(), "ppl": ref.ppl}
    os.replace(tmp, out_dir / REFERENCE_LOGPROBS)
    atomic_write_text(out_dir / REFERENCE_META, json.dumps(meta) + "\n")
    return {"tokens": windows.scored, "windows": windows.count, "context": windows.context, "vocab": r.n_vocab,
            "ppl": ref.ppl, "text_sha256": meta["text_sha256"]}


def load_reference(ref_dir: Path) -> tuple[Windows, ReferenceLogprobs, dict[str, Any]]:
    try:
        meta = json.loads((ref_dir / REFERENCE_META).read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT!r}")
        logprobs = np.load(ref_dir / REFERENCE_LOGPROBS, mmap_mode="r")
        windows = Windows([int(t) for t in meta["tokens"]], int(meta["context"]), meta["bos"])
        if logprobs.shape != (windows.scored, int(meta["vocab"])) or len(meta["top1"]) != windows.scored:
            raise ValueError(f"{REFERENCE_LOGPROBS} holds {logprobs.shape}, the tokens say "
                             f"({windows.scored}, {meta['vocab']})")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkError(f"unreadable quality reference in {ref_dir}: {exc}") from exc
    return windows, ReferenceLogprobs(logprobs, np.asarray(meta["top1"], dtype=np.int64), float(meta["ppl"])), meta


def measure_tier(tier: Path, ref_dir: Path, progress: Progress = None) -> Figures:
    """The figures of one GGUF file (the first shard of a split one) against the reference."""
    windows, ref, meta = load_reference(ref_dir)
    with Runner(tier, n_ctx=windows.context, n_threads=threads(), flash_attn=False) as r:
        if r.n_vocab != ref.logprobs.shape[1]:
            raise WorkError(f"{tier.name}: vocabulary of {r.n_vocab} tokens, the reference has "
                            f"{ref.logprobs.shape[1]}")
        return compare(r.logits, windows, ref, reference=str(meta["reference"]),
                       text_sha256=str(meta["text_sha256"]), progress=progress)
