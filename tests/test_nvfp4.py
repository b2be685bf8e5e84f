"""NVFP4A16 builder against compressed-tensors 0.20 as the oracle (docs/nvfp4.md §8).

Bit-exactness: for every module we wrote, compressed-tensors' own compressor, fed the *source* weight
and the global scale it derives from the fusion group's amax (groups defined here from module names,
independently of the builder's planner), must produce the same weight_packed / weight_scale bytes and
the same weight_global_scale. Decompression: compressed-tensors' dequantizer gives bf16 weights equal
to ours and within NVFP4's error of the source; every other tensor is byte-identical.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from compressed_tensors.compressors.nvfp4.base import NVFP4PackedCompressor
from compressed_tensors.quantization import QuantizationScheme
from compressed_tensors.quantization.quant_scheme import NVFP4A16
from compressed_tensors.quantization.utils import calculate_qparams, generate_gparam
from model_factory import make_checkpoint
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from release.errors import InputError, NotAvailable
from release.nvfp4 import numerics, quantize_checkpoint

SCHEME = QuantizationScheme(targets=["Linear"], **NVFP4A16)
SUFFIXES = ("weight_packed", "weight_scale", "weight_global_scale")


# -- helpers ---------------------------------------------------------------------------------------

def load_all(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def source_weight(src: dict[str, torch.Tensor], module: str) -> torch.Tensor:
    """The [out, in] weight a quantized module came from; fused 3-D experts sliced by hand."""
    if f"{module}.weight" in src:
        return src[f"{module}.weight"]
    m = re.fullmatch(r"(?P<c>.*\.experts)\.(?P<e>\d+)\.(?P<p>gate_proj|up_proj|down_proj)", module)
    assert m, module
    e = int(m["e"])
    if m["p"] == "down_proj":
        return src[f"{m['c']}.down_proj"][e]
    gate_up = src[f"{m['c']}.gate_up_proj"][e]
    half = gate_up.shape[0] // 2
    return gate_up[:half] if m["p"] == "gate_proj" else gate_up[half:]


def fusion_group(module: str) -> str:
    """vLLM's fused shards: q/k/v of one attention block, gate/up (w1/w3) of one MLP or expert."""
    module = re.sub(r"\.(q_proj|k_proj|v_proj)$", ".<qkv>", module)
    return re.sub(r"\.(gate_proj|up_proj|w1|w3)$", ".<gate_up>", module)


def oracle(weight: torch.Tensor, group_amax: torch.Tensor) -> dict[str, torch.Tensor]:
    """compressed-tensors 0.20 compressing `weight` with the group's global scale (docs/nvfp4.md §8 step 1)."""
    gs = generate_gparam(-group_amax.reshape(1), group_amax.reshape(1))
    blocks = weight.reshape(weight.shape[0], -1, 16)
    scale, _ = calculate_qparams(blocks.amin(-1), blocks.amax(-1), SCHEME.weights, global_scale=gs)
    out = NVFP4PackedCompressor.compress({"weight": weight, "weight_scale": scale, "weight_global_scale": gs},
                                         SCHEME)
    return {"weight_packed": out["weight_packed"], "weight_scale": out["weight_scale"],
            "weight_global_scale": gs}


def quantized_modules(out: dict[str, torch.Tensor]) -> list[str]:
    return sorted(n[: -len(".weight_packed")] for n in out if n.endswith(".weight_packed"))


def assert_bit_exact(src_dir: Path, out_dir: Path) -> int:
    src, out = load_all(src_dir), load_all(out_dir)
    modules = quantized_modules(out)
    groups: dict[str, list[str]] = {}
    for m in modules:
        groups.setdefault(fusion_group(m), []).append(m)
    for members in groups.values():
        amax = torch.stack([source_weight(src, m).abs().amax() for m in members]).amax()
        for m in members:
            want = oracle(source_weight(src, m), amax)
            for s in SUFFIXES:
                got = out[f"{m}.{s}"]
                assert got.dtype == want[s].dtype and got.shape == want[s].shape, (m, s)
                assert torch.equal(got.view(torch.uint8), want[s].view(torch.uint8)), f"{m}.{s} differs"
    return len(modules)


def rebuild(src_dir: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """A single-file copy of `src_dir` with tensors changed by `edit(dict)` (config etc. copied)."""
    tensors = load_all(src_dir)
    edit(tensors)
    dst.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, dst / "model.safetensors", {"format": "pt"})
    for p in src_dir.iterdir():
        if p.is_file() and not p.name.endswith(".safetensors") and p.name != "model.safetensors.index.json":
            shutil.copy(p, dst / p.name)
    return dst


