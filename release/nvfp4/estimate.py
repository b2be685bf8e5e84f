"""Size of the NVFP4 artifact before it is built: exact from a checkpoint's headers, or from a
config.json alone (the base model need not be present) via a meta-device model census."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..families import for_config
from .build import plan_for
from .checkpoint import DEFAULT_MAX_SHARD, Source, layout_outputs, open_source
from .layout import SrcTensor, make_plan
from .qconfig import quantization_config

_HEADER_BYTES_PER_TENSOR = 110  # dtype/shape/offsets JSON + index line, besides the name twice


def estimate_size(src_dir: Path, *, fmt: str = "compressed-tensors", ignore: Sequence[str] = (),
                  quantize_attention: bool = True, quantize_dense_mlp: bool = True,
                  max_shard_size: int = DEFAULT_MAX_SHARD) -> int:
    """Exact byte size of the folder quantize_checkpoint would write for `src_dir` (headers only)."""
    src = open_source(Path(src_dir))
    plan = plan_for(src, fmt=fmt, ignore=ignore, quantize_attention=quantize_attention,
                    quantize_dense_mlp=quantize_dense_mlp)
    layout = layout_outputs(plan, max_shard_size)
    config = dict(src.config)
    config["quantization_config"] = quantization_config(plan.ignore)
    config_bytes = len((json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode())
    others = sum((src.root / n).stat().st_size for n in src.other_files)
    return layout.file_bytes + len(layout.index_json().encode()) + config_bytes + others


def estimate_size_from_config(config: dict[str, Any], num_experts_kept: int, *,
                              quantize_attention: bool = True, quantize_dense_mlp: bool = True,
                              ignore: Sequence[str] = (), fmt: str = "compressed-tensors") -> int:
    """Bytes of the NVFP4 safetensors of the pruned model described by a base `config` (raw dict).

    Tensor names and shapes come from instantiating the transformers model class on the meta device
    (no memory, no weights), with the expert count set to `num_experts_kept`; tokenizer and other
    small files are not counted. Raises ValueError when the config cannot be sized.
    """
    if fmt != "compressed-tensors":
        raise ValueError(f"size estimate only for the compressed-tensors format, not {fmt!r}")
    tensors = _cached_tensors(json.dumps(config, sort_keys=True), int(num_experts_kept))
    try:
        plan = make_plan(tensors, config, ignore=ignore, quantize_attention=quantize_attention,
                         quantize_dense_mlp=quantize_dense_mlp)
    except InputError as exc:
        raise ValueError(str(exc)) from exc
    outputs = [t for item in plan.work() for t in plan.outputs_of(item)]
    # each tensor also costs its safetensors header entry and its index line (≈ name twice + ~110 B)
    return sum(t.nbytes + 2 * len(t.name) + _HEADER_BYTES_PER_TENSOR for t in outputs)


@functools.lru_cache(maxsize=8)
def _cached_tensors(config_json: str, num_experts_kept: int) -> list[SrcTensor]:
    # plan sizes several recipes of one model; the meta-device census is the slow part (~2 s at 26B)
    return config_tensors(json.loads(config_json), num_experts_kept)


def config_tensors(config: dict[str, Any], num_experts_kept: int) -> list[SrcTensor]:
    """(name, BF16, shape) of every tensor the checkpoint of `config` would hold, experts pruned."""
    import torch
    import transformers

    try:
        family = for_config(config)
        cfg = copy.deepcopy(config)
        text = family.text_config(cfg)
        text[family.count_key(cfg)] = int(num_experts_kept)
        arch = (cfg.get("architectures") or [None])[0]
        model_cls = getattr(transformers, arch) if arch else None
        config_obj = transformers.AutoConfig.for_model(**cfg)
    except (InputError, KeyError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot size this config: {exc}") from exc
    if model_cls is None:
        raise ValueError("config has no architectures entry naming a transformers model class")
    with torch.device("meta"):
        model = model_cls(config_obj)
    tensors: list[SrcTensor] = []
    state = model.state_dict()
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers() if n in state]
    for i, name in enumerate(dict.fromkeys(names)):
        t = state.get(name)
        if t is None:
            continue
        dtype = "BF16" if t.is_floating_point() else "I64"
        tensors.append(SrcTensor(name, dtype, tuple(t.shape), order=i))
    return tensors


__all__ = ["Source", "config_tensors", "estimate_size", "estimate_size_from_config"]
