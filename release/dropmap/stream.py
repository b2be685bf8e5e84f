"""Run a checkpoint's decoder layers one at a time over calibration tokens, in bounded memory.

The math is the model's own: transformers' classes and loading code, never a re-implementation.

1. The architecture named in config.json is instantiated on the meta device, as `from_pretrained` does
   (`get_init_context`): no memory for weights.
2. Recording pass: the text model (the submodule holding `embed_tokens` and `layers`) gets its non-layer
   tensors (embeddings, final norm, per-layer-input projections); each decoder layer's `forward` is
   replaced by a recorder and the text model's own `forward` runs on every batch. That yields the input
   hidden states of layer 0 and the arguments the model passes to each layer (rotary embeddings per layer
   type, attention masks, per-layer inputs, shared-KV state …). The embeddings are freed again.
3. For each layer in order: its tensors are read from the shards with plain reads (no mmap, so resident
   memory is what was read) and loaded with transformers' own checkpoint conversion (e.g. per-expert
   tensors fused, renames); the layer runs over every batch; its weights go back to the meta device.
   The next layer's bytes are read by a background thread meanwhile.

4. Optionally, the head: after the last layer, the non-layer tensors (embeddings, final norm, an untied
   output projection) are loaded again and the whole model's own `forward` runs once per sequence with the
   layers replaced by replays that hand back the streamed hidden states, so the logits come from the
   model's own final norm, output projection and soft-capping (`logits`).

A `transform` given to the stream sees each layer's tensors as read, before transformers loads them (the
NVFP4 quality measurement puts the dequantized NVFP4 weights in place of the BF16 ones there).

Resident between layers: the hidden states and recorded arguments of the calibration batches. Peak: the
running layer + the next layer's bytes + one batch's working memory.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import re
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, WorkError
from ..prune.checkpoint import CheckpointInfo
from ..prune.safetensors_header import ShardHeader, TensorEntry

TORCH_DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}
_LAYER = re.compile(r"^(?P<prefix>.*?)layers\.(?P<layer>\d+)\.")
# A layer's tensors as read → what transformers loads for it (the layer index is the first argument).
Transform = Callable[[int, dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor  # [B, S] int64, right-padded
    attention_mask: torch.Tensor  # [B, S] int64, 1 = real token
    label: int  # index of the calibration class (a batch holds one class)

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def _trim_heap() -> None:
    """Give the allocator's free heap back to the system (glibc): a layer's many medium-sized temporaries
    would otherwise stay resident as fragments, and resident memory would creep up layer after layer."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        try:
            _MALLOC_TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None


