"""The importance matrix in bounded memory: computed layer by layer from the pruned BF16 checkpoint.

llama.cpp's own collector (release/gguf/imatrix.py `compute_imatrix`) runs the F16 GGUF through libllama,
which maps the whole file and wants it in page cache: ≈41 GB at 26B size, more than a hosted runner's
16 GB. This computes the same statistics with the drop-map collector's layer streamer
(release/dropmap/stream.py): the checkpoint's decoder layers run one at a time, in float32, over the
calibration chunks, while every matrix multiplication by a weight of the layer is watched (a
`TorchFunctionMode` sees each `linear` call the model's own code makes):

- a dense weight (attention q/k/v/output, the dense MLP, the router, per-layer projections): Σx² over every
  token row of its input, per input column, and the token count;
- a routed expert tensor (`experts.gate_up_proj`, `experts.down_proj`): the same per expert, over the rows
  routed to it (experts run with transformers' `eager` implementation, one `linear` per expert), with a
  count per expert — what llama-imatrix accumulates for MUL_MAT_ID.

Names are llama.cpp's: each weight's name in the checkpoint, with the converter's `language_model.` prefix
dropped, goes through gguf-py's tensor name map for the baseline's architecture, and must be a tensor of the
baseline GGUF (fused gate+up experts feed both halves of a split pair). Every weight matrix of the baseline's
decoder blocks must get an entry, as llama-imatrix gives one.

The calibration text is what llama-imatrix decodes: tokenized by libllama from the baseline GGUF's own
vocabulary (`runtime.tokenize_file`: loaded vocab-only, no weight mapped), cut into chunks of `n_ctx`
tokens (`imatrix.chunk_plan`), BOS first in every chunk; each chunk is its own sequence from position 0.
The file is written in llama-imatrix's GGUF format (`imatrix.write_imatrix`): sums, counts, chunk count
and size, dataset name.

Memory: two layers in float32 (the running one and the next, read ahead) + the chunks' hidden states +
one batch's working memory; the F16 GGUF is never mapped. Fidelity: tiers quantized with this matrix have
the KL divergence of the same tiers quantized with llama.cpp's own (tests/test_gguf_imatrix_stream.py,
benchmarks/quality.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, WorkError
from ..prune import inspect_checkpoint
from .imatrix import ImatrixResult, Stats, chunk_plan, write_imatrix
from .runtime import tokenize_file

if TYPE_CHECKING:
    import torch

BATCH_TOKENS = 1024  # chunks run through a layer together: working memory stays small beside two layers
METHOD = ("layer-streamed transformers forward (float32) over the BF16 checkpoint, Σx² of every weight's "
          "input per column and per expert (llama-imatrix's statistics and file format)")
_BLOCK = re.compile(r"^blk\.\d+\.")


def gguf_layout(baseline: Path) -> tuple[str, dict[str, tuple[int, ...]]]:
    """(architecture, tensor name → shape in ggml order) from the baseline GGUF's header, every shard of a
    split file included (no tensor data is read)."""
    import gguf

    def read(path: Path) -> gguf.GGUFReader:
        try:
            return gguf.GGUFReader(str(path))
        except Exception as exc:  # the reader raises bare ValueError/struct errors on junk
            raise InputError(f"not a GGUF file: {exc}", file=str(path)) from exc

    first = read(baseline)
    arch = first.fields.get("general.architecture")
    if arch is None:
        raise InputError("no general.architecture", file=str(baseline), field="general.architecture")
    readers = [first]
    count = first.fields.get("split.count")
    shards = int(count.contents()) if count is not None else 1
    if shards > 1:
        stem = re.sub(r"-00001-of-\d{5}\.gguf$", "", baseline.name)
        readers += [read(baseline.with_name(f"{stem}-{i:05d}-of-{shards:05d}.gguf")) for i in range(2, shards + 1)]
    return str(arch.contents()), {t.name: tuple(int(x) for x in t.shape) for r in readers for t in r.tensors}


class GgufNames:
    """A model parameter's name → the baseline GGUF tensors its input statistics belong to."""

    def __init__(self, arch: str, tensors: dict[str, tuple[int, ...]], n_blocks: int) -> None:
        import gguf

        archs = {name: key for key, name in gguf.MODEL_ARCH_NAMES.items()}
        if arch not in archs:
            raise WorkError(f"gguf-py does not know the architecture {arch!r}: no tensor names to map to")
        self.map = gguf.get_tensor_name_map(archs[arch], n_blocks)
        self.tensors = tensors

    def _mapped(self, name: str) -> str | None:
        found = self.map.get_name(name, try_suffixes=(".weight", ".bias"))
        if found is None:
            return None
        return found if found.endswith((".weight", ".bias")) else f"{found}.weight"

    def resolve(self, param: str) -> list[str]:
        """GGUF names for `param` (e.g. model.language_model.layers.3.experts.gate_up_proj →
        blk.3.ffn_gate_up_exps.weight), [] when the map does not know it."""
        name = param.replace("language_model.", "")  # as the converter's filter_tensors
        found = self._mapped(name)
        if found in self.tensors:
            return [found]
        if name.endswith("gate_up_proj"):
            # transformers fuses gate and up; the converter may have written them apart: same input, both.
            pair = [self._mapped(name[:-len("gate_up_proj")] + leaf) for leaf in ("gate_proj", "up_proj")]
            if all(p in self.tensors for p in pair):
                return [p for p in pair if p is not None]
        if found is not None and found.endswith(("attn_q.weight", "attn_k.weight", "attn_v.weight")):
            qkv = re.sub(r"attn_[qkv]\.weight$", "attn_qkv.weight", found)
            if qkv in self.tensors and found.endswith("attn_q.weight"):  # one input for the fused three
                return [qkv]
            if qkv in self.tensors:
                return []
        return [found] if found is not None else []

    def matrices(self) -> list[str]:
        """The baseline's decoder weights llama-imatrix collects: every blk.* matrix."""
        return sorted(n for n, shape in self.tensors.items()
                      if _BLOCK.match(n) and n.endswith(".weight") and len(shape) >= 2)