# -- fixtures --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gemma4(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("gemma4")
    src = make_checkpoint("gemma4", root / "src", seed=3, dtype=torch.bfloat16)
    seen: list[tuple[int, int]] = []
    result = quantize_checkpoint(src, root / "out", progress=lambda d, t: seen.append((d, t)),
                                 max_shard_size=200_000)
    assert seen and seen[-1][0] == seen[-1][1] == result.bytes_in
    assert len([f for f, _ in result.files if f.endswith(".safetensors")]) >= 2
    return src, root / "out"


def adversarial_edit(t: dict[str, torch.Tensor]) -> None:
    """Edge cases of docs/nvfp4.md §8.4, written into a real tiny Gemma 4 (layer 5 is full attention, k_eq_v)."""
    p = "model.language_model.layers."
    g = torch.Generator().manual_seed(11)
    bf = torch.bfloat16
    # q/k/v of very different magnitude share one global scale: k's blocks get fp8-subnormal scales
    t[p + "0.self_attn.k_proj.weight"] = (t[p + "0.self_attn.k_proj.weight"].float() * 1e-3).to(bf)
    t[p + "0.self_attn.v_proj.weight"] = (t[p + "0.self_attn.v_proj.weight"].float() * 30).to(bf)
    t[p + "5.self_attn.k_proj.weight"] = (t[p + "5.self_attn.k_proj.weight"].float() * 100).to(bf)
    # o_proj with amax 6/16: global scale 7168 and block scale 448 are exact, so q = w·16 exactly
    o = (torch.rand(64, 64, generator=g) * 0.6 - 0.3)
    ties = torch.tensor([6, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5, -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5, -6])
    o[0, :16] = ties / 16  # every E2M1 rounding tie, both signs
    o[1, :16] = 0.0  # zero block
    o[2, :16] = 5e-6 * torch.linspace(-1, 1, 16)  # fp8-subnormal block scale
    o[3, :16] = 1e-7  # block scale underflows to 0 → compressed-tensors' 0.125 substitute
    o[4, :16] = torch.tensor([-0.0, 0.1] * 8)  # negative zero
    o[5, :16] = torch.tensor([-0.001, 0.375] * 8)  # tiny negatives that round to 0 keep the sign
    o[0, 16] = 0.375
    t[p + "0.self_attn.o_proj.weight"] = o.to(bf)
    # a tensor made entirely of exact ties
    codes = torch.tensor([0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, 6.0])
    idx = torch.randint(0, 8, (64, 1024), generator=g)
    sign = torch.where(torch.rand(64, 1024, generator=g) < 0.5, -1.0, 1.0)
    all_ties = codes[idx] * sign / 16
    all_ties[:, ::16] = 0.375
    t[p + "5.self_attn.o_proj.weight"] = all_ties.to(bf)
    # a 40.0 outlier and heavy tails in a dense MLP
    down = t[p + "1.mlp.down_proj.weight"].float()
    down[3, 7] = 40.0
    down[10:20] *= torch.distributions.StudentT(1.5).sample((10, down.shape[1])).clamp(-50, 50)
    t[p + "1.mlp.down_proj.weight"] = down.to(bf)
    # experts: gate ≪ up, an all-zero gate/up pair (global scale falls back to 1.0), an all-zero down
    gu = t[p + "0.experts.gate_up_proj"].float()
    gu[1, :32] *= 1e-3
    gu[2] = 0.0
    t[p + "0.experts.gate_up_proj"] = gu.to(bf)
    dn = t[p + "0.experts.down_proj"].float()
    dn[3] = 0.0
    t[p + "0.experts.down_proj"] = dn.to(bf)


