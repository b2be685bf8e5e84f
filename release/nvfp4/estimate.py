"""Size of the NVFP4 artifact before it is built: exact from a checkpoint's headers, or from a
config.json alone (the base model need not be present) via the config census of release/nvfp4/census.py.

Sizing from a config imports neither torch nor transformers: `release plan` runs it for every release."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InputError
from .census import config_tensors
from .layout import SrcTensor, make_plan
from .qconfig import quantization_config

_HEADER_BYTES_PER_TENSOR = 110  # dtype/shape/offsets JSON + index line, besides the name twice


def estimate_size(src_dir: Path, *, fmt: str = "compressed-tensors", ignore: Sequence[str] = (),
                  quantize_attention: bool = True, quantize_dense_mlp: bool = True,
                  max_shard_size: int | None = None) -> int:
    """Exact byte size of the folder quantize_checkpoint would write for `src_dir` (headers only)."""
    from .build import plan_for  # lazy: torch, only for a checkpoint on disk
    from .checkpoint import DEFAULT_MAX_SHARD, layout_outputs, open_source  # lazy: torch, only for a checkpoint on disk

    src = open_source(Path(src_dir))
    plan = plan_for(src, fmt=fmt, ignore=ignore, quantize_attention=quantize_attention,
                    quantize_dense_mlp=quantize_dense_mlp)
    layout = layout_outputs(plan, max_shard_size or DEFAULT_MAX_SHARD)
    config = dict(src.config)
    config["quantization_config"] = quantization_config(plan.ignore)
    config_bytes = len((json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode())
    others = sum((src.root / n).stat().st_size for n in src.other_files)
    return layout.file_bytes + len(layout.index_json().encode()) + config_bytes + others


def estimate_size_from_config(config: dict[str, Any], num_experts_kept: int, *,
                              quantize_attention: bool = True, quantize_dense_mlp: bool = True,
                              ignore: Sequence[str] = (), fmt: str = "compressed-tensors") -> int:
    """Bytes of the NVFP4 safetensors of the pruned model described by a base `config` (raw dict).

    Tensor names and shapes come from the config census (release/nvfp4/census.py), with the expert count
    set to `num_experts_kept`; tokenizer and other small files are not counted. Raises ValueError when the
    config cannot be sized.
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
    # plan sizes several recipes of one model from one census
    return config_tensors(json.loads(config_json), num_experts_kept)


__all__ = ["config_tensors", "estimate_size", "estimate_size_from_config"]
