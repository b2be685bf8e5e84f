"""Checkpoints and release folders for GGUF tests: the demo, and a demo at the 26B's widths.

`generate_full_width` writes a Gemma 4 MoE with the widths of gemma-4-26B-A4B (hidden 2816, dense FFN 2112,
expert FFN 704, 16 heads / 8 KV of 256, global layers 2 KV of 512) but the demo's 4 layers, 8 experts, tiny
vocabulary and vision tower, so its GGUF tiers hit the same row-width fallbacks as the real model while
staying ≈0.7 GB at F16.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FULL_WIDTH = {"hidden_size": 2816, "intermediate_size": 2112, "moe_intermediate_size": 704,
              "num_attention_heads": 16, "num_key_value_heads": 8, "head_dim": 256, "global_head_dim": 512,
              "num_global_key_value_heads": 2}


# Wider than the demo (hidden 512, the 26B's FFN and head widths), still the demo's 4 layers and 8 experts.
WIDER = {**FULL_WIDTH, "hidden_size": 512, "num_attention_heads": 4, "num_key_value_heads": 2}
# A model of a few GB with many layers, so that two of them are a small part of it: 16 layers of 32
# experts at hidden 1024 and the 26B's FFN widths, ≈1.3B parameters, ≈2.6 GB BF16.
FEW_GB = {**FULL_WIDTH, "hidden_size": 1024, "num_attention_heads": 8, "num_key_value_heads": 4,
          "num_hidden_layers": 16, "layer_types": (["sliding_attention"] * 3 + ["full_attention"]) * 4,
          "num_experts": 32, "sliding_window": 512}


def generate_gemma4(out: Path, widths: dict, *, seed: int, max_shard_size: str = "100MB") -> Path:
    """The demo model with `widths` over its text config, saved as sharded BF16 with the demo's tokenizer."""
    from release.demo import text_config, write_gemma4

    return write_gemma4(out, {**text_config(), **widths}, seed=seed, max_shard_size=max_shard_size,
                        init_in_bf16=True)


def generate_full_width(out: Path, *, seed: int = 3) -> Path:
    """The demo model at the 26B's widths, saved as BF16 with the demo's tokenizer (random weights)."""
    from release.demo import text_config, write_gemma4

    return write_gemma4(out, {**text_config(), **FULL_WIDTH}, seed=seed, max_shard_size="400MB", init_in_bf16=True)


def demo_pipeline_for(base: Path, folder: Path, *, tiers: list[str] | None = None, imatrix: bool = True) -> Path:
    """A copy of pipelines/demo whose base is the checkpoint in `base` (its config recorded as the base's),
    optionally with other [gguf] tiers and without the importance matrix."""
    if folder.exists():
        shutil.rmtree(folder)
    shutil.copytree(ROOT / "pipelines" / "demo", folder, ignore=shutil.ignore_patterns("base", "dist"))
    shutil.copy(base / "config.json", folder / "base-config.json")
    toml = (folder / "release.toml").read_text()
    toml = toml.replace('path = "base"\ngenerator = "tiny-gemma4"\n', "")
    # the parameter count a user would type for this base (BF16: two bytes each)
    index = json.loads((base / "model.safetensors.index.json").read_text())
    toml = re.sub(r"(?m)^parameters = .*$", f"parameters = {index['metadata']['total_size'] // 2}", toml)
    if tiers is not None:
        toml = re.sub(r"(?m)^tiers = \[.*\]$", "tiers = " + json.dumps(tiers), toml)
    if not imatrix:
        toml = re.sub(r"(?m)^imatrix = .*\n", "", toml)
    (folder / "release.toml").write_text(toml)
    return folder
