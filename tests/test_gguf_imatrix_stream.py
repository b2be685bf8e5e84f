"""The importance matrix computed layer by layer from the BF16 checkpoint (release/gguf/imatrix_stream.py)
against llama.cpp's own (release/gguf/imatrix.compute_imatrix, which llama-imatrix writes bit for bit):
the same entries, shapes, chunks and token counts; statistics that agree; and — what matters — every tier
quantized with it has the KL divergence of the same tier quantized with llama.cpp's matrix, within 3 %,
on the demo and on a wider generated model, with the same calibration text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf_helpers import WIDER, demo_pipeline_for, generate_gemma4

from release.errors import InputError
from release.spec.load import load_release

ROOT = Path(__file__).resolve().parents[1]
KLD_TOLERANCE = 0.03


def _prepared(release_folder: Path | None, base: Path, root: Path, *, max_tokens: int | None = None) -> dict:
    """The pruned checkpoint, its F16 conversion and the quality reference (as prepare makes them), on at most
    `max_tokens` of the held-out text."""
    from release.gguf.build import GgufJob, baseline_source, convert_baseline
    from release.prune import prune_checkpoint
    from release.quality.gguf import make_reference
    from release.spec.heldout import read_heldout
    from release.toolchain import ensure_toolchain

    ensure_toolchain()
    release = load_release(str(release_folder) if release_folder else "demo")
    prune_checkpoint(base, release.drop_map, root / "pruned")
    job = GgufJob(release, root / "gguf", log=lambda _m: None)
    f16 = baseline_source(root, convert_baseline(job, root / "pruned"))
    q = release.quality.model_copy(update={"max_tokens": max_tokens or release.quality.max_tokens})
    make_reference(f16, read_heldout(release), q, root / "reference", reference="gguf:F16", shown=q.text)
    return {"release": release, "pruned": root / "pruned", "f16": f16, "reference": root / "reference",
            "root": root}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from release.demo import generate_tiny_gemma4

    root = tmp_path_factory.mktemp("imatrix-demo")
    return _prepared(None, generate_tiny_gemma4(root / "base"), root)


@pytest.fixture(scope="module")
def wider(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("imatrix-wider")
    base = generate_gemma4(root / "base", WIDER, seed=7)
    return _prepared(demo_pipeline_for(base, root / "pipeline"), base, root, max_tokens=1024)


def _both(p: dict, calibration: Path, chunks: int) -> tuple[Path, Path]:
    from release.gguf.imatrix import compute_imatrix
    from release.gguf.imatrix_stream import stream_imatrix

    streamed, own = p["root"] / f"streamed-{calibration.stem}.gguf", p["root"] / f"llama-{calibration.stem}.gguf"
    if not streamed.is_file():
        stream_imatrix(p["pruned"], p["f16"], calibration, streamed, chunks=chunks)
    if not own.is_file():
        compute_imatrix(p["f16"], calibration, own, chunks=chunks, threads=2)
    return streamed, own


def _tensors(path: Path) -> dict[str, np.ndarray]:
    import gguf

    return {t.name: np.asarray(t.data, dtype=np.float64).reshape(-1) for t in gguf.GGUFReader(str(path)).tensors}


def test_streamed_matrix_has_llama_cpps_entries_chunks_and_counts(demo: dict) -> None:
    import gguf

    from release.gguf.imatrix import load_imatrix

    release = demo["release"]
    streamed, own = _both(demo, release.path(release.definition.gguf.imatrix), release.definition.gguf.imatrix_chunks)
    ours, theirs = gguf.GGUFReader(str(streamed)), gguf.GGUFReader(str(own))
    assert [(t.name, list(t.shape)) for t in ours.tensors] == [(t.name, list(t.shape)) for t in theirs.tensors]
    for key in ("general.type", "imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size"):
        assert ours.fields[key].contents() == theirs.fields[key].contents(), key
    assert "general.architecture" not in ours.fields
    a, b = _tensors(streamed), _tensors(own)
    top_k = release.family.top_k(release.base_config)
    tokens = load_imatrix(streamed)[1]["chunks"] * ours.fields["imatrix.chunk_size"].contents()
    for name in a:
        if name.endswith(".counts"):
            # Every token reaches every dense weight and top-k experts: the totals are exact. Which expert a
            # token reaches can differ where two router logits tie within float rounding (F16 weights in
            # llama.cpp, BF16 here): at most a few tokens per layer.
            per_token = top_k if "_exps." in name else 1
            assert a[name].sum() == b[name].sum() == tokens * per_token
            assert np.abs(a[name] - b[name]).sum() <= 0.05 * b[name].sum(), name
        else:
            layer = int(name.split(".")[1])
            corr = np.corrcoef(np.log(a[name]), np.log(b[name]))[0, 1]
            assert corr > 0.99, (name, corr)
            if layer == 0:  # before any routing difference: the same numbers up to F16 vs BF16 arithmetic
                assert np.abs(a[name] - b[name]).max() <= 2e-3 * np.abs(b[name]).max(), name


def _kld_pairs(p: dict, calibration: Path, chunks: int) -> dict[str, tuple[float, float]]:
    """Every tier of the release quantized with each matrix, measured against the F16 reference."""
    from release.gguf.build import GgufJob, quantize_tiers
    from release.quality.gguf import measure_tier

    streamed, own = _both(p, calibration, chunks)
    figures: dict[str, list[float]] = {}
    for matrix in (streamed, own):
        out = p["root"] / f"tiers-{matrix.stem}"
        out.mkdir()
        job = GgufJob(p["release"], out, log=lambda _m: None)
        for art in quantize_tiers(job, list(p["release"].definition.gguf.tiers), p["f16"], matrix, jobs=2):
            first = out / sorted(f.path for f in art.files)[0]
            figures.setdefault(art.id, []).append(measure_tier(first, p["reference"]).kld_mean)
            for f in art.files:
                (out / f.path).unlink()
    return {tier: (k[0], k[1]) for tier, k in figures.items()}


def _assert_within(pairs: dict[str, tuple[float, float]]) -> None:
    off = {t: f"{s:.5f} vs {o:.5f}" for t, (s, o) in pairs.items() if abs(s / o - 1) > KLD_TOLERANCE}
    assert not off, f"tiers whose KLD with the streamed imatrix is more than 3 % off llama.cpp's: {off}"


@pytest.mark.slow
def test_demo_tiers_quantized_with_it_have_llama_cpps_kld(demo: dict) -> None:
    release = demo["release"]
    pairs = _kld_pairs(demo, release.path(release.definition.gguf.imatrix), release.definition.gguf.imatrix_chunks)
    assert set(pairs) == {f"gguf:{t}" for t in release.definition.gguf.tiers}
    _assert_within(pairs)


@pytest.mark.slow
def test_wider_model_tiers_quantized_with_it_have_llama_cpps_kld(wider: dict, tmp_path: Path) -> None:
    """Hidden 512 at the 26B's FFN and head widths; a calibration text of four 512-token chunks; measured on
    two windows of held-out text."""
    calibration = tmp_path / "calibration.txt"
    calibration.write_text((ROOT / "README.md").read_text(encoding="utf-8"), encoding="utf-8")
    pairs = _kld_pairs(wider, calibration, 4)
    assert wider["release"].base_config["text_config"]["hidden_size"] == 512
    _assert_within(pairs)


def test_names_follow_the_baseline_layout() -> None:
    """A fused gate+up weight feeds both halves of a split pair; a fused qkv takes q's input once."""
    from release.gguf.imatrix_stream import GgufNames

    split = {"blk.0.ffn_gate_exps.weight": (8, 4, 2), "blk.0.ffn_up_exps.weight": (8, 4, 2),
             "blk.0.attn_qkv.weight": (8, 24), "blk.0.ffn_down_exps.weight": (4, 8, 2)}
    names = GgufNames("qwen3moe", split, 1)
    assert names.resolve("model.layers.0.mlp.experts.gate_up_proj") == ["blk.0.ffn_gate_exps.weight",
                                                                        "blk.0.ffn_up_exps.weight"]
    assert names.resolve("model.layers.0.mlp.experts.down_proj") == ["blk.0.ffn_down_exps.weight"]
    assert names.resolve("model.layers.0.self_attn.q_proj.weight") == ["blk.0.attn_qkv.weight"]
    assert names.resolve("model.layers.0.self_attn.k_proj.weight") == []
    assert names.matrices() == sorted(split)
    fused = GgufNames("gemma4", {"blk.3.ffn_gate_up_exps.weight": (8, 4, 2), "blk.3.attn_q.weight": (8, 8)}, 4)
    assert fused.resolve("model.language_model.layers.3.experts.gate_up_proj") == ["blk.3.ffn_gate_up_exps.weight"]
    assert fused.resolve("model.language_model.layers.3.self_attn.q_proj.weight") == ["blk.3.attn_q.weight"]


def test_bad_inputs_name_the_file(demo: dict, tmp_path: Path) -> None:
    from release.gguf.imatrix_stream import stream_imatrix

    out = tmp_path / "out.gguf"
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a gguf file at all")
    calibration = tmp_path / "calibration.txt"
    calibration.write_text("text " * 400)
    with pytest.raises(InputError) as err:
        stream_imatrix(demo["pruned"], junk, calibration, out)
    assert str(junk) in str(err.value)
    with pytest.raises(InputError) as err:
        stream_imatrix(demo["pruned"], demo["f16"], tmp_path / "missing.txt", out)
    assert "missing.txt" in str(err.value)
    calibration.write_text("tiny")
    with pytest.raises(InputError, match="tokens"):
        stream_imatrix(demo["pruned"], demo["f16"], calibration, out)
    assert not out.exists()
