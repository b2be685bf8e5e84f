"""NVFP4A16: weight-only NVFP4 checkpoints in the compressed-tensors layout vLLM loads, produced on
CPU by streaming, bit-exact with compressed-tensors' own compressor (docs/nvfp4.md).

Public interface (what the build step, `plan` and the verify gate call):
- quantize_checkpoint(src_dir, out_dir, *, fmt, ignore, quantize_attention, quantize_dense_mlp,
  progress) -> Nvfp4Result
- estimate_size(src_dir, **same options) -> int   exact bytes of the output folder
- estimate_size_from_config(config, num_experts_kept, **options) -> int   from a config.json alone
- verify_checkpoint(quant_dir, src_dir, *, max_rel_error, dequantizer) -> VerifyReport
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: the builder and verify need torch, the size estimate `plan` runs does not.
_HOME = {"Nvfp4Result": "build", "quantize_checkpoint": "build", "estimate_size": "estimate",
         "estimate_size_from_config": "estimate", "ModuleCheck": "verify", "VerifyReport": "verify",
         "verify_checkpoint": "verify"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)


__all__ = ["ModuleCheck", "Nvfp4Result", "VerifyReport", "estimate_size", "estimate_size_from_config",
           "quantize_checkpoint", "verify_checkpoint"]
