"""Planned GGUF sizes against really built files: the type of every tensor as llama.cpp picks it
(release.gguf.mixture) and the file size `plan` shows (release.estimate), on the demo, on the demo at the
26B's widths, and for every llama.cpp file type on the tiny demo with 6 and 8 experts.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from release.gguf import tiers as T
from release.gguf.mixture import tensor_types
from release.gguf.names import expected_hparams, expected_tensors
from release.plan import plan_artifacts
from release.spec.load import load_release

GIB = 1024**3
TOLERANCE = 0.03  # planned vs built, every tier
FULL_WIDTH_TIERS = ["Q8_0", "Q6_K", "Q4_K_M", "CD-Q5", "CD-Q3"]
# With 8 experts llama.cpp's mixture raises attn_k/attn_v/attn_output (and IQ3_M's ffn_down): one file type
# of every branch that reads n_expert == 8.
EIGHT_EXPERT_FTYPES = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q6_K", "IQ2_M", "IQ3_M", "IQ4_XS"]


def _planned_vs_built(release, out: Path) -> dict[str, tuple[int, int]]:
    reg = plan_artifacts(release, estimates=False)
    rows: dict[str, tuple[int, int]] = {}
    for a in reg:
        if a.kind == "gguf" and a.facts.get("size") and a.files[0].path.endswith(".gguf") \
                and a.id != "gguf:imatrix":
            rows[a.id] = (a.facts["size"], (out / a.files[0].path).stat().st_size)
    return rows


def _assert_within(rows: dict[str, tuple[int, int]]) -> None:
    errors = {aid: planned / built - 1 for aid, (planned, built) in rows.items()}
    bad = {aid: f"{100 * e:+.2f}%" for aid, e in errors.items() if abs(e) > TOLERANCE}
    assert not bad, f"planned size off by more than {TOLERANCE:.0%}: {bad}"


def _built_types(path: Path) -> dict[str, str]:
    from release.gguf.inspect import read_tensors

    rows, _ = read_tensors([path])
    return {name: typ for name, typ, _ne0, _n in rows}


def _assert_types(release, out: Path, tiers: list[str]) -> None:
    from release.gguf.checks import release_tensors, tier_recipe

    g = release.definition.gguf
    tensors = release_tensors(release)
    hp = expected_hparams(release.base_config, num_experts=release.drop_map.kept_count)
    assert tensors is not None and hp is not None
    for tier in tiers:
        recipe = T.TierRecipe(tier, tier) if tier == g.baseline else tier_recipe(release, tier)
        planned = tensor_types(tensors, recipe, hp, has_imatrix=bool(g.imatrix))
        built = _built_types(out / T.gguf_filename(g.prefix, tier))
        wrong = {n: (planned.get(n), t) for n, t in built.items() if planned.get(n) != t}
        assert not wrong, f"{tier}: planned ≠ built type (planned, built): {wrong}"
        assert set(planned) == set(built)


# ---- without llama.cpp ---------------------------------------------------------------------------

def test_block_table_matches_gguf():
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    for name, blocks in T.GGML_BLOCKS.items():
        assert GGML_QUANT_SIZES[GGMLQuantizationType[name.upper()]] == blocks, name


def test_v4_plan_matches_the_published_98e_files():
    """The published 98e v4 files, built with mainline llama.cpp: F16 37.0 GiB, Q6_K 16.5 GiB (issue 13;
    sizes shown in GiB). Before the per-tensor estimate: 40.89 GB and 18.38 GB, vision tower included."""
    reg = plan_artifacts(load_release("v4"), estimates=False)
    for aid, published_gib in (("gguf:F16", 37.0), ("gguf:Q6_K", 16.5)):
        planned = reg[aid].facts["size"]
        assert abs(planned / (published_gib * GIB) - 1) < 0.01, (aid, planned / GIB)


def test_v4_tiers_follow_llama_cpp_rules():
    """Spot checks at the 26B's widths: 704-wide expert down projections fall back, mixtures bump layers."""
    rel = load_release("v4")
    tensors = expected_tensors(rel.base_config, num_experts=98)
    hp = expected_hparams(rel.base_config, num_experts=98)
    assert hp is not None and (hp.n_expert, hp.n_layer, hp.n_gqa) == (98, 30, 2)
    q6 = tensor_types(tensors, T.TierRecipe("Q6_K", "Q6_K"), hp, has_imatrix=True)
    assert q6["blk.7.ffn_gate_up_exps.weight"] == "q6_k"
    assert q6["blk.7.ffn_down_exps.weight"] == "q8_0"  # 704 % 256: Q6_K falls back to Q8_0
    assert q6["blk.7.ffn_down.weight"] == "q8_0"  # 2112 % 256
    assert q6["token_embd.weight"] == "q6_k"  # tied: the output rule
    assert q6["blk.7.ffn_gate_inp.weight"] == "f32"
    q4 = tensor_types(tensors, T.TierRecipe("Q4_K_M", "Q4_K_M"), hp, has_imatrix=True)
    # use_more_bits(i, 30): layers < 3, ≥ 26, and every third from 5 get Q6_K on ffn_down → Q8_0 at 704
    more = {i for i in range(30) if q4[f"blk.{i}.ffn_down_exps.weight"] == "q8_0"}
    assert more == {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 26, 27, 28, 29}
    assert {q4[f"blk.{i}.ffn_down_exps.weight"] for i in set(range(30)) - more} == {"q5_0"}


