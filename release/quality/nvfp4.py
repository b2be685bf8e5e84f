"""NVFP4 quality: the NVFP4A16 checkpoint against the BF16 checkpoint it was made from, through transformers,
layer by layer in bounded memory.

Two passes of the drop-map collector's layer streamer (release/dropmap/stream.py) over the held-out windows:
the BF16 checkpoint as it is, then the same checkpoint with every quantized module's weight replaced, as
its layer is read, by its NVFP4 dequantization — `release.nvfp4.numerics.dequantize`, bit-identical to
compressed-tensors' own decompressor (tests/test_nvfp4.py), i.e. the weights vLLM computes with. Every other
tensor of the NVFP4 checkpoint is byte-identical to the BF16 one (the verify gate checks it), so the second
pass *is* the NVFP4 checkpoint with 16-bit activations. After the last layer each window's logits come from
the model's own head (final norm, output projection, soft-capping). Tokens come from the checkpoint's own
tokenizer.json, cut into windows as for GGUF.

Memory: two layers (the running one and the next, read ahead) + the windows' hidden states + one window's
logits; never the whole model. Both passes compute in float32 when the checkpoint is small enough to hold
twice over comfortably (FLOAT32_MAX_BYTES, as verify does), else in bfloat16 — what the whole-model
measurement did, whose figures these equal (tests/test_quality.py).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import WorkError
from ..fsutil import sha256_bytes
from ..nvfp4.layout import SrcTensor
from ..prune import inspect_checkpoint
from ..spec.definition import QualitySection
from .divergence import Figures, LogitsFn, compare, reference_logprobs
from .windows import Windows, cut

if TYPE_CHECKING:
    import torch

    from ..dropmap.stream import Batch  # lazy: torch, only when NVFP4 is measured
    from ..prune.checkpoint import CheckpointInfo

FLOAT32_MAX_BYTES = 2_000_000_000
BATCH_TOKENS = 1024  # windows run through a layer together: working memory stays small beside two layers

Progress = Callable[[int, int], None] | None


def tokenize(checkpoint: Path, text: str) -> tuple[list[int], int | None]:
    """(tokens with the model's special prefix, the BOS id or None) from the checkpoint's tokenizer.json."""
    from tokenizers import Tokenizer

    path = checkpoint / "tokenizer.json"
    if not path.is_file():
        raise WorkError(f"{checkpoint} has no tokenizer.json: NVFP4 quality needs the checkpoint's tokenizer")
    tok = Tokenizer.from_file(str(path))
    prefix = tok.encode("", add_special_tokens=True).ids
    return tok.encode(text, add_special_tokens=True).ids, (prefix[0] if len(prefix) == 1 else None)


def compute_dtype(bf16_dir: Path) -> torch.dtype:
    import torch

    size = sum(p.stat().st_size for p in bf16_dir.glob("*.safetensors"))
    return torch.float32 if size <= FLOAT32_MAX_BYTES else torch.bfloat16


class NvfpPatch:
    """The stream's transform for the NVFP4 pass: each BF16 tensor a quantized module lives in gets that
    module's NVFP4 dequantization in its slice (in the compute dtype, as the loaded model would hold it)."""

    def __init__(self, nvfp4_dir: Path, info: CheckpointInfo, dtype: torch.dtype) -> None:
        from ..nvfp4.checkpoint import read_quant_shard_headers  # lazy: torch, only when NVFP4 is measured
        from ..nvfp4.verify import _locate  # lazy: torch, only when NVFP4 is measured

        self.dir, self.dtype = nvfp4_dir, dtype
        self.out = read_quant_shard_headers(nvfp4_dir)
        # _locate maps a module to its slice of a source tensor; it needs the tensors' names and shapes only.
        src = {e.name: SrcTensor(e.name, e.dtype, tuple(e.shape)) for s in info.shards for e in s.entries}
        self.slices: dict[str, list[tuple[str, int | None, int, int]]] = {}
        modules = sorted({n[: -len(".weight_packed")] for n in self.out if n.endswith(".weight_packed")})
        for m in modules:
            located = _locate(m, src)
            if located is None:
                raise WorkError(f"{nvfp4_dir}: quantized module {m} has no weight in the BF16 checkpoint")
            t, e, r0, r1, _ = located
            self.slices.setdefault(t.name, []).append((m, e, r0, r1))
        self.modules = len(modules)
        self.applied = 0
        self._fds: dict[str, int] = {}

    def _read(self, name: str) -> torch.Tensor:
        from ..nvfp4.checkpoint import read_2d  # lazy: torch, only when NVFP4 is measured

        file, entry, offset = self.out[name]
        if file not in self._fds:
            self._fds[file] = os.open(self.dir / file, os.O_RDONLY)
        shape = entry.shape if len(entry.shape) == 2 else (1, max(1, math.prod(entry.shape)))
        return read_2d(self._fds[file], offset, entry.dtype, shape[0], shape[1], file=file)

    def __call__(self, layer: int, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        import torch

        from ..nvfp4 import numerics  # lazy: torch, only when NVFP4 is measured

        for name in [n for n in tensors if n in self.slices]:
            t = tensors[name]
            if t.dtype != self.dtype:
                t = tensors[name] = t.to(self.dtype)
            for module, e, r0, r1 in self.slices[name]:
                w = numerics.dequantize(self._read(f"{module}.weight_packed"),
                                        self._read(f"{module}.weight_scale").view(torch.float8_e4m3fn),
                                        self._read(f"{module}.weight_global_scale").reshape(1))
                target = t if e is None else t[e]
                if tuple(target[r0:r1].shape) != tuple(w.shape):
                    raise WorkError(f"{module}: dequantized {list(w.shape)} does not fit {name}")
                target[r0:r1] = w.to(t.dtype)
                self.applied += 1
        return tensors

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def window_batches(windows: Windows, batch_tokens: int = BATCH_TOKENS) -> list[Batch]:
    """The windows as the stream's batches, in order, several windows of `context` tokens to a batch."""
    import torch

    from ..dropmap.stream import Batch  # lazy: torch, only when NVFP4 is measured

    per = max(1, batch_tokens // windows.context)
    rows = [windows.inputs(w) for w in range(windows.count)]
    out = []
    for start in range(0, len(rows), per):
        ids = torch.tensor(rows[start:start + per], dtype=torch.int64)
        out.append(Batch(ids, torch.ones_like(ids), 0))
    return out


@contextmanager
def streamed_logits(info: CheckpointInfo, batches: list[Batch], dtype: torch.dtype, *,
                    transform: Callable[[int, dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
                    progress: Progress = None) -> Iterator[tuple[LogitsFn, int]]:
    """Run every layer of the checkpoint over `batches`, then yield a LogitsFn that gives each window's
    float32 logits in order (window w is row w % per-batch of batch w // per-batch), and the vocabulary size.
    Everything it loaded is freed when the block ends."""
    import torch

    from ..dropmap.stream import LayerStream  # lazy: torch, only when NVFP4 is measured

    stream = LayerStream(info, device=torch.device("cpu"), dtype=dtype, transform=transform)
    # One matrix product per expert: the grouped implementation copies a layer's stacked experts transposed.
    stream.model.config._experts_implementation = "eager"
    try:
        stream.record(batches)
        for layer in range(stream.num_layers):
            stream.run_layer(layer)
            if progress:
                progress(layer + 1, stream.num_layers)
        stream.load_head()
        order = [(b, row) for b, batch in enumerate(batches) for row in range(batch.input_ids.shape[0])]
        at = iter(order)

        def logits(window: list[int]) -> np.ndarray:
            b, row = next(at)
            if batches[b].input_ids[row].tolist() != window:
                raise WorkError("NVFP4 quality: windows decoded out of order")
            return stream.logits(batches[b], b, row).float().numpy()

        yield logits, int(stream.model.get_output_embeddings().weight.shape[0])
    finally:
        stream.close()
        stream.model.to("meta")  # the head (embeddings, output projection) goes with the block


def measure_nvfp4(bf16_dir: Path, nvfp4_dir: Path, text: str, q: QualitySection, *, shown: str, work: Path,
                  progress: Progress = None, batch_tokens: int = BATCH_TOKENS) -> Figures:
    """`work`: a folder for the BF16 pass's log-probabilities until the NVFP4 pass compares with them (a
    memory-mapped file, removed at the end: 2 GB at 26B size that need not stay in memory)."""
    import transformers


    tokens, bos = tokenize(bf16_dir, text)
    windows = cut(tokens, context=q.context, max_tokens=q.max_tokens, bos=bos, shown=shown)
    info = inspect_checkpoint(bf16_dir)
    dtype = compute_dtype(bf16_dir)
    batches = window_batches(windows, batch_tokens)
    transformers.utils.logging.disable_progress_bar()
    layers = int(info.family.text_config(info.config)["num_hidden_layers"])
    per_pass = layers + windows.count  # progress over both passes: the layers, then the windows

    def part(start: int) -> Progress:
        return None if progress is None else (lambda done, _total: progress(start + done, 2 * per_pass))

    work.mkdir(parents=True, exist_ok=True)
    tmp = work / ".nvfp4-reference.npy.partial"
    try:
        with streamed_logits(info, batches, dtype, progress=part(0)) as (logits, vocab):
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(windows.scored, vocab))
            ref = reference_logprobs(logits, windows, out, part(layers))
            out.flush()
        patch = NvfpPatch(nvfp4_dir, info, dtype)
        try:
            with streamed_logits(info, batches, dtype, transform=patch, progress=part(per_pass)) as (logits, _):
                figures = compare(logits, windows, ref, reference="bf16",
                                  text_sha256=sha256_bytes(text.encode("utf-8")), progress=part(per_pass + layers))
        finally:
            patch.close()
        if patch.applied != patch.modules:
            raise WorkError(f"NVFP4 quality: {patch.applied} of {patch.modules} quantized modules were placed")
        return figures
    finally:
        tmp.unlink(missing_ok=True)
