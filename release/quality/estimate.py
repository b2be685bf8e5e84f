"""What a quality measurement will cost, from the definition alone (plan, `plan --matrix`), and the memory
of the passes that stream a checkpoint layer by layer (the NVFP4 measurement, the importance matrix).

Tokens: the held-out text's bytes over BYTES_PER_TOKEN (the estimate `check` uses for calibration text),
capped at `max_tokens`, cut into whole windows; a window's second half is scored. The reference file
is float16 log-probabilities of every scored token over the whole vocabulary.

Memory (resident bytes at the peak, measured by benchmarks/quality.py --memory in a process of its own on
a full-width Gemma 4 26B-A4B layer set, a model at the 26B's vocabulary and a 16-layer model of 2.7 GB;
the formulas agree with each measurement within 10 %):

- a layer-streamed pass (`StreamedPass`): the process with torch and transformers running a layer
  (STREAM_RUNTIME_BYTES), the hidden states of every token, and the largest of its phases: the layers
  (the running one in the compute dtype, the next one read ahead as stored, and when the NVFP4 pass
  computes in another dtype than the checkpoint's, that next layer's converted copy), the embeddings
  (read beside their converted copy) and, for the NVFP4 measurement, the head (embeddings, their read
  bytes while loading, one window's float32 logits);
- a libllama pass (the quality reference, each tier's measurement): LIBLLAMA_RUNTIME_BYTES and
  LIBLLAMA_LOGITS_COPIES window logits (libllama's output buffer and graph, our copy, its log-softmax).
  libllama maps the model file: its pages are page cache the kernel drops and reads again, not memory
  the job must have (the plan counts the rereads' time instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..prune import inspect_checkpoint
from ..spec.calibration import BYTES_PER_TOKEN_ESTIMATE

if TYPE_CHECKING:
    from ..spec.load import Release


def planned_tokens(release: Release) -> tuple[int, int]:
    """(decoded, scored) tokens: the windows' tokens, and the predictions compared."""
    q = release.quality
    if q is None:
        return 0, 0
    try:
        size = release.path(q.text).stat().st_size
    except (OSError, ValueError):
        size = 0
    windows = min(size // BYTES_PER_TOKEN_ESTIMATE, q.max_tokens) // q.context
    return windows * q.context, windows * (q.context - 1 - q.context // 2)


def vocab_size(release: Release) -> int:
    value = release.family.text_config(release.base_config).get("vocab_size")
    return value if isinstance(value, int) and value > 0 else 0


def reference_bytes(release: Release) -> int:
    """The reference's log-probabilities: scored tokens × vocabulary × 2 bytes (+ its JSON, ≈10 B a token)."""
    decoded, scored = planned_tokens(release)
    return scored * vocab_size(release) * 2 + decoded * 10


STREAM_RUNTIME_BYTES = 700_000_000  # measured 0.61–0.87 GB above the layers (benchmarks/quality.py --memory)
LIBLLAMA_RUNTIME_BYTES = 270_000_000  # anonymous memory of the process around libllama (measured 0.26–0.31 GB)
LIBLLAMA_LOGITS_COPIES = 4


@dataclass(frozen=True)
class StreamedPass:
    """One pass of the layer streamer (release/dropmap/stream.py) over `tokens` tokens."""

    layer: int  # parameters of the largest decoder layer
    embedding: int  # parameters of the token embedding
    hidden: int  # hidden size
    tokens: int  # tokens whose hidden states are held between layers
    compute_bytes: int  # 4: float32, 2: bfloat16
    checkpoint_bytes: int = 2  # as stored (BF16)
    patched: bool = False  # the NVFP4 pass: each layer's quantized tensors are replaced as it is read
    logits: int = 0  # context × vocabulary when the pass ends in the model's head (one window's logits)

    def peak_bytes(self) -> int:
        c, stored = self.compute_bytes, self.checkpoint_bytes
        copy = c if self.patched and c != stored else 0
        layers = self.layer * (c + stored + copy)
        embeddings = self.embedding * (c + stored)
        head = embeddings + self.logits * 4 if self.logits else 0
        return STREAM_RUNTIME_BYTES + self.tokens * self.hidden * c + max(layers, embeddings, head)


def checkpoint_pass(checkpoint: Path, *, tokens: int, compute_bytes: int, head_context: int = 0) -> StreamedPass:
    """The StreamedPass of a checkpoint on disk (its decoder layers' and embedding's sizes from the
    safetensors headers): what benchmarks and tests compare a measured peak with. `head_context`: the
    NVFP4 measurement's window (its pass ends in the head, each layer patched as read)."""
    import re


    info = inspect_checkpoint(checkpoint)
    cfg = info.family.text_config(info.config)
    layers: dict[str, int] = {}
    embedding = 0
    for shard in info.shards:
        for e in shard.entries:
            m = re.search(r"\.layers\.(\d+)\.", e.name)
            if m and "vision" not in e.name and "audio" not in e.name:
                layers[m[1]] = layers.get(m[1], 0) + e.numel
            elif e.name.endswith("embed_tokens.weight"):
                embedding = e.numel
    vocab = int(cfg.get("vocab_size") or 0)
    return StreamedPass(max(layers.values(), default=0), embedding, int(cfg["hidden_size"]), tokens, compute_bytes,
                        patched=bool(head_context), logits=head_context * vocab)


def libllama_pass_bytes(context: int, vocab: int) -> int:
    """Anonymous memory of decoding windows of `context` tokens through libllama, every position's logits."""
    return LIBLLAMA_RUNTIME_BYTES + LIBLLAMA_LOGITS_COPIES * context * vocab * 4