# ---- built with llama.cpp ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_built(tmp_path_factory):
    from release.demo import generate_tiny_gemma4
    from release.gguf.build import build_gguf
    from release.prune import prune_checkpoint
    from release.toolchain import ensure_toolchain

    ensure_toolchain()
    release = load_release("demo")
    root = tmp_path_factory.mktemp("estimate-demo")
    generate_tiny_gemma4(root / "base")
    prune_checkpoint(root / "base", release.drop_map, root / "pruned")
    build_gguf(release, root / "pruned", root / "gguf", jobs=2)
    return release, root


@pytest.fixture(scope="module")
def full_width_built(tmp_path_factory):
    from gguf_helpers import demo_pipeline_for, generate_full_width

    from release.gguf.build import build_gguf
    from release.prune import prune_checkpoint
    from release.toolchain import ensure_toolchain

    ensure_toolchain()
    root = tmp_path_factory.mktemp("estimate-wide")
    generate_full_width(root / "base")
    # The file types' rules are checked one by one on the tiny demo (test_every_file_type_on_the_demo);
    # here the 26B's row widths: fallbacks on 704/2112-wide rows, expert overrides, the tied embedding.
    release = load_release(str(demo_pipeline_for(root / "base", root / "pipeline", tiers=FULL_WIDTH_TIERS,
                                                 imatrix=False)))
    prune_checkpoint(root / "base", release.drop_map, root / "pruned")
    build_gguf(release, root / "pruned", root / "gguf", jobs=2)
    return release, root


@pytest.mark.slow
def test_demo_planned_sizes_within_3_percent(demo_built):
    release, root = demo_built
    rows = _planned_vs_built(release, root / "gguf")
    assert set(rows) == {f"gguf:{t}" for t in ["F16", *release.definition.gguf.tiers]}
    _assert_within(rows)


@pytest.mark.slow
def test_demo_planned_types_are_the_built_types(demo_built):
    release, root = demo_built
    _assert_types(release, root / "gguf", ["F16", *release.definition.gguf.tiers])


@pytest.mark.slow
def test_full_width_planned_sizes_within_3_percent(full_width_built):
    release, root = full_width_built
    assert release.base_config["text_config"]["moe_intermediate_size"] == 704
    rows = _planned_vs_built(release, root / "gguf")
    assert set(rows) == {f"gguf:{t}" for t in ["F16", *FULL_WIDTH_TIERS]}
    _assert_within(rows)
    _assert_types(release, root / "gguf", ["F16", *FULL_WIDTH_TIERS])


