"""The figures of one quantized model against its reference, from next-token distributions.

    KL(P_ref ‖ P_quant) = Σ_v p_ref(v) · (log p_ref(v) − log p_quant(v))     nats per scored token

as `llama-perplexity --kl-divergence` defines it (llama.cpp tools/perplexity/perplexity.cpp), with the
reference's log-probabilities stored once in float16 (renormalised when read, so they sum to 1) and the
quantized model's computed afresh in float32. Top-1 agreement compares the quantized model's most likely
token with the reference's (taken from its float32 logits, so a tie created by float16 rounding cannot
decide it). Perplexities are exp of the mean negative log-likelihood of the text's next tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from .windows import Windows

LogitsFn = Callable[[list[int]], np.ndarray]  # window tokens → float32 logits, one row per position
ROWS = 64  # rows per block: bounds the float32 temporaries at a 262 144-token vocabulary to ≈67 MB each


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """float32 log-probabilities of float32 logits, row by row (sums in float64)."""
    x = logits.astype(np.float32, copy=False)
    m = x.max(axis=1, keepdims=True)
    z = np.log(np.exp(x - m).sum(axis=1, keepdims=True, dtype=np.float64)).astype(np.float32)
    return x - m - z


@dataclass(frozen=True)
class Figures:
    """What `facts.quality` holds for a measured artifact."""

    reference: str  # the artifact measured against: "gguf:F16", "bf16"
    kld_mean: float  # nats per token
    kld_p99: float  # 99th percentile of the per-token KL divergence (linear interpolation)
    top1_agreement: float  # 0–1
    ppl: float
    ppl_reference: float
    tokens: int  # scored tokens
    text_sha256: str

    def to_json(self) -> dict[str, float | int | str]:
        return asdict(self)


def _sig(x: float, digits: int = 6) -> float:
    # Six significant digits: what a card can show, and stable across machines for the same files.
    return float(f"{x:.{digits}g}")


@dataclass
class ReferenceLogprobs:
    """The reference side: float16 log-probabilities of every scored position, the top-1 token of each
    (from float32) and the reference's perplexity."""

    logprobs: np.ndarray  # [scored, vocab] float16 (an array or a read-only memory map)
    top1: np.ndarray  # [scored] int64
    ppl: float


def reference_logprobs(logits: LogitsFn, windows: Windows, out: np.ndarray,
                       progress: Callable[[int, int], None] | None = None) -> ReferenceLogprobs:
    """Decode every window with the reference model, writing its scored log-probabilities into `out`
    ([scored, vocab] float16, e.g. a memory-mapped .npy)."""
    top1 = np.empty(windows.scored, dtype=np.int64)
    nll = 0.0
    per = windows.per_window
    for w in range(windows.count):
        rows = logits(windows.inputs(w))[windows.first:windows.context - 1]
        targets = np.asarray(windows.targets(w))
        for r0 in range(0, per, ROWS):
            lp = log_softmax(rows[r0:r0 + ROWS])
            at = w * per + r0
            out[at:at + len(lp)] = lp.astype(np.float16)
            top1[at:at + len(lp)] = rows[r0:r0 + ROWS].argmax(axis=1)
            nll -= float(lp[np.arange(len(lp)), targets[r0:r0 + ROWS]].sum(dtype=np.float64))
        if progress:
            progress(w + 1, windows.count)
    return ReferenceLogprobs(out, top1, math.exp(nll / windows.scored))


def compare(logits: LogitsFn, windows: Windows, ref: ReferenceLogprobs, *, reference: str, text_sha256: str,
            progress: Callable[[int, int], None] | None = None) -> Figures:
    """Decode every window with the quantized model and compare it with the reference, position by position."""
    kld = np.empty(windows.scored, dtype=np.float64)
    same = 0
    nll = 0.0
    per = windows.per_window
    for w in range(windows.count):
        rows = logits(windows.inputs(w))[windows.first:windows.context - 1]
        if rows.shape[1] != ref.logprobs.shape[1]:
            raise ValueError(f"vocabulary of {rows.shape[1]} tokens, the reference has {ref.logprobs.shape[1]}")
        targets = np.asarray(windows.targets(w))
        for r0 in range(0, per, ROWS):
            lq = log_softmax(rows[r0:r0 + ROWS])
            at = w * per + r0
            lr = log_softmax(np.asarray(ref.logprobs[at:at + len(lq)], dtype=np.float32))  # renormalised
            kld[at:at + len(lq)] = (np.exp(lr) * (lr - lq)).sum(axis=1, dtype=np.float64)
            same += int((lq.argmax(axis=1) == ref.top1[at:at + len(lq)]).sum())
            nll -= float(lq[np.arange(len(lq)), targets[r0:r0 + ROWS]].sum(dtype=np.float64))
        if progress:
            progress(w + 1, windows.count)
    kld = np.maximum(kld, 0.0)  # Gibbs: KL ≥ 0; a −1e-9 is rounding
    return Figures(reference=reference, kld_mean=_sig(float(kld.mean())),
                   kld_p99=_sig(float(np.percentile(kld, 99))), top1_agreement=_sig(same / windows.scored),
                   ppl=_sig(math.exp(nll / windows.scored)), ppl_reference=_sig(ref.ppl), tokens=windows.scored,
                   text_sha256=text_sha256)
