"""The real Gemma 4 26B-A4B layout, planned at full size without a byte of weights.

The model is built on the meta device from the published config (docs/moe-pruning.md §1), its tensors are written as
safetensors headers over *sparse* files (the data is holes: gigabytes apparent, nothing on disk), and
the pruner plans 128 → 98 experts on it. The planned output shapes must equal those of the same model
built by transformers with 98 experts, and the removed parameters must be exactly what docs/moe-pruning.md §2 derives.
Nothing is copied (copying holes would write zeros), only `check_prune` runs.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path
from typing import Any

import torch
from model_factory import drop_map_dict, write_drop_map

from release.prune import check_prune
from release.prune.safetensors_header import TensorEntry, encode_header
from release.spec.dropmap import load_drop_map

TEXT = {  # google/gemma-4-26B-A4B-it text_config (docs/moe-pruning.md §1)
    "hidden_size": 2816, "intermediate_size": 2112, "moe_intermediate_size": 704, "num_experts": 128,
    "top_k_experts": 8, "enable_moe_block": True, "num_hidden_layers": 30,
    "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 5, "num_attention_heads": 16,
    "num_key_value_heads": 8, "head_dim": 256, "global_head_dim": 512, "num_global_key_value_heads": 2,
    "sliding_window": 1024, "final_logit_softcapping": 30.0, "vocab_size": 262144,
    "vocab_size_per_layer_input": 262144, "hidden_size_per_layer_input": 0, "max_position_embeddings": 262144,
    "tie_word_embeddings": True, "attention_k_eq_v": True,
}
VISION = {"hidden_size": 1152, "num_hidden_layers": 27}
SHARD_BYTES = 5 << 30  # the Hub's usual 5 GB shards
PER_EXPERT = 3 * 704 * 2816  # gate, up, down rows of one expert (docs/moe-pruning.md §2: 5,947,392)


@functools.cache  # shared by the tests of this file; treated as read-only
def _meta_state(num_experts: int) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    import transformers

    config = transformers.Gemma4Config(text_config={**TEXT, "num_experts": num_experts}, vision_config=VISION,
                                       audio_config=None)
    config.architectures = ["Gemma4ForConditionalGeneration"]
    with torch.device("meta"):
        model = transformers.Gemma4ForConditionalGeneration(config)
    state = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight"}  # tied to the embeddings
    return config.to_dict(), state


def _sparse_checkpoint(folder: Path, config: dict[str, Any], state: dict[str, torch.Tensor]) -> int:
    folder.mkdir(parents=True)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, t in state.items():
        nbytes = t.numel() * 2
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, tuple(t.shape)))
        size += nbytes
    weight_map, total = {}, 0
    for i, tensors in enumerate(shards):
        file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        entries, pos = [], 0
        for name, shape in tensors:
            n = 2 * int(torch.Size(shape).numel())
            entries.append(TensorEntry(name, "BF16", shape, pos, pos + n))
            pos += n
            weight_map[name] = file
        header = encode_header(entries, '{"format":"pt"}')
        with open(folder / file, "wb") as fh:
            fh.write(header)
            fh.truncate(len(header) + pos)  # a hole: the data reads as zeros and takes no disk space
        total += pos
    index = {"metadata": {"total_parameters": total // 2, "total_size": total},
             "weight_map": dict(sorted(weight_map.items()))}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return total


def test_gemma4_26b_layout_plans_to_the_98_expert_model(tmp_path: Path) -> None:
    config, state = _meta_state(128)
    base = tmp_path / "gemma-4-26B-A4B"
    try:
        total = _sparse_checkpoint(base, config, state)
        assert total > 45e9  # ≈ 51 GB of BF16 tensors, none of it on disk
        data = drop_map_dict(128, list(range(30)), 30, seed=0, base="google/gemma-4-26B-A4B-it")
        preview = check_prune(base, load_drop_map(write_drop_map(tmp_path / "dropmap.json", data)))
        info = preview.info
        assert (info.family.family, info.layout, info.count_key) == ("gemma4", "fused", "text_config.num_experts")
        assert len(info.experts) == 30 * 4  # router.proj, per_expert_scale, gate_up_proj, down_proj per layer

        removed = info.total_parameters - preview.total_parameters_after
        assert removed == 30 * 30 * (PER_EXPERT + 2816 + 1)  # experts, router rows, per-expert scales
        assert info.tensor_bytes - preview.tensor_bytes_out == 2 * removed  # ≈ 9.97 GiB of BF16

        _, pruned_state = _meta_state(98)
        planned = {e.name: e.shape for p in preview.plans for e in p.entries}
        assert planned == {k: tuple(v.shape) for k, v in pruned_state.items()}
        assert json.loads(preview.config_text)["text_config"]["num_experts"] == 98
    finally:
        shutil.rmtree(base, ignore_errors=True)  # gigabytes of apparent size: do not leave them to pytest


def test_identity_plan_at_full_size_is_the_input(tmp_path: Path) -> None:
    """Identity prune of the full-size layout: every header byte and size equals the input's."""
    config, state = _meta_state(128)
    base = tmp_path / "base"
    try:
        _sparse_checkpoint(base, config, state)
        data = drop_map_dict(128, list(range(30)), 0)
        preview = check_prune(base, load_drop_map(write_drop_map(tmp_path / "dropmap.json", data)))
        for plan in preview.plans:
            with open(plan.source.path, "rb") as fh:
                assert fh.read(len(plan.header)) == plan.header
            assert plan.size == plan.source.file_size and len(plan.runs) == 1
        assert preview.index_text == (base / "model.safetensors.index.json").read_text()
    finally:
        shutil.rmtree(base, ignore_errors=True)