@pytest.fixture(scope="module")
def adversarial(gemma4: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("adversarial")
    src = rebuild(gemma4[0], root / "src", adversarial_edit)
    quantize_checkpoint(src, root / "out")
    return src, root / "out"


# -- bit-exactness ---------------------------------------------------------------------------------

def test_gemma4_bit_exact_with_compressed_tensors(gemma4: tuple[Path, Path]) -> None:
    n = assert_bit_exact(*gemma4)
    # 6 layers × (8 experts × 3 + dense 3 + attention): sliding q,k,v,o; full (k_eq_v) q,k,o
    assert n == 6 * (8 * 3 + 3) + 5 * 4 + 3


def test_adversarial_weights_bit_exact(adversarial: tuple[Path, Path]) -> None:
    assert_bit_exact(*adversarial)
    out = load_all(adversarial[1])
    p = "model.language_model.layers."
    # the edges really occurred (otherwise the test above proves less than it claims)
    scales = out[p + "0.self_attn.o_proj.weight_scale"].view(torch.uint8)
    assert scales[1, 0] == scales[3, 0] == 0x20  # zero block and underflow → e4m3 0.125
    assert 0 < scales[2, 0] < 0x08  # e4m3 subnormal
    packed = out[p + "0.self_attn.o_proj.weight_packed"]
    nibbles = torch.stack((packed[0, :8] & 0xF, packed[0, :8] >> 4), -1).flatten().tolist()
    assert nibbles == [7, 0, 2, 2, 4, 4, 6, 6, 8, 10, 10, 12, 12, 14, 14, 15]  # ties to even, signs
    assert set((packed[4, :8] & 0xF).tolist()) == {0}  # -0.0 → +0 code
    assert set((packed[5, :8] & 0xF).tolist()) == {8}  # -0.001 → 0 with sign
    assert out[p + "0.experts.2.gate_proj.weight_global_scale"].item() == 1.0
    gs = {k: out[p + f"5.self_attn.{k}_proj.weight_global_scale"] for k in ("q", "k")}
    assert torch.equal(gs["q"], gs["k"]) and p + "5.self_attn.v_proj.weight_packed" not in out


@pytest.mark.parametrize("family,dtype", [("qwen3_moe", torch.bfloat16), ("mixtral", torch.float32)])
def test_per_expert_families_bit_exact(family: str, dtype: torch.dtype, tmp_path: Path) -> None:
    src = make_checkpoint(family, tmp_path / "src", seed=5, dtype=dtype)
    quantize_checkpoint(src, tmp_path / "out")
    n = assert_bit_exact(src, tmp_path / "out")
    out = load_all(tmp_path / "out")
    key = "w1" if family == "mixtral" else "gate_proj"
    assert any(f".experts.0.{key}.weight_packed" in k for k in out) and n > 0
    # each expert's gate/up (w1/w3) share a scale; different experts do not need to
    up = "w3" if family == "mixtral" else "up_proj"
    for name in (k for k in out if k.endswith(f"{key}.weight_global_scale")):
        assert torch.equal(out[name], out[name.replace(key, up)])


# -- decompression, passthrough, config ------------------------------------------------------------

def test_compressed_tensors_decompression(gemma4: tuple[Path, Path]) -> None:
    src_dir, out_dir = gemma4
    src, out = load_all(src_dir), load_all(out_dir)
    errors = []
    for m in quantized_modules(out):
        state = {s: out[f"{m}.{s}"] for s in SUFFIXES}
        ct = NVFP4PackedCompressor.decompress(state, SCHEME)["weight"]
        ours = numerics.dequantize(state["weight_packed"], state["weight_scale"], state["weight_global_scale"])
        assert ct.dtype == torch.bfloat16 and torch.equal(ct.view(torch.int16), ours.view(torch.int16)), m
        w = source_weight(src, m).float()
        rel = ((ct.float() - w).norm() / w.norm()).item()
        assert rel < 0.13, (m, rel)
        errors.append(rel)
    errors.sort()
    assert 0.08 < errors[len(errors) // 2] < 0.11  # ≈0.095 for Gaussian-like weights (docs/nvfp4.md §8.3)


def test_passthrough_byte_identical(gemma4: tuple[Path, Path]) -> None:
    src_dir, out_dir = gemma4
    src, out = load_all(src_dir), load_all(out_dir)
    quantized_sources = {n for n in src if n.endswith(("experts.gate_up_proj", "experts.down_proj"))}
    quantized_sources |= {f"{m}.weight" for m in quantized_modules(out)}
    kept = [n for n in src if n not in quantized_sources]
    assert any("router.proj" in n for n in kept) and any("vision_tower" in n for n in kept)
    for n in kept:
        assert out[n].dtype == src[n].dtype and torch.equal(out[n].view(torch.uint8), src[n].view(torch.uint8)), n
    expected = set(kept) | {f"{m}.{s}" for m in quantized_modules(out) for s in SUFFIXES}
    assert set(out) == expected
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (out_dir / f).read_bytes() == (src_dir / f).read_bytes()
    index = json.loads((out_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(out)
    for f in set(index["weight_map"].values()):
        with safe_open(out_dir / f, "pt") as h:
            assert {k for k, v in index["weight_map"].items() if v == f} == set(h.keys())


def test_config_quantization_config(gemma4: tuple[Path, Path]) -> None:
    src_dir, out_dir = gemma4
    config = json.loads((out_dir / "config.json").read_text())
    original = json.loads((src_dir / "config.json").read_text())
    qc = config.pop("quantization_config")
    assert config == original  # nothing else changed
    assert qc["quant_method"] == "compressed-tensors" and qc["format"] == "nvfp4-pack-quantized"
    assert qc["quantization_status"] == "compressed"
    group = qc["config_groups"]["group_0"]
    assert group["targets"] == ["Linear"] and group["input_activations"] is None
    assert group["weights"] == {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16,
                                "symmetric": True, "dynamic": False, "scale_dtype": "torch.float8_e4m3fn",
                                "zp_dtype": None, "observer": "memoryless_minmax", "actorder": None,
                                "block_structure": None, "observer_kwargs": {}}
    # compressed-tensors itself accepts it
    from compressed_tensors.quantization import QuantizationConfig
    parsed = QuantizationConfig.model_validate(qc)
    assert parsed.config_groups["group_0"].weights.strategy == "tensor_group"
    ignore = qc["ignore"]
    p = "model.language_model.layers."
    for layer in range(6):
        assert p + f"{layer}.router.proj" in ignore and p + f"{layer}.router" in ignore
    assert "lm_head" in ignore and "model.embed_vision.embedding_projection" in ignore
    assert "model.vision_tower.encoder.layers.0.self_attn.q_proj.linear" in ignore
    assert "model.vision_tower.patch_embedder.input_proj" in ignore
    assert not any("embed_tokens" in n for n in ignore)
    assert not any(re.search(r"language_model\.layers\.\d+\.(self_attn|mlp|experts)", n) for n in ignore)


# -- options ---------------------------------------------------------------------------------------

def test_attention_kept_bf16_lists_missing_v_proj(gemma4: tuple[Path, Path], tmp_path: Path) -> None:
    result = quantize_checkpoint(gemma4[0], tmp_path / "out", quantize_attention=False)
    out = load_all(tmp_path / "out")
    assert not any("self_attn" in k and "weight_packed" in k for k in out)
    p = "model.language_model.layers."
    assert p + "5.self_attn.v_proj" in result.ignore  # vLLM checks the (absent) V shard of k_eq_v
    assert p + "0.self_attn.q_proj" in result.ignore and p + "5.self_attn.o_proj" in result.ignore
    assert p + "0.mlp.gate_proj.weight_packed" in out
    assert_bit_exact(gemma4[0], tmp_path / "out")


def test_ignore_regex_keeps_whole_moe_layer(gemma4: tuple[Path, Path], tmp_path: Path) -> None:
    result = quantize_checkpoint(gemma4[0], tmp_path / "out", ignore=[r"layers\.1\.experts\.3\.up_proj"],
                                 quantize_dense_mlp=False)
    out = load_all(tmp_path / "out")
    p = "model.language_model.layers."
    assert p + "1.experts.gate_up_proj" in out and p + "1.experts" in result.ignore
    assert not any(k.startswith(p + "1.experts.") and "weight_packed" in k for k in out)
    assert p + "2.experts.0.gate_proj.weight_packed" in out
    assert p + "3.mlp.up_proj" in result.ignore and p + "3.mlp.up_proj.weight" in out
    assert any("kept BF16" in n for n in result.notes)


def test_input_dim_not_multiple_of_16_kept_and_ignored(tmp_path: Path) -> None:
    src = make_checkpoint("gemma4", tmp_path / "src", dtype=torch.bfloat16, moe_intermediate_size=24)
    result = quantize_checkpoint(src, tmp_path / "out")
    out = load_all(tmp_path / "out")
    assert not any(".experts." in k and k.endswith("weight_packed") for k in out)
    assert "model.language_model.layers.0.experts" in result.ignore
    assert "model.language_model.layers.0.self_attn.q_proj.weight_packed" in out


# -- bad input -------------------------------------------------------------------------------------

def test_nan_refused_with_tensor_name_and_nothing_written(gemma4: tuple[Path, Path], tmp_path: Path) -> None:
    def poison(t: dict[str, torch.Tensor]) -> None:
        t["model.language_model.layers.2.experts.gate_up_proj"][4, 9, 3] = float("nan")

    src = rebuild(gemma4[0], tmp_path / "src", poison)
    with pytest.raises(InputError) as err:
        quantize_checkpoint(src, tmp_path / "out")
    problem = err.value.problems[0]
    assert problem.file == "model.safetensors" and problem.field == "model.language_model.layers.2.experts.gate_up_proj"
    assert "[4, 0:32]" in problem.message
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == [tmp_path / "src"]


def test_refuses_quantized_source_and_unknown_format(gemma4: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError) as err:
        quantize_checkpoint(gemma4[1], tmp_path / "again")
    assert err.value.problems[0].field == "quantization_config"
    with pytest.raises(InputError):
        quantize_checkpoint(gemma4[0], tmp_path / "x", fmt="gptq")
    with pytest.raises(NotAvailable):
        quantize_checkpoint(gemma4[0], tmp_path / "x", fmt="modelopt")
    assert not (tmp_path / "again").exists() and not (tmp_path / "x").exists()


def test_refuses_f16_weights_and_output_inside_source(tmp_path: Path) -> None:
    src = make_checkpoint("qwen3_moe", tmp_path / "src", dtype=torch.float16, with_tokenizer=False)
    with pytest.raises(InputError) as err:
        quantize_checkpoint(src, tmp_path / "out")
    assert "F16" in err.value.problems[0].message and err.value.problems[0].field.endswith(".weight")
    for bad in (src, src / "nvfp4"):
        with pytest.raises(InputError):
            quantize_checkpoint(src, bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"] and not (src / "nvfp4").exists()


def test_output_independent_of_worker_count(gemma4: tuple[Path, Path], tmp_path: Path) -> None:
    quantize_checkpoint(gemma4[0], tmp_path / "one", workers=1, max_shard_size=200_000)
    quantize_checkpoint(gemma4[0], tmp_path / "three", workers=3, max_shard_size=200_000)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in gemma4[1].iterdir())
    for n in names:
        assert (tmp_path / "one" / n).read_bytes() == (tmp_path / "three" / n).read_bytes() \
            == (gemma4[1] / n).read_bytes(), n


def test_compressed_tensors_checkpoint_dequantizer_reads_the_artifact(gemma4: tuple[Path, Path],
                                                                       tmp_path: Path) -> None:
    """compressed-tensors' own checkpoint converter (docs/nvfp4.md §8 step 2) parses our config.json and shards
    and dequantizes every module to bf16 bit-identical to ours, close to the source; the rest unchanged."""
    from compressed_tensors.entrypoints.convert import convert_checkpoint
    from compressed_tensors.entrypoints.convert.converters.ct_dequantizer import CompressedTensorsDequantizer

    src_dir, out_dir = gemma4
    convert_checkpoint(model_stub=str(out_dir), save_directory=str(tmp_path / "deq"),
                       converter=CompressedTensorsDequantizer(str(out_dir), dtype=torch.bfloat16),
                       max_workers=1, device="cpu")
    src, out, deq = load_all(src_dir), load_all(out_dir), load_all(tmp_path / "deq")
    modules = quantized_modules(out)
    assert set(deq) == {n for n in out if not n.endswith(SUFFIXES)} | {f"{m}.weight" for m in modules}
    for m in modules:
        ours = numerics.dequantize(*(out[f"{m}.{s}"] for s in SUFFIXES))
        assert torch.equal(deq[f"{m}.weight"].view(torch.int16), ours.view(torch.int16)), m
        w = source_weight(src, m).float()
        assert ((deq[f"{m}.weight"].float() - w).norm() / w.norm()).item() < 0.13, m
    for n in (n for n in out if not n.endswith(SUFFIXES)):
        assert torch.equal(deq[n].view(torch.uint8), src[n].view(torch.uint8)), n


def test_ordered_map_keeps_order_and_memory_budget() -> None:
    import threading
    import time

    from release.nvfp4.parallel import ordered_map

    lock = threading.Lock()
    live = {"bytes": 0, "peak": 0}

    def work(item: tuple[int, int]) -> int:
        with lock:
            live["bytes"] += item[1]
            live["peak"] = max(live["peak"], live["bytes"])
        time.sleep(0.002 * (item[0] % 3))
        with lock:
            live["bytes"] -= item[1]
        if item[0] == 99:
            raise InputError("boom")
        return item[0]

    items = [(i, 300 if i % 4 == 0 else 100) for i in range(40)]
    assert list(ordered_map(work, items, 4, cost=lambda it: it[1], budget=500)) == list(range(40))
    assert live["peak"] <= 500 and torch.get_num_threads() >= 1
    with pytest.raises(InputError):
        list(ordered_map(work, [(1, 1), (99, 1), (2, 1)], 2))
