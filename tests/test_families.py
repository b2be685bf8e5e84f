"""MoE family layouts (release/families/*.toml) agree with the real transformers model classes.

The oracle for "which layers are MoE" is the model transformers builds from the same config: a layer is
MoE when it has an `experts` module. Counts and top-k are read from the raw config.json and compared with
the config object transformers builds from it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from model_factory import FAMILIES, build_model, make_checkpoint

from release.errors import InputError
from release.families import all_families, for_config
from release.prune import inspect_checkpoint

EXPECTED = {"deepseek_v3", "gemma4", "glm4_moe", "gpt_oss", "llama4", "mixtral", "olmoe", "qwen3_5_moe", "qwen3_moe",
            "qwen3_next"}


def test_every_family_file_is_well_formed() -> None:
    families = {f.family: f for f in all_families()}
    assert set(families) >= EXPECTED
    types = [t for f in families.values() for t in f.model_types]
    assert len(types) == len(set(types)), "a model_type claimed by two families"
    for fam in families.values():
        assert fam.tensors, fam.family
        assert any(r.action == "slice" for r in fam.tensors), f"{fam.family}: no router/fused rule"
        for rule in fam.tensors:
            groups = set(rule.pattern.groupindex)
            assert "layer" in groups, (fam.family, rule.pattern.pattern)
            assert ("expert" in groups) == (rule.action == "renumber"), (fam.family, rule.pattern.pattern)
        if "mtp" in fam.extra:
            mtp = fam.extra["mtp"]
            pattern = re.compile(mtp["pattern"])
            assert ("min_layer_key" in mtp) == ("layer" in pattern.groupindex), fam.family


def _moe_layers_built(model: Any) -> list[int]:
    layers = set()
    for name, _ in model.named_modules():
        m = re.search(r"(?:^|\.)layers\.(\d+)\.(?:[a-z_]+\.)?experts$", name)
        if m and "vision" not in name and "visual" not in name:
            layers.add(int(m.group(1)))
    return sorted(layers)


VARIANTS = [(f, {}) for f in FAMILIES] + [
    ("qwen3_moe", {"decoder_sparse_step": 2, "num_hidden_layers": 4}),
    ("qwen3_moe", {"mlp_only_layers": [0, 2]}),
    ("qwen3_next", {"mlp_only_layers": [1]}),
    ("deepseek_v3", {"first_k_dense_replace": 2}),
    ("glm4_moe", {"first_k_dense_replace": 0}),
    ("llama4", {"interleave_moe_layer_step": 1}),
]


@pytest.mark.parametrize(("family", "overrides"), VARIANTS, ids=lambda v: str(v) if isinstance(v, str) else
                         ",".join(f"{k}={x}" for k, x in v.items()) or "default")
def test_layout_matches_transformers(family: str, overrides: dict[str, Any], tmp_path: Path) -> None:
    model = build_model(family, **overrides)
    config = json.loads(model.config.to_json_string())
    fam = for_config(config)
    assert fam.family == family
    tc = model.config.get_text_config()
    count = next(getattr(tc, k) for k in ("num_experts", "num_local_experts", "n_routed_experts")
                 if getattr(tc, k, None) is not None)
    top_k = next(getattr(tc, k) for k in ("num_experts_per_tok", "top_k_experts") if getattr(tc, k, None) is not None)
    assert (fam.num_experts(config), fam.top_k(config)) == (count, top_k)
    assert fam.moe_layers(config) == _moe_layers_built(model)


def test_llama4_hub_config_without_moe_layers() -> None:
    model = build_model("llama4", interleave_moe_layer_step=2, num_hidden_layers=6)
    config = json.loads(model.config.to_json_string())
    config.pop("moe_layers")
    assert for_config(config).moe_layers(config) == _moe_layers_built(model) == [1, 3, 5]


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(InputError) as exc:
        for_config({"model_type": "llama", "num_hidden_layers": 2})
    [p] = exc.value.problems
    assert (p.file, p.field) == ("config.json", "model_type") and "gemma4" in p.message


def test_gemma4_without_moe_block_is_refused(tmp_path: Path) -> None:
    base = make_checkpoint("gemma4", tmp_path / "base", with_tokenizer=False, num_experts=8)
    cfg = json.loads((base / "config.json").read_text())
    cfg["text_config"]["enable_moe_block"] = False
    (base / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InputError, match="without MoE layers"):
        inspect_checkpoint(base)
