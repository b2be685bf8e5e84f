"""The `quantization_config` written into config.json, as llm-compressor 0.14 writes NVFP4A16."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

FORMAT = "nvfp4-pack-quantized"
# compressed-tensors version whose numerics the artifact matches byte for byte (0.19 and 0.20 agree)
CT_VERSION = "0.20.0"


def quantization_config(ignore: Sequence[str]) -> dict[str, Any]:
    """Weight-only NVFP4 (no input_activations ⇒ vLLM picks its W4A16 path for linears and MoE)."""
    return {
        "quant_method": "compressed-tensors",
        "format": FORMAT,
        "quantization_status": "compressed",
        "config_groups": {
            "group_0": {
                "targets": ["Linear"],
                "format": FORMAT,
                "weights": {
                    "num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16,
                    "symmetric": True, "dynamic": False, "scale_dtype": "torch.float8_e4m3fn",
                    "zp_dtype": None, "observer": "memoryless_minmax", "actorder": None,
                    "block_structure": None, "observer_kwargs": {},
                },
                "input_activations": None,
                "output_activations": None,
            }
        },
        "ignore": list(ignore),
        "kv_cache_scheme": None,
        "sparsity_config": {},
        "transform_config": {},
        "global_compression_ratio": None,
        "version": CT_VERSION,
    }