class Accumulator:
    """Σx² per input column (float64) and row counts, per GGUF weight, per expert for 3-D weights."""

    def __init__(self) -> None:
        self.sums: dict[str, Any] = {}  # name → torch float64 [n_mat, ne0]
        self.counts: dict[str, Any] = {}  # name → torch int64 [n_mat]

    def add(self, names: list[str], x: torch.Tensor, mat: int, n_mat: int) -> None:
        import torch

        rows = x.reshape(-1, x.shape[-1])
        sq = torch.sum(rows.square(), dim=0, dtype=torch.float64)  # squares in the compute dtype, sums in f64
        for name in names:
            if name not in self.sums:
                self.sums[name] = torch.zeros((n_mat, rows.shape[1]), dtype=torch.float64)
                self.counts[name] = torch.zeros(n_mat, dtype=torch.int64)
            self.sums[name][mat] += sq
            self.counts[name][mat] += rows.shape[0]

    def stats(self) -> dict[str, Stats]:
        out = {}
        for name, s in self.sums.items():
            counts = self.counts[name].numpy()
            n_mat = s.shape[0]
            out[name] = Stats(s.numpy().astype(np.float32), counts if n_mat > 1 else counts[:1])
        return out


@dataclass(frozen=True)
class Watched:
    """A weight of the running layer: its GGUF names and, for a stack of experts, how to tell which one a
    view of it is (no reference to the tensor: the layer's memory goes when the layer does)."""

    names: list[str]
    experts: int  # 1 for a matrix
    offset: int  # storage offset of the stack
    stride: int  # elements from one expert to the next


_WATCH: type | None = None


def _watch(acc: Accumulator, weights: dict[int, Watched]) -> Any:
    """A TorchFunctionMode that adds the input of every `linear` by a watched weight to `acc`. (One class for
    the process: a class made per layer would keep that layer's tensors alive until the cyclic GC ran.)"""
    global _WATCH
    if _WATCH is None:
        import torch
        from torch.overrides import TorchFunctionMode

        linear = torch.nn.functional.linear

        class Watch(TorchFunctionMode):
            def __init__(self, acc: Accumulator, weights: dict[int, Watched]) -> None:
                super().__init__()
                self.acc, self.weights = acc, weights

            def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
                kwargs = kwargs or {}
                if func is linear:
                    x = args[0] if args else kwargs["input"]
                    w = args[1] if len(args) > 1 else kwargs["weight"]
                    base = w._base if w._base is not None else w
                    watched = self.weights.get(id(base))
                    if watched is not None:
                        # One expert's matrix is a view of the stacked tensor: its offset tells which.
                        expert = (w.storage_offset() - watched.offset) // watched.stride if watched.experts > 1 else 0
                        self.acc.add(watched.names, x.detach(), expert, watched.experts)
                return func(*args, **kwargs)

        _WATCH = Watch
    return _WATCH(acc, weights)


