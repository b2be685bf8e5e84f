"""NVFP4 quality: the NVFP4A16 checkpoint against the BF16 checkpoint it was made from, through transformers.

The BF16 checkpoint is loaded once and its next-token distributions on the held-out text are taken; then
every quantized module's weight is replaced by its NVFP4 dequantization — `release.nvfp4.numerics.
dequantize`, bit-identical to compressed-tensors' own decompressor (tests/test_nvfp4.py), i.e. the weights
vLLM computes with — and the same windows are decoded again. Every other tensor of the NVFP4 checkpoint is
byte-identical to the BF16 one (the verify gate checks it), so the second model *is* the NVFP4 checkpoint
with 16-bit activations. Tokens come from the checkpoint's own tokenizer.json, cut into windows as for GGUF.

Both passes compute in float32 when the checkpoint is small enough to hold twice over comfortably
(LOGITS_CHECK_MAX_BYTES, as verify does), else in bfloat16.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import WorkError
from ..fsutil import sha256_bytes
from ..spec.definition import QualitySection
from .divergence import Figures, compare, reference_logprobs
from .windows import cut

FLOAT32_MAX_BYTES = 2_000_000_000


def tokenize(checkpoint: Path, text: str) -> tuple[list[int], int | None]:
    """(tokens with the model's special prefix, the BOS id or None) from the checkpoint's tokenizer.json."""
    from tokenizers import Tokenizer

    path = checkpoint / "tokenizer.json"
    if not path.is_file():
        raise WorkError(f"{checkpoint} has no tokenizer.json: NVFP4 quality needs the checkpoint's tokenizer")
    tok = Tokenizer.from_file(str(path))
    prefix = tok.encode("", add_special_tokens=True).ids
    return tok.encode(text, add_special_tokens=True).ids, (prefix[0] if len(prefix) == 1 else None)


def dequantize_into(model, nvfp4_dir: Path) -> int:  # type: ignore[no-untyped-def]
    """Overwrite each quantized module's weight in `model` with its NVFP4 dequantization; returns the count."""
    import torch

    from ..nvfp4 import numerics
    from ..nvfp4.checkpoint import read_2d, read_quant_shard_headers
    from ..nvfp4.layout import SrcTensor
    from ..nvfp4.verify import _locate

    out = read_quant_shard_headers(nvfp4_dir)
    params = dict(model.named_parameters())
    # _locate maps a module to its slice of a source tensor; it needs the tensors' names and shapes only.
    src = {n: SrcTensor(n, "BF16", tuple(p.shape), "", 0, 0) for n, p in params.items()}
    modules = sorted({n[: -len(".weight_packed")] for n in out if n.endswith(".weight_packed")})
    fds: dict[str, int] = {}

    def tensor(name: str) -> torch.Tensor:
        file, entry, offset = out[name]
        if file not in fds:
            fds[file] = os.open(nvfp4_dir / file, os.O_RDONLY)
        shape = entry.shape if len(entry.shape) == 2 else (1, max(1, math.prod(entry.shape)))
        return read_2d(fds[file], offset, entry.dtype, shape[0], shape[1])

    try:
        with torch.no_grad():
            for m in modules:
                located = _locate(m, src)
                if located is None:
                    raise WorkError(f"{nvfp4_dir}: quantized module {m} has no weight in the loaded model")
                t, e, r0, r1, _ = located
                w = numerics.dequantize(tensor(f"{m}.weight_packed"),
                                        tensor(f"{m}.weight_scale").view(torch.float8_e4m3fn),
                                        tensor(f"{m}.weight_global_scale").reshape(1))
                target = params[t.name].data if e is None else params[t.name].data[e]
                if tuple(target[r0:r1].shape) != tuple(w.shape):
                    raise WorkError(f"{m}: dequantized {list(w.shape)} does not fit {t.name}")
                target[r0:r1] = w.to(target.dtype)
    finally:
        for fd in fds.values():
            os.close(fd)
    return len(modules)


def measure_nvfp4(bf16_dir: Path, nvfp4_dir: Path, text: str, q: QualitySection, *, shown: str, work: Path,
                  progress: Callable[[int, int], None] | None = None) -> Figures:
    """`work`: a folder for the BF16 model's log-probabilities between the two passes (a memory-mapped
    file, removed at the end: 2 GB at 26B size that need not stay in memory)."""
    import torch
    import transformers

    from ..prune.exactness import load_model

    tokens, bos = tokenize(bf16_dir, text)
    windows = cut(tokens, context=q.context, max_tokens=q.max_tokens, bos=bos, shown=shown)
    size = sum(p.stat().st_size for p in bf16_dir.glob("*.safetensors"))
    dtype = torch.float32 if size <= FLOAT32_MAX_BYTES else torch.bfloat16
    transformers.utils.logging.disable_progress_bar()
    model = load_model(bf16_dir, dtype)

    def logits(window: list[int]) -> np.ndarray:
        with torch.inference_mode():
            return model(input_ids=torch.tensor([window])).logits[0].float().numpy()

    vocab = model.get_output_embeddings().weight.shape[0]
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / ".nvfp4-reference.npy.partial"
    try:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(windows.scored, vocab))
        ref = reference_logprobs(logits, windows, out, progress)
        dequantize_into(model, nvfp4_dir)
        return compare(logits, windows, ref, reference="bf16", text_sha256=sha256_bytes(text.encode("utf-8")),
                       progress=progress)
    finally:
        tmp.unlink(missing_ok=True)