class TensorReader:
    """Named tensors of a checkpoint, read with plain reads into fresh CPU memory."""

    def __init__(self, base_dir: Path, shards: Sequence[ShardHeader]) -> None:
        self.base_dir = base_dir
        self.where: dict[str, tuple[ShardHeader, TensorEntry]] = {e.name: (s, e) for s in shards
                                                                   for e in s.entries}

    def nbytes(self, names: Iterable[str]) -> int:
        return sum(self.where[n][1].nbytes for n in names)

    def compute_nbytes(self, names: Iterable[str], dtype: torch.dtype) -> int:
        """Bytes once loaded: floating tensors take the compute dtype's size."""
        total = 0
        for n in names:
            e = self.where[n][1]
            t = TORCH_DTYPES.get(e.dtype)
            size = dtype.itemsize if t is not None and t.is_floating_point else (t.itemsize if t else 1)
            total += e.numel * size
        return total

    def read(self, names: Sequence[str]) -> dict[str, torch.Tensor]:
        """The tensors as views of one buffer: one allocation per layer, returned to the system as a whole
        once the layer is dropped (many medium-sized allocations would stay in the allocator's heap)."""
        items = sorted((self.where[n] for n in names), key=lambda se: (str(se[0].path), se[1].begin))
        offsets, total = [], 0
        for shard, entry in items:
            if entry.dtype not in TORCH_DTYPES:
                raise InputError(f"tensor dtype {entry.dtype} cannot be computed with here",
                                 file=shard.file, field=entry.name)
            offsets.append(total)
            total += -(-entry.nbytes // 64) * 64  # 64-byte aligned views
        buf = torch.empty(total, dtype=torch.uint8)
        view = memoryview(buf.numpy()).cast("B")
        out: dict[str, torch.Tensor] = {}
        placed = list(zip(items, offsets, strict=True))
        for path, group in itertools.groupby(placed, key=lambda p: p[0][0].path):
            with open(path, "rb", buffering=0) as fh:
                for (shard, entry), start in group:
                    pos, offset = 0, shard.data_start + entry.begin
                    while pos < entry.nbytes:
                        got = os.preadv(fh.fileno(), [view[start + pos:start + entry.nbytes]], offset + pos)
                        if got <= 0:
                            raise InputError("file ends inside a tensor", file=shard.file, field=entry.name)
                        pos += got
                    raw = buf[start:start + entry.nbytes]
                    out[entry.name] = raw.view(TORCH_DTYPES[entry.dtype]).reshape(entry.shape)
        return out


class LayerStream:
    """A checkpoint's text decoder, run layer by layer over recorded batches."""

    def __init__(self, info: CheckpointInfo, *, device: torch.device, dtype: torch.dtype,
                 transform: Transform | None = None) -> None:
        import transformers
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.utils.generic import ContextManagers

        self.info, self.device, self.dtype = info, device, dtype
        self.transform = transform
        self.reader = TensorReader(info.base_dir, info.shards)
        if info.config.get("quantization_config") is not None:
            raise InputError("quantized checkpoints are not supported by the collector; use the BF16 base",
                             file="config.json", field="quantization_config")
        config = transformers.AutoConfig.from_pretrained(info.base_dir)
        arch = (getattr(config, "architectures", None) or [""])[0]
        cls = getattr(transformers, arch, None) if arch else None
        if cls is None:
            raise InputError(f"transformers {transformers.__version__} has no model class {arch!r}",
                             file="config.json", field="architectures")
        with ContextManagers(cls.get_init_context(dtype, False, False, None)):
            model = cls(config)
        self.model = model.eval()
        self.dtype_plan = model._get_dtype_plan(dtype)
        self.mapping = get_model_conversion_mapping(model)
        found = [(n, m) for n, m in model.named_modules() if hasattr(m, "embed_tokens") and hasattr(m, "layers")]
        if len(found) != 1:
            raise WorkError(f"{arch}: expected one text model (embed_tokens + layers), found {len(found)}")
        self.text_name, self.text = found[0]
        self.num_layers = len(self.text.layers)
        self.disk_prefix = self._disk_prefix()
        self.layer_names: dict[int, list[str]] = {i: [] for i in range(self.num_layers)}
        self.other_names: list[str] = []
        for name in self.reader.where:
            m = _LAYER.match(name)
            if m and m["prefix"] == self.disk_prefix:
                if int(m["layer"]) < self.num_layers:  # beyond: MTP blocks, not part of the decoder
                    self.layer_names[int(m["layer"])].append(name)
            elif name.startswith(self.disk_prefix) and "layers." not in name[len(self.disk_prefix):]:
                self.other_names.append(name)
        self.hidden: list[torch.Tensor] = []
        self.calls: list[list[tuple[tuple[Any, ...], dict[str, Any]]] | None] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dropmap-read")
        self._next: tuple[int, Future[dict[str, torch.Tensor]]] | None = None

    def _disk_prefix(self) -> str:
        """Where the text layers live in the checkpoint: the prefix of its routed-expert tensors."""
        prefixes = {m["prefix"] for name in self.info.experts if (m := _LAYER.match(name))}
        if len(prefixes) != 1:
            raise InputError(f"cannot tell where the decoder layers are (expert tensor prefixes: {sorted(prefixes)})",
                             file=str(self.info.base_dir))
        return prefixes.pop()

    # -- loading ---------------------------------------------------------------------------------
    def layer_bytes(self, layer: int) -> int:
        """Bytes of one layer's weights in the compute dtype."""
        return self.reader.compute_nbytes(self.layer_names[layer], self.dtype)

    def _load(self, tensors: dict[str, torch.Tensor], scope: str) -> None:
        from transformers.core_model_loading import convert_and_load_state_dict_in_model
        from transformers.modeling_utils import LoadStateDictConfig
        from transformers.utils import logging as hf_logging

        config = LoadStateDictConfig(dtype=self.dtype, dtype_plan=self.dtype_plan,
                                     device_map={"": str(self.device)}, weight_mapping=self.mapping)
        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # one "Loading weights" bar per layer is noise
        try:
            loaded, _ = convert_and_load_state_dict_in_model(self.model, tensors, config)
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        ignored = [re.compile(p) for p in (self.text._keys_to_ignore_on_load_unexpected or [])]
        unexpected = sorted(k for k in loaded.unexpected_keys if not any(p.search(k) for p in ignored))
        if loaded.mismatched_keys:
            key, got, want = sorted(loaded.mismatched_keys, key=str)[0]
            raise InputError(f"{key}: shape {tuple(got)} where the config makes {tuple(want)}",
                             file=str(self.info.base_dir), field=scope)
        if unexpected or loaded.conversion_errors or loaded.error_msgs:
            raise WorkError(f"{scope}: transformers could not place {unexpected[:3] or loaded.error_msgs[:3]} "
                            f"{dict(list(loaded.conversion_errors.items())[:3]) if loaded.conversion_errors else ''}")

    def _materialize(self, modules: Iterable[tuple[str, torch.nn.Module]], scope: str) -> None:
        """Fill what the checkpoint does not hold (non-persistent buffers such as rotary frequencies) with the
        model's own initialisation; a persistent tensor still on the meta device is missing from the checkpoint."""
        from transformers import initialization as init

        pending, missing = [], []
        for name, mod in modules:
            for bname, buf in list(mod._buffers.items()):
                if buf is None or not buf.is_meta:
                    continue
                if bname in mod._non_persistent_buffers_set:
                    mod._buffers[bname] = torch.empty_like(buf, device=self.device)
                    pending.append(mod)
                else:
                    missing.append(f"{name}.{bname}")
            missing += [f"{name}.{p}" for p, t in mod._parameters.items() if t is not None and t.is_meta]
        if missing:
            raise InputError(f"the checkpoint has no tensor for {', '.join(missing[:4])}"
                             + (f" (+{len(missing) - 4} more)" if len(missing) > 4 else ""),
                             file=str(self.info.base_dir), field=scope)
        with init.guard_torch_init_functions():
            for mod in dict.fromkeys(pending):
                self.text._init_weights(mod)

    def _text_modules(self) -> list[tuple[str, torch.nn.Module]]:
        return [(n, m) for n, m in self.text.named_modules() if not (n == "layers" or n.startswith("layers."))]

    # -- the two passes --------------------------------------------------------------------------
    def record(self, batches: Sequence[Batch]) -> None:
        """Run the text model's own forward with recorders in place of the layers (see module docstring)."""
        self._load(self.reader.read(self.other_names), "embeddings")
        self._materialize(self._text_modules(), "embeddings")
        self.calls = [[] for _ in range(self.num_layers)]
        hidden: list[torch.Tensor] = []

        def recorder(index: int) -> Callable[..., torch.Tensor]:
            def forward(*args: Any, **kwargs: Any) -> torch.Tensor:
                h, rest = (args[0], args[1:]) if args else (kwargs.pop("hidden_states"), ())
                if index == 0:
                    hidden.append(h)
                calls = self.calls[index]
                assert calls is not None
                calls.append((rest, kwargs))
                return h

            return forward

        for i, layer in enumerate(self.text.layers):
            layer.forward = recorder(i)
        try:
            with torch.no_grad():
                for batch in batches:
                    self.text(input_ids=batch.input_ids.to(self.device),
                              attention_mask=batch.attention_mask.to(self.device), use_cache=False)
        finally:
            for layer in self.text.layers:
                layer.__dict__.pop("forward", None)
        for _, mod in self._text_modules():
            if mod is not self.text:
                mod.to("meta")  # the embeddings are the size of a layer: free them before the first layer
        self.hidden = hidden
        if self.layer_names[0]:
            self._prefetch(0)

    def _read_layer(self, layer: int) -> dict[str, torch.Tensor]:
        tensors = self.reader.read(self.layer_names[layer])
        return self.transform(layer, tensors) if self.transform is not None else tensors

    def _prefetch(self, layer: int) -> None:
        if layer < self.num_layers:
            self._next = (layer, self._pool.submit(self._read_layer, layer))

    def run_layer(self, layer: int, before_batch: Callable[[int], None] | None = None) -> None:
        """Load `layer`, run it over every recorded batch (hidden states updated in place), free it."""
        module = self.text.layers[layer]
        if self._next is not None and self._next[0] == layer:
            tensors = self._next[1].result()
        else:
            tensors = self._read_layer(layer)
        self._next = None
        self._load(tensors, f"layers.{layer}")
        del tensors
        self._materialize(module.named_modules(prefix=f"layers.{layer}"), f"layers.{layer}")
        self._prefetch(layer + 1)
        calls = self.calls[layer]
        assert calls is not None, "record() first"
        with torch.no_grad():
            for b, (args, kwargs) in enumerate(calls):
                if before_batch is not None:
                    before_batch(b)
                out = module(self.hidden[b], *args, **kwargs)
                self.hidden[b] = out[0] if isinstance(out, tuple) else out
        module.to("meta")
        self.calls[layer] = None
        _trim_heap()

    # -- the head ---------------------------------------------------------------------------------
    def load_head(self) -> None:
        """Load what turns the last layer's hidden states into logits (embeddings, final norm, the output
        projection or its tie to the embeddings); once every layer has run."""
        head = [n for n, m in self.model.named_modules() if m is self.model.get_output_embeddings()]
        prefix = f"{head[0]}." if head else None
        names = self.other_names + [n for n in self.reader.where if prefix and n.startswith(prefix)]
        self._load(self.reader.read(names), "head")
        self.model.tie_weights()
        self._materialize(self._text_modules(), "head")
        if prefix:
            self._materialize(self.model.get_submodule(head[0]).named_modules(prefix=head[0]), "head")

    def logits(self, batch: Batch, b: int, row: int) -> torch.Tensor:
        """[tokens, vocab] logits of sequence `row` of recorded batch `b` (`batch`), from the streamed hidden
        states: the model's own forward runs with every layer replaced by a replay (the last one returns the
        streamed state), so the final norm, output projection and soft-capping are the model's."""
        final = self.hidden[b][row:row + 1]
        last = self.num_layers - 1

        def replay(index: int) -> Callable[..., torch.Tensor]:
            def forward(*args: Any, **kwargs: Any) -> torch.Tensor:
                return final if index == last else (args[0] if args else kwargs["hidden_states"])

            return forward

        for i, layer in enumerate(self.text.layers):
            layer.forward = replay(i)
        try:
            with torch.no_grad():
                out = self.model(input_ids=batch.input_ids[row:row + 1].to(self.device),
                                 attention_mask=batch.attention_mask[row:row + 1].to(self.device), use_cache=False)
        finally:
            for layer in self.text.layers:
                layer.__dict__.pop("forward", None)
        return out.logits[0]

    def activation_bytes(self) -> int:
        """Bytes held between layers: hidden states and recorded arguments (each storage counted once)."""
        seen: dict[int, int] = {}

        def visit(x: Any) -> None:
            if isinstance(x, torch.Tensor):
                seen[x.untyped_storage().data_ptr()] = x.untyped_storage().nbytes()
            elif isinstance(x, tuple | list):
                for v in x:
                    visit(v)
            elif isinstance(x, dict):
                for v in x.values():
                    visit(v)

        visit(self.hidden)
        visit([c for c in self.calls if c is not None])
        return sum(seen.values())

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._next = None
