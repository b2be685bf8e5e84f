"""The GGUF step end to end on the demo release, with llama.cpp's real converter and quantizer.

One session-scoped build (demo base → pruned → F16 → imatrix → 7 tiers) feeds most tests; each tier is
loaded by libllama and its next-token distributions compared with the F16 file's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from release.errors import InputError
from release.gguf import tiers as T
from release.gguf.build import build_gguf, ollama_params_json, plan_sweep
from release.gguf.checks import recipe_problems
from release.gguf.convert import convert
from release.gguf.inspect import file_facts, read_tensors
from release.gguf.names import expected_tensors, group_of
from release.spec.load import load_release
from release.toolchain import ensure_toolchain

pytestmark = pytest.mark.slow

PROMPT = ("The quick brown fox jumps over the lazy dog. A mixture of experts routes every token to a few "
          "experts. Hello! How are you today?")

# Per tier: max mean KL(F16 ‖ tier) and min mean correlation of the centred logits, over the prompt's
# positions. Random weights make the tiny model very sensitive (notes: Q8_0 KL 0.088 vs transformers), so
# these are plumbing checks, not quality: measured KL 0.010 (Q8_0) … 0.054 (CD-Q3), correlation 0.91 … 0.49;
# unrelated distributions (the same file one position off) correlate at ≈0.1.
TOLERANCE = {"Q8_0": (0.03, 0.85), "Q6_K_L": (0.06, 0.7), "Q6_K": (0.06, 0.7), "CD-Q5": (0.07, 0.65),
             "Q4_K_M": (0.10, 0.5), "IQ4_XS": (0.12, 0.45), "CD-Q3": (0.15, 0.4)}
UNRELATED_CORR = 0.25


@pytest.fixture(scope="session")
def demo_release():
    return load_release("demo")


@pytest.fixture(scope="session")
def pruned_demo(tmp_path_factory, demo_release) -> Path:
    from release.demo import generate_tiny_gemma4
    from release.prune import prune_checkpoint

    root = tmp_path_factory.mktemp("gguf-demo")
    generate_tiny_gemma4(root / "base")
    prune_checkpoint(root / "base", demo_release.drop_map, root / "pruned")
    return root / "pruned"


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory, demo_release, pruned_demo):
    """Every GGUF artifact of the demo release (F16 conversion cached for the session)."""
    ensure_toolchain()
    dist = tmp_path_factory.mktemp("gguf-dist")
    messages: list[str] = []
    arts = build_gguf(demo_release, pruned_demo, dist / "gguf", jobs=2, log=messages.append)
    return dist / "gguf", {a.id: a for a in arts}, messages


def _logits(path: Path, text: str = PROMPT) -> np.ndarray:
    from release.gguf.runtime import Runner

    with Runner(path, n_ctx=128) as r:
        return r.logits(r.tokenize(text)).astype(np.float64)


def _probs(path: Path, text: str = PROMPT) -> np.ndarray:
    return _softmax(_logits(path, text))


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    return float(((a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))).mean())


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    return float((p * (np.log(p) - np.log(q))).sum(axis=-1).mean())


def test_every_tier_built_with_facts(demo_build, demo_release):
    out, arts, _ = demo_build
    g = demo_release.definition.gguf
    want = {f"gguf:{t}" for t in g.tiers} | {"gguf:F16", "gguf:imatrix", "gguf:ollama-files"}
    assert set(arts) == want
    for tier in g.tiers:
        a = arts[f"gguf:{tier}"]
        assert [f.path for f in a.files] == [f"{g.prefix}-{tier}.gguf"]
        assert (out / a.files[0].path).stat().st_size == a.files[0].size
        assert a.facts["checks"]["chat_template"] is True
        assert a.facts["checks"]["expert_count"] == 6 and a.facts["checks"]["expert_count_ok"]
        assert a.facts["checks"]["expert_used_count"] == 2
        assert a.facts["metadata"]["quantize.imatrix.entries_count"] > 0
        assert 3.5 < a.facts["bpw"] < 9.5
        assert a.recipe["imatrix"] is True
    # bigger tiers really are bigger
    size = {t: arts[f"gguf:{t}"].size for t in g.tiers}
    assert size["Q8_0"] > size["Q6_K_L"] > size["Q6_K"] > size["Q4_K_M"] > size["IQ4_XS"]
    assert arts["gguf:F16"].facts["metadata"]["general.name"] == g.model_name


def test_tiers_close_to_f16(demo_build):
    out, arts, _ = demo_build
    ref = _logits(out / arts["gguf:F16"].files[0].path)
    kls = {}
    for tier, (kl_max, corr_min) in TOLERANCE.items():
        lg = _logits(out / arts[f"gguf:{tier}"].files[0].path)
        assert lg.shape == ref.shape
        kls[tier] = _kl(_softmax(ref), _softmax(lg))
        assert kls[tier] < kl_max, (tier, kls[tier])
        assert _corr(ref, lg) > corr_min, (tier, _corr(ref, lg))
        # control: the same logits one position off are unrelated
        assert _corr(ref[1:], lg[:-1]) < UNRELATED_CORR
    assert kls["Q8_0"] < kls["Q4_K_M"] < kls["CD-Q3"] * 1.5
    assert kls["Q8_0"] > 0  # the tiers are really quantized


def test_cd_recipe_histogram_shows_overrides_and_fallbacks(demo_build):
    out, arts, messages = demo_build
    a = arts["gguf:CD-Q3"]
    rows, _ = read_tensors([out / a.files[0].path])
    types = {name: typ for name, typ, _, _ in rows}
    # ordered overrides, first match wins: layer 0's experts at q5_k, other experts' gate_up at q4_k
    assert types["blk.0.ffn_gate_up_exps.weight"] == "q5_k"
    for n in (1, 2, 3):
        assert types[f"blk.{n}.ffn_gate_up_exps.weight"] == "q4_k"
    for n in range(4):
        assert types[f"blk.{n}.attn_q.weight"] == "q3_k"
        assert types[f"blk.{n}.attn_output.weight"] == "q3_k"
    # q5_k on blk.0.ffn_down_exps (rows 192 wide) falls back to q5_1, llama.cpp's G4 rule
    assert types["blk.0.ffn_down_exps.weight"] == "q5_1"
    hist = a.facts["histogram"]
    assert hist["ffn_gate_up_exps"] == {"q4_k": 3 * 256 * 384 * 6, "q5_k": 256 * 384 * 6}
    assert hist["ffn_down_exps"]["q5_1"] == 192 * 256 * 6
    assert set(hist["attn"]) == {"q3_k"}
    fb = [f for f in a.facts["fallbacks"] if f["explicit"]]
    assert fb == [{"tensor": "blk.N.ffn_down_exps.weight", "requested": "q5_k", "actual": "q5_1", "ne0": 192,
                   "explicit": True, "count": 1}]
    assert any("CD-Q3" in m and "q5_1" in m for m in messages)
    assert a.facts["warnings"]
    # CD-Q5 asks q6_k for every expert tensor; ffn_down_exps falls back to q8_0 in every layer
    h5 = arts["gguf:CD-Q5"].facts["histogram"]
    assert h5["ffn_gate_up_exps"] == {"q6_k": 4 * 256 * 384 * 6}
    assert h5["ffn_down_exps"] == {"q8_0": 4 * 192 * 256 * 6}
    assert h5["token_embd"] == {"q8_0": 256 * 1024}
    # per-group bits per weight follow the histogram
    assert arts["gguf:CD-Q5"].facts["group_bpw"]["ffn_down_exps"] == 8.5


def test_large_variant_keeps_embeddings_q8_0(demo_build):
    _, arts, _ = demo_build
    assert arts["gguf:Q6_K_L"].facts["histogram"]["token_embd"] == {"q8_0": 256 * 1024}
    assert arts["gguf:Q6_K"].facts["histogram"]["token_embd"] != {"q8_0": 256 * 1024}


def test_imatrix_file_format(demo_build):
    import gguf

    out, arts, _ = demo_build
    a = arts["gguf:imatrix"]
    assert a.files[0].path == "tiny-gemma4-6e-imatrix.gguf"
    r = gguf.GGUFReader(str(out / a.files[0].path))
    assert r.fields["general.type"].contents() == "imatrix"
    assert r.fields["imatrix.datasets"].contents() == ["calibration.txt"]
    chunks = r.fields["imatrix.chunk_count"].contents()
    size = r.fields["imatrix.chunk_size"].contents()
    assert chunks >= 1 and size >= 16
    t = {x.name: x for x in r.tensors}
    for n in range(4):
        s = t[f"blk.{n}.ffn_gate_up_exps.weight.in_sum2"]
        c = t[f"blk.{n}.ffn_gate_up_exps.weight.counts"]
        assert list(s.shape) == [256, 6] and list(c.shape) == [1, 6]
        # every token is routed to top-2 experts: the counts add up to tokens × 2
        assert float(np.asarray(c.data).sum()) == chunks * size * 2
        assert list(t[f"blk.{n}.ffn_down_exps.weight.in_sum2"].shape) == [192, 6]
        dense = t[f"blk.{n}.ffn_down.weight.counts"]
        assert float(np.asarray(dense.data).sum()) == chunks * size
    assert "blk.3.attn_v.weight.in_sum2" not in t  # k_eq_v full-attention layer has no attn_v


def test_expected_tensor_names_match_converted_file(demo_build, demo_release):
    out, arts, _ = demo_build
    rows, _ = read_tensors([out / arts["gguf:F16"].files[0].path])
    got = {name: (ne0, n) for name, _, ne0, n in rows}
    exp = expected_tensors(demo_release.base_config, num_experts=demo_release.drop_map.kept_count)
    assert exp is not None
    assert {t.name: (t.ne0, t.n_elements) for t in exp} == got
    assert {group_of(n) for n in got} == {"ffn_gate_up_exps", "ffn_down_exps", "attn", "ffn_dense",
                                           "token_embd", "other"}


def test_ollama_files(demo_build, demo_release):
    out, arts, _ = demo_build
    a = arts["gguf:ollama-files"]
    assert [f.path for f in a.files] == ["template", "params"]
    o = demo_release.definition.ollama
    assert (out / "template").read_bytes() == demo_release.path(o.template).read_bytes()
    params = json.loads((out / "params").read_bytes())
    assert params["stop"] == ["<turn|>", "<|tool_response>"]
    assert params["temperature"] == 0.6 and params["num_ctx"] == 4096
    assert (out / "params").read_bytes() == ollama_params_json(dict(o.parameters))


def test_f32_conversion_matches_transformers(pruned_demo, tmp_path):
    import torch
    from transformers import Gemma4ForConditionalGeneration

    from release.gguf.runtime import Runner

    f32 = tmp_path / "f32.gguf"
    convert(ensure_toolchain(), pruned_demo, f32, outtype="F32", model_name="f32")
    with Runner(f32, n_ctx=128) as r:
        tokens = r.tokenize(PROMPT)
        gg = r.logits(tokens).astype(np.float64)
    model = Gemma4ForConditionalGeneration.from_pretrained(pruned_demo, dtype=torch.float32).eval()
    with torch.no_grad():
        hf = model(input_ids=torch.tensor([tokens])).logits[0].double().numpy()
    assert hf.shape == gg.shape
    p, q = _softmax(hf), _softmax(gg)
    kl = _kl(p, q)
    top1 = float((p.argmax(-1) == q.argmax(-1)).mean())
    assert kl < 1e-3, kl  # notes: 2.5e-5
    assert top1 >= 0.95, top1


def test_split_above_limit_loads_like_the_single_file(tmp_path, demo_release, pruned_demo, demo_build):
    out, arts, _ = demo_build
    rel_dir = tmp_path / "demo"
    shutil.copytree(demo_release.dir, rel_dir, ignore=shutil.ignore_patterns("base", "dist"))
    toml = (rel_dir / "release.toml").read_text()
    toml = toml.replace("recommended = [", "split_size_gb = 0.002\nrecommended = [", 1)
    (rel_dir / "release.toml").write_text(toml)
    rel = load_release(str(rel_dir))
    split_out = tmp_path / "dist" / "gguf"
    arts2 = {a.id: a for a in build_gguf(rel, pruned_demo, split_out, only={"Q8_0", "F16"})}
    a = arts2["gguf:Q8_0"]
    names = [f.path for f in a.files]
    n = len(names)
    assert n >= 3  # 6.8 MB in ≤2 MB shards
    assert names == [f"tiny-gemma4-6e-Q8_0/tiny-gemma4-6e-Q8_0-{i:05d}-of-{n:05d}.gguf" for i in range(1, n + 1)]
    assert all(f.size <= 2_000_000 + 200_000 for f in a.files)
    assert not (split_out / "tiny-gemma4-6e-Q8_0.gguf").exists()
    assert a.facts["split"] is True
    import gguf

    first = gguf.GGUFReader(str(split_out / names[0]))
    assert first.fields["split.count"].contents() == n
    # the baseline F16 (12.7 MB) is split too, but quantized from the unsplit work copy
    assert len(arts2["gguf:F16"].files) > 1
    # libllama loads the split (given the first shard) and computes exactly what the single file does
    single = _probs(out / arts["gguf:Q8_0"].files[0].path)
    split = _probs(split_out / names[0])
    assert np.array_equal(single, split)
    # the histogram is read across all shards
    assert a.facts["histogram"] == arts["gguf:Q8_0"].facts["histogram"]


def test_baseline_and_imatrix_are_restored_not_redone(tmp_path, demo_release):
    """The pipeline keeps the conversion and the imatrix as artifacts of their own: a second build of a
    tier that needs them restores both (state.json), and building one tier never converts twice."""
    from release.pipeline import Context, Options, run_build

    def build(*only: str) -> list[str]:
        ctx = Context(demo_release, Options(dist_root=tmp_path, only=list(only), quiet=True))
        return run_build(ctx)

    first = build("gguf:Q4_K_M")
    # (a tier built is a tier measured: its quality artifacts come along)
    assert [i for i in first if not i.startswith("quality:")] == ["bf16", "gguf:F16", "gguf:imatrix", "gguf:Q4_K_M"]
    imatrix = tmp_path / "demo" / "gguf" / "tiny-gemma4-6e-imatrix.gguf"
    before = imatrix.stat().st_mtime_ns
    assert build("gguf:Q8_0") == ["gguf:Q8_0", "quality:Q8_0"]
    assert imatrix.stat().st_mtime_ns == before
    assert build("gguf:Q4_K_M", "gguf:Q8_0") == []
    assert not list((tmp_path / "demo" / "gguf").glob(".*partial*"))


def test_bad_recipe_refused_before_conversion(tmp_path, demo_release):
    """build_gguf re-checks the recipe itself (a release loaded before a pipeline edit is not trusted)."""
    import dataclasses

    d = demo_release.definition.model_copy(deep=True)
    d.gguf.recipes["CD-Q3"].overrides[1] = ("ffn_gate_up_exp\\.weight", "q4_k")
    bad = dataclasses.replace(demo_release, definition=d)
    out = tmp_path / "out"
    with pytest.raises(InputError) as exc:
        build_gguf(bad, tmp_path / "no-such-checkpoint", out)
    assert "demo/release.toml: gguf.recipes.CD-Q3.overrides[1]" in str(exc.value)
    assert "matches no tensor" in str(exc.value)
    assert not out.exists()


def test_file_facts_flags_unexplained_type(demo_build):
    out, arts, _ = demo_build
    path = out / arts["gguf:Q8_0"].files[0].path
    facts = file_facts([path], requested={"blk.0.attn_q.weight": "q4_k"})
    assert facts["fallbacks"][0]["unexplained"] is True


def test_sweep_plan_respects_memory_budget():
    p = plan_sweep(7, jobs=4, max_memory=5_000_000_000, per_job=2_400_000_000)
    assert p.workers == 2
    p = plan_sweep(7, jobs=4, max_memory=1_000_000_000, per_job=2_400_000_000)
    assert p.workers == 1
    p = plan_sweep(1, jobs=4, max_memory=None, per_job=1)
    assert p.workers == 1


def test_v4_expected_tensors_and_recipes():
    rel = load_release("v4")
    exp = expected_tensors(rel.base_config, num_experts=rel.drop_map.kept_count)
    assert exp is not None
    total = sum(t.n_elements for t in exp)
    assert 19.5e9 < total < 20.3e9  # notes: ≈19.9B for 98 experts
    assert recipe_problems(rel) == []
    ne0 = {t.name: t.ne0 for t in exp}
    assert ne0["blk.0.ffn_down_exps.weight"] == 704
    assert T.fallback_type("q6_k", 704) == "q8_0"
    assert T.fallback_type("q4_k", 2816) == "q4_k"


def test_imatrix_bit_identical_to_llama_imatrix(demo_build, tmp_path):
    """Optional: with a `llama-imatrix` of the same llama.cpp commit (env LLAMA_IMATRIX or on PATH; the
    project does not build it), our in-process collector writes the same entries, counts and sums."""
    import os
    import subprocess

    import gguf

    from release.gguf.imatrix import compute_imatrix

    binary = os.environ.get("LLAMA_IMATRIX") or shutil.which("llama-imatrix")
    if not binary:
        pytest.skip("no llama-imatrix binary (set LLAMA_IMATRIX)")
    out, arts, _ = demo_build
    model = out / arts["gguf:F16"].files[0].path
    calib = tmp_path / "calib.txt"
    calib.write_text((Path(__file__).parents[1] / "README.md").read_text())
    ours, ref = tmp_path / "ours.gguf", tmp_path / "ref.gguf"
    compute_imatrix(model, calib, ours, chunks=4, n_ctx=128, threads=2)
    subprocess.run([binary, "-m", str(model), "-f", str(calib), "-o", str(ref), "-c", "128", "-b", "128",
                    "--chunks", "4", "-t", "2", "--no-ppl"], check=True, capture_output=True)
    a = {t.name: np.asarray(t.data).ravel() for t in gguf.GGUFReader(str(ours)).tensors}
    b = {t.name: np.asarray(t.data).ravel() for t in gguf.GGUFReader(str(ref)).tensors}
    assert list(a) == list(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), name