def stream_imatrix(checkpoint: Path, baseline: Path, calibration: Path, out: Path, *, chunks: int = 16,
                   n_ctx: int = 512, batch_tokens: int = BATCH_TOKENS,
                   progress: Callable[[int, int], None] | None = None) -> ImatrixResult:
    """Write `out` (llama-imatrix GGUF) from the BF16 `checkpoint`, naming tensors as `baseline` (the F16/BF16
    GGUF converted from it) does, over `calibration` text: `chunks` chunks of `n_ctx` tokens at most."""
    import torch

    from ..dropmap.stream import Batch, LayerStream  # lazy: torch, only when the imatrix is computed

    try:
        text = calibration.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read calibration text: {exc}", file=str(calibration)) from exc

    arch, tensors = gguf_layout(baseline)
    # As llama-imatrix tokenizes: the GGUF's own vocabulary, special tokens in the text not parsed.
    try:
        tokens, add_bos, bos = tokenize_file(baseline, text)
    except RuntimeError as exc:
        raise WorkError(str(exc)) from exc
    n_chunk, n_ctx = chunk_plan(len(tokens), chunks, n_ctx)
    if n_chunk < 1:
        raise InputError(f"calibration text has only {len(tokens)} tokens; need at least 32", file=str(calibration))
    rows = []
    for i in range(n_chunk):
        chunk = tokens[i * n_ctx:(i + 1) * n_ctx]
        rows.append([bos, *chunk[1:]] if add_bos else chunk)
    per = max(1, batch_tokens // n_ctx)
    batches = []
    for start in range(0, n_chunk, per):
        ids = torch.tensor(rows[start:start + per], dtype=torch.int64)
        batches.append(Batch(ids, torch.ones_like(ids), 0))

    info = inspect_checkpoint(checkpoint)
    stream = LayerStream(info, device=torch.device("cpu"), dtype=torch.float32)
    stream.model.config._experts_implementation = "eager"  # one `linear` per expert, watched
    names = GgufNames(arch, tensors, stream.num_layers)
    acc = Accumulator()
    unmapped: set[str] = set()
    try:
        stream.record(batches)
        weights: dict[int, Watched] = {}  # id of a weight of the running layer → what it is

        def before(b: int, layer: int) -> None:
            if b:
                return
            prefix = f"{stream.text_name}.layers.{layer}"
            for pname, p in stream.text.layers[layer].named_parameters(prefix=prefix):
                if p.dim() < 2:
                    continue
                resolved = names.resolve(pname)
                if not resolved:
                    unmapped.add(pname)
                elif p.dim() == 3:
                    weights[id(p)] = Watched(resolved, int(p.shape[0]), p.storage_offset(), p.stride(0))
                else:
                    weights[id(p)] = Watched(resolved, 1, 0, 0)

        with _watch(acc, weights):
            for layer in range(stream.num_layers):
                stream.run_layer(layer, lambda b, layer=layer: before(b, layer))
                weights.clear()
                if progress:
                    progress(layer + 1, stream.num_layers)
    finally:
        stream.close()
    stats = acc.stats()
    missing = [n for n in names.matrices() if n not in stats]
    if missing:
        raise WorkError(f"imatrix: no statistics for {len(missing)} weight(s) of {baseline.name} "
                        f"({', '.join(missing[:4])}{' …' if len(missing) > 4 else ''}); unmapped parameters: "
                        f"{', '.join(sorted(unmapped)[:4]) or 'none'}")
    for name, st in stats.items():
        if not np.all(np.isfinite(st.values)):
            raise WorkError(f"imatrix: non-finite activations in {name}")
        want = tensors.get(name)
        if want is None or want[0] != st.values.shape[1]:
            raise WorkError(f"imatrix: {name} has inputs of {st.values.shape[1]} columns, the baseline "
                            f"{'has no such tensor' if want is None else f'says {want[0]}'}")
    write_imatrix(out, stats, dataset=calibration.name, chunk_count=n_chunk, chunk_size=n_ctx)
    partial = {k: float((s.counts > 0).mean()) for k, s in stats.items() if (s.counts == 0).any()}
    return ImatrixResult(out, n_chunk, n_ctx, len(stats), calibration.name, n_chunk * n_ctx, partial)

