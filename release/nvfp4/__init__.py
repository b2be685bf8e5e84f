"""NVFP4A16: weight-only NVFP4 checkpoints in the compressed-tensors layout vLLM loads, produced on
CPU by streaming, bit-exact with compressed-tensors' own compressor (docs/nvfp4.md).

Public interface (what the build step, `plan` and the verify gate call):
- quantize_checkpoint(src_dir, out_dir, *, fmt, ignore, quantize_attention, quantize_dense_mlp,
  progress) -> Nvfp4Result
- estimate_size(src_dir, **same options) -> int   exact bytes of the output folder
- estimate_size_from_config(config, num_experts_kept, **options) -> int   from a config.json alone
- verify_checkpoint(quant_dir, src_dir, *, max_rel_error, dequantizer) -> VerifyReport
"""

from .build import Nvfp4Result, quantize_checkpoint
from .estimate import estimate_size, estimate_size_from_config
from .verify import ModuleCheck, VerifyReport, verify_checkpoint

__all__ = ["ModuleCheck", "Nvfp4Result", "VerifyReport", "estimate_size", "estimate_size_from_config",
           "quantize_checkpoint", "verify_checkpoint"]
