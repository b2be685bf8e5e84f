"""Check-time GGUF recipe rules: clear InputErrors naming file and field, before any conversion.

No llama.cpp needed: tensor names come from the base config (verified against a real conversion in
tests/test_gguf_build.py).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from release.errors import InputError
from release.gguf import tiers as T
from release.gguf.checks import recipe_problems, recipe_warnings
from release.gguf.names import expected_tensors, group_of
from release.spec.load import PROJECT_ROOT, load_release

DEMO = PROJECT_ROOT / "pipelines" / "demo"


def _demo_copy(tmp_path: Path, edit) -> Path:
    d = tmp_path / "demo"
    shutil.copytree(DEMO, d, ignore=shutil.ignore_patterns("base", "dist"))
    toml = (d / "release.toml").read_text()
    new = edit(toml)
    assert new != toml, "the edit did not apply"
    (d / "release.toml").write_text(new)
    return d


def _problems(d: Path) -> list[str]:
    try:
        rel = load_release(str(d))
    except InputError as exc:
        return [str(p) for p in exc.problems]
    return [str(p) for p in recipe_problems(rel)]


def test_demo_and_v4_are_clean():
    for name in ("demo", "v4"):
        assert recipe_problems(load_release(name)) == []


def test_tier_needing_imatrix_without_one(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('imatrix = "calibration.txt"\n', "")
                   .replace('"IQ4_XS",', '"IQ4_XS", "IQ2_M",'))
    probs = _problems(d)
    assert any("demo/release.toml: gguf.tiers[" in p and "IQ2_M needs an importance matrix" in p for p in probs), probs


def test_recipe_type_needing_imatrix_without_one(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('imatrix = "calibration.txt"\n', "")
                   .replace('''['ffn_gate_up_exps\\.weight', "q4_k"]''', '''['ffn_gate_up_exps\\.weight', "iq2_xs"]'''))
    probs = _problems(d)
    assert any("gguf.recipes.CD-Q3" in p and "importance matrix" in p for p in probs), probs


def test_unknown_type_in_recipe(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('''['attn_(q|k|v|output)\\.weight', "q5_k"]''',
                                                 '''['attn_(q|k|v|output)\\.weight', "q5_kk"]'''))
    probs = _problems(d)
    assert any("demo/release.toml: gguf.recipes.CD-Q5.overrides[1]" in p and "q5_kk" in p for p in probs), probs


def test_unknown_embed_type(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('embed = "q8_0"', 'embed = "q9_0"'))
    probs = _problems(d)
    assert any("gguf.recipes.CD-Q5.embed" in p and "q9_0" in p for p in probs), probs


def test_regex_matching_no_tensor(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('''['ffn_gate_up_exps\\.weight', "q4_k"]''',
                                                 '''['ffn_gate_up_exp\\.weight', "q4_k"]'''))
    with pytest.raises(InputError) as exc:
        rel = load_release(str(d))
        raise InputError(recipe_problems(rel))
    msg = str(exc.value)
    assert "demo/release.toml: gguf.recipes.CD-Q3.overrides[1]" in msg
    assert "matches no tensor" in msg and "blk.N.ffn_gate_up_exps.weight" in msg


def test_regex_matching_a_layer_that_does_not_exist(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('''['blk\\.0\\.ffn_(gate_up|down)_exps\\.weight', "q5_k"]''',
                                                 '''['blk\\.7\\.ffn_(gate_up|down)_exps\\.weight', "q5_k"]'''))
    assert any("overrides[0]" in p and "matches no tensor" in p for p in _problems(d))


def test_regex_matching_only_unquantized_tensors(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('''['attn_(q|k|v|output)\\.weight', "q3_k"]''',
                                                 '''['attn_norm\\.weight', "q3_k"]'''))
    assert any("overrides[2]" in p and "unquantized" in p for p in _problems(d))


def test_shadowed_regex(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('''['ffn_gate_up_exps\\.weight', "q4_k"]''',
                                                 '''['blk\\.0\\.ffn_down_exps\\.weight', "q4_k"]'''))
    assert any("overrides[1]" in p and "shadowed" in p for p in _problems(d))


def test_invalid_imatrix_file(tmp_path):
    d = _demo_copy(tmp_path, lambda t: t.replace('imatrix = "calibration.txt"', 'imatrix = "imatrix.gguf"'))
    (d / "imatrix.gguf").write_bytes(b"GGUF not really")
    assert any("gguf.imatrix" in p for p in _problems(d))


def test_fallback_warnings():
    w = recipe_warnings(load_release("v4"))
    assert any("CD-Q5" in x and "q6_k on ffn_down_exps.weight falls back to q8_0" in x for x in w)


def test_fallback_rule():
    assert T.fallback_type("q6_k", 704) == "q8_0"
    assert T.fallback_type("q4_k", 704) == "q5_0"
    assert T.fallback_type("q5_k", 2112) == "q5_1"
    assert T.fallback_type("iq4_xs", 192) == "iq4_nl"
    assert T.fallback_type("q2_k", 704) == "q4_0"
    assert T.fallback_type("q4_k", 2816) == "q4_k"
    assert T.fallback_type("q8_0", 100) == "f16"


def test_groups():
    assert group_of("blk.3.ffn_gate_up_exps.weight") == "ffn_gate_up_exps"
    assert group_of("blk.3.ffn_down_exps.weight") == "ffn_down_exps"
    assert group_of("blk.3.ffn_down_exps.scale") == "other"
    assert group_of("blk.0.attn_q.weight") == "attn"
    assert group_of("blk.0.attn_q_norm.weight") == "other"
    assert group_of("blk.0.ffn_gate_inp.weight") == "other"
    assert group_of("blk.0.ffn_down.weight") == "ffn_dense"
    assert group_of("token_embd.weight") == "token_embd"
    assert group_of("output.weight") == "output"


def test_k_eq_v_full_layers_have_no_attn_v():
    rel = load_release("v4")
    names = {t.name for t in expected_tensors(rel.base_config, num_experts=98)}
    tc = rel.base_config["text_config"]
    for n, kind in enumerate(tc["layer_types"]):
        assert (f"blk.{n}.attn_v.weight" in names) == (kind != "full_attention")
    assert "output.weight" not in names  # tied embeddings


def test_ggml_type_ids_match_gguf():
    import gguf

    for name, value in T.GGML_TYPE_IDS.items():
        assert gguf.GGMLQuantizationType[name.upper()].value == value
        block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name.upper()]]
        assert size * 8 / block == pytest.approx(T.GGML_TYPES[name])