@pytest.mark.slow
@pytest.mark.parametrize("experts", [6, 8])  # 8: the quantizer's rules for 8-expert models apply
def test_every_file_type_on_the_demo(demo_built, tmp_path, experts):
    """Every llama.cpp file type quantized from the demo's F16 (with its imatrix): planned types = built."""
    from release.gguf.convert import convert
    from release.gguf.imatrix import compute_imatrix
    from release.gguf.quantize import QuantizeJob, quantize
    from release.toolchain import ensure_toolchain

    release, root = demo_built
    g = release.definition.gguf
    if experts == release.drop_map.kept_count:
        src = root / "gguf" / T.gguf_filename(g.prefix, "F16")
        imatrix = root / "gguf" / f"{g.prefix}-imatrix.gguf"
    else:
        src, imatrix = tmp_path / "base-F16.gguf", tmp_path / "base-imatrix.gguf"
        convert(ensure_toolchain(), root / "base", src, outtype="F16", model_name="base")
        compute_imatrix(src, release.path(g.imatrix), imatrix, chunks=g.imatrix_chunks, threads=2)
    tensors = expected_tensors(release.base_config, num_experts=experts)
    hp = expected_hparams(release.base_config, num_experts=experts)
    assert tensors is not None and hp is not None and hp.n_expert == experts
    wrong: dict[str, dict[str, tuple[str | None, str]]] = {}
    ftypes = [f for f in T.FTYPES if f != "F32"] if experts != 8 else EIGHT_EXPERT_FTYPES
    for ftype in ftypes:
        out = tmp_path / f"{ftype}.gguf"
        quantize(QuantizeJob(ftype, str(src), str(out), ftype, None, None, (), str(imatrix), None, 2))
        planned = tensor_types(tensors, T.TierRecipe(ftype, ftype), hp, has_imatrix=True)
        built = _built_types(out)
        diff = {n: (planned.get(n), t) for n, t in built.items() if planned.get(n) != t}
        if diff:
            wrong[ftype] = diff
        out.unlink()
    assert not wrong, f"planned ≠ built types (planned, built): {wrong}"


def test_sizes_need_no_gguf_package_at_plan_time():
    """`plan` runs without the optional gguf extra: the estimator imports nothing from it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['gguf'] = None\n"
            "from release.plan import plan_artifacts\nfrom release.spec.load import load_release\n"
            "print(plan_artifacts(load_release('v4'), estimates=False)['gguf:Q6_K'].facts['size'])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1], env={**os.environ, "PYTHONPATH": "."})
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) > 0


@pytest.mark.parametrize(("key", "value", "field", "says"), [
    ("head_dim", None, "text_config.head_dim", "missing"),
    ("num_key_value_heads", "8", "text_config", "num_key_value_heads = '8' is not a count"),
    ("moe_intermediate_size", 704.5, "text_config.moe_intermediate_size", "must be an integer"),
])
def test_config_the_tensor_list_cannot_read_is_one_clear_error(tmp_path, key, value, field, says):
    """`check` names the base config and the key (exit 2), `plan` falls back instead of a traceback."""
    import json
    import shutil
    import subprocess
    import sys

    folder = tmp_path / "v4"
    shutil.copytree(Path(__file__).resolve().parents[1] / "pipelines" / "v4", folder)
    toml = (folder / "release.toml").read_text()
    (folder / "release.toml").write_text(toml.replace('siblings = ["v3", "v5-coder"]\n', ""))
    cfg = json.loads((folder / "base-config.json").read_text())
    if value is None:
        del cfg["text_config"][key]
    else:
        cfg["text_config"][key] = value
    (folder / "base-config.json").write_text(json.dumps(cfg))
    res = subprocess.run([sys.executable, "-m", "release", "check", str(folder)], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 2, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    assert f"v4/base-config.json: {field}: " in res.stderr and says in res.stderr
