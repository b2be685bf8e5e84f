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


def generate_full_width(out: Path, *, seed: int = 3) -> Path:
    """The demo model at the 26B's widths, saved as BF16 with the demo's tokenizer (random weights)."""
    import torch
    from transformers import Gemma4Config, Gemma4ForConditionalGeneration

    from release.demo import SPECIAL_TOKENS, _write_tokenizer, text_config, vision_config
    from release.fsutil import staging_dir

    ids = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    config = Gemma4Config(text_config={**text_config(), **FULL_WIDTH}, vision_config=vision_config(),
                          audio_config=None, boi_token_id=ids["<|image>"], eoi_token_id=ids["<image|>"],
                          image_token_id=ids["<|image|>"], video_token_id=ids["<|video|>"],
                          boa_token_id=ids["<|audio>"], eoa_token_index=ids["<audio|>"],
                          audio_token_id=ids["<|audio|>"], tie_word_embeddings=True)
    config.eos_token_id = [ids["<eos>"], ids["<turn|>"]]
    config.bos_token_id, config.pad_token_id = ids["<bos>"], ids["<pad>"]
    torch.manual_seed(seed)
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = Gemma4ForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(torch.float32)
    with staging_dir(out) as tmp:
        model.save_pretrained(tmp, max_shard_size="400MB")
        _write_tokenizer(tmp, ids)
        # transformers' save drops these; the converter and our tensor list read them
        cfg = json.loads((tmp / "config.json").read_text())
        cfg["text_config"].update(global_head_dim=FULL_WIDTH["global_head_dim"],
                                  num_global_key_value_heads=FULL_WIDTH["num_global_key_value_heads"])
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return out


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
