"""`release check` warnings for the [ollama] section."""

from __future__ import annotations

import json
from pathlib import Path

from ollama_helpers import Section, make_gguf

from release.ollama import layers
from release.ollama.checks import GIB, check_warnings, kv_cache_bytes, kv_shape_from_hf_config


def test_gemma4_custom_stop_list() -> None:
    s = Section(parameters={"stop": ["<eos>"]})
    w = "\n".join(check_warnings(s, family="gemma4"))
    assert "<turn|>" in w and "<|tool_response>" in w
    s = Section(parameters={"stop": ["<turn|>", "<|tool_response>"]})
    assert not [x for x in check_warnings(s, family="gemma4") if "stop" in x]
    # No stop at all: ollama's own default applies; not a warning.
    assert not [x for x in check_warnings(Section(parameters={}), family="gemma4") if "stop" in x]
    # Other families have other stop tokens.
    assert not [x for x in check_warnings(Section(parameters={"stop": ["</s>"]}), family="llama") if "stop" in x]


def test_tag_tier_names() -> None:
    w = check_warnings(Section(tags={"Q4_K_M": "Q4_K_M", "CD-Q3_K_M": "CD-Q3"}, latest="Q4_K_M"))
    tag_warnings = [x for x in w if x.startswith("ollama.tags.")]
    assert len(tag_warnings) == 1
    assert tag_warnings[0].startswith("ollama.tags.CD-Q3_K_M:") and "'CD-Q3'" in tag_warnings[0]


def test_kv_cache_estimate() -> None:
    kv = layers.KVShape(n_layers=4, n_kv_heads=[2] * 4, key_length=128, value_length=128, sliding_window=1024,
                        swa_layers=[True, True, True, False])
    # 3 SWA layers cache 1024 tokens, 1 global layer caches all; f16 K+V.
    assert kv_cache_bytes(8192, kv) == (3 * 1024 + 8192) * 2 * 256 * 2


def test_num_ctx_against_model_and_vram(tmp_path: Path) -> None:
    g = make_gguf(tmp_path / "m.gguf", context_length=8192)
    s = Section(tags={"Q4_K_M": "Q4_K_M"}, latest="Q4_K_M", parameters={"num_ctx": 256000},
                vram_gb={"Q4_K_M": 1.0})
    w = check_warnings(s, gguf_files={"Q4_K_M": g})
    assert any("exceeds the model's context length 8192" in x for x in w)
    # The tiny model: 2 layers × 1 KV head × (4+4) × 2 bytes × 256000 tokens ≈ 8 MiB; fits 1 GB.
    assert not any("too big" in x for x in w)
    s.vram_gb = {"Q4_K_M": 0.76}
    s.parameters = {"num_ctx": 8192 * 1000}
    w = check_warnings(s, gguf_files={"Q4_K_M": g})
    big = next(x for x in w if "too big" in x)
    assert "KV cache" in big and "0.76 GB" in big
    assert kv_cache_bytes(8192 * 1000, layers.read_gguf_facts(g).kv) > 0.01 * GIB


def test_num_ctx_before_build_is_flagged() -> None:
    s = Section(tags={"Q6_K": "Q6_K"}, latest="Q6_K", parameters={"num_ctx": 256000}, vram_gb={"Q6_K": 17})
    assert any("cannot be checked before the GGUF is built" in x for x in check_warnings(s, family="gemma4"))


def test_misc_warnings() -> None:
    s = Section(parameters={"mirostat": 1}, vram_gb={"Q8_0": 30}, renderer="gemma4", template="t.tmpl")
    w = "\n".join(check_warnings(s))
    assert "mirostat: deprecated" in w and "ollama.vram_gb.Q8_0" in w and "renderer" in w


def test_kv_estimate_from_config_before_build() -> None:
    v4_config = Path(__file__).parent.parent / "pipelines" / "v4" / "base-config.json"
    cfg = json.loads(v4_config.read_text()) if v4_config.exists() else None
    gemma4 = {"text_config": {"num_hidden_layers": 30, "num_attention_heads": 16, "num_key_value_heads": 8,
                              "head_dim": 256, "global_head_dim": 512, "num_global_key_value_heads": 2,
                              "sliding_window": 1024,
                              "layer_types": (["sliding_attention"] * 5 + ["full_attention"]) * 5}}
    kv = kv_shape_from_hf_config(gemma4)
    # 5 global layers × 2 heads × (512+512) × 256000 tokens + 25 SWA layers × 8 × (256+256) × 1024, f16.
    assert kv_cache_bytes(256000, kv) == (5 * 2 * 1024 * 256000 + 25 * 8 * 512 * 1024) * 2
    if cfg is not None:
        assert kv_cache_bytes(256000, kv_shape_from_hf_config(cfg)) == kv_cache_bytes(256000, kv)
    s = Section(parameters={"num_ctx": 256000}, vram_gb={"Q4_K_M": 14, "Q6_K": 17, "CD-Q3_K_M": 8})
    w = [x for x in check_warnings(s, family="gemma4", hf_config=gemma4) if "num_ctx" in x]
    assert len(w) == 3 and "≈5.1 GiB" in w[0]
    s.parameters = {"num_ctx": 8192}
    assert not [x for x in check_warnings(s, family="gemma4", hf_config=gemma4) if "num_ctx" in x]


def test_kv_shape_from_gguf_with_sliding_window(tmp_path: Path) -> None:
    import gguf
    import numpy as np

    path = tmp_path / "swa.gguf"
    w = gguf.GGUFWriter(str(path), "gemma4")
    w.add_file_type(15)
    w.add_context_length(262144)
    w.add_block_count(6)
    w.add_head_count(16)
    w.add_head_count_kv([8, 8, 8, 8, 8, 2])
    w.add_key_length(512)
    w.add_value_length(512)
    w.add_sliding_window(1024)
    w.add_sliding_window_pattern([True] * 5 + [False])
    w.add_key_length_swa(256)
    w.add_value_length_swa(256)
    w.add_tensor("a", np.zeros(4, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    kv = layers.read_gguf_facts(path).kv
    assert kv is not None and kv.swa_layers == [True] * 5 + [False]
    assert kv_cache_bytes(256000, kv) == (5 * 1024 * 8 * 512 + 256000 * 2 * 1024) * 2
