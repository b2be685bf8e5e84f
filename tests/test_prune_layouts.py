"""Every supported MoE family: the pruned checkpoint holds exactly the kept experts' bytes.

Checkpoints come from the real transformers classes (tiny configs, `save_pretrained`) or, for layouts
transformers 5.23 does not write (gpt-oss MXFP4, Qwen3.5 fused experts, Llama 4 Hub names, DeepSeek FP8
with `weight_scale_inv`), are written tensor by tensor with the Hub's names and shapes. Every output is
read back with the safetensors library and compared tensor by tensor against slices of the input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from model_factory import FAMILIES, drop_map_dict, make_checkpoint, write_drop_map, write_safetensors_checkpoint
from safetensors import safe_open

from release.errors import InputError
from release.prune import CheckpointInfo, inspect_checkpoint, prune_checkpoint, verify_pruned
from release.spec.dropmap import load_drop_map

INDEX = "model.safetensors.index.json"


def read_all(folder: Path) -> dict[str, tuple[str, torch.Tensor]]:
    """tensor name → (shard file, tensor), via the real safetensors reader."""
    out: dict[str, tuple[str, torch.Tensor]] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="pt") as fh:
            for name in fh.keys():  # noqa: SIM118 - safe_open has no __iter__
                out[name] = (shard.name, fh.get_tensor(name))
    return out


def same_bytes(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def prune_with(base: Path, tmp: Path, n_drop: int, *, seed: int = 5) -> tuple[Path, dict[int, tuple[int, ...]]]:
    info = inspect_checkpoint(base)
    data = drop_map_dict(info.num_experts, info.moe_layers, n_drop, seed=seed,
                         groups=info.family.num_groups(info.config))
    drop_map = load_drop_map(write_drop_map(tmp / "dropmap.json", data))
    out = tmp / "pruned"
    result = prune_checkpoint(base, drop_map, out, base_repo="test/tiny-moe")
    assert result.out_dir == out and result.num_experts_after == info.num_experts - n_drop
    assert result.tensor_bytes_out < result.tensor_bytes_in
    assert result.total_parameters_after < result.total_parameters_before
    return out, drop_map.kept


def check_pruned(base: Path, out: Path, kept: dict[int, tuple[int, ...]]) -> CheckpointInfo:
    """Compare `out` with what pruning `base` must produce; returns the base's info."""
    info = inspect_checkpoint(base)
    src, dst = read_all(base), read_all(out)
    expected: dict[str, tuple[str, torch.Tensor]] = {}
    for name, (file, t) in src.items():
        ref = info.experts.get(name)
        if ref is None:
            expected[name] = (file, t)
        elif ref.action == "slice":
            expected[name] = (file, t[list(kept[ref.layer])])
        elif ref.expert in kept[ref.layer]:
            expected[ref.renamed(name, kept[ref.layer].index(ref.expert))] = (file, t)
    assert sorted(dst) == sorted(expected)
    for name, (file, t) in expected.items():
        assert dst[name][0] == file, f"{name} moved from {file} to {dst[name][0]}"
        assert same_bytes(dst[name][1], t), name

    # Shards map 1:1 and every output is readable by the real reader (checked above); index agrees.
    assert sorted(p.name for p in out.glob("*.safetensors")) == sorted(p.name for p in base.glob("*.safetensors"))
    if (base / INDEX).exists():
        idx_in = json.loads((base / INDEX).read_text())
        idx = json.loads((out / INDEX).read_text())
        assert idx["weight_map"] == {n: f for n, (f, _) in dst.items()}
        if list(idx_in["weight_map"]) == sorted(idx_in["weight_map"]):
            assert list(idx["weight_map"]) == sorted(idx["weight_map"])
        assert idx["metadata"]["total_size"] == sum(t.numel() * t.element_size() for _, t in dst.values())
        if "total_parameters" in idx_in["metadata"]:
            removed = sum(t.numel() for _, t in src.values()) - sum(t.numel() for _, t in dst.values())
            assert idx["metadata"]["total_parameters"] == idx_in["metadata"]["total_parameters"] - removed
        assert {k: v for k, v in idx.items() if k not in ("weight_map", "metadata")} == \
            {k: v for k, v in idx_in.items() if k not in ("weight_map", "metadata")}
    else:
        assert not (out / INDEX).exists()

    # config.json: only the expert count changed, and textually only that line.
    cfg_in, cfg_out = json.loads((base / "config.json").read_text()), json.loads((out / "config.json").read_text())
    n_kept = len(next(iter(kept.values())))
    target = cfg_in
    for part in info.config_path(info.count_keys[0])[:-1]:
        target = target[part]
    for key in info.count_keys:
        target[key] = n_kept
    assert cfg_out == cfg_in
    lines_in = (base / "config.json").read_text().splitlines()
    lines_out = (out / "config.json").read_text().splitlines()
    assert len(lines_in) == len(lines_out)
    assert sum(a != b for a, b in zip(lines_in, lines_out, strict=True)) == len(info.count_keys)

    sidecar = json.loads((out / "expert_pruning.json").read_text())
    assert sidecar["kept"] == {str(k): list(v) for k, v in kept.items()}
    assert sidecar["num_experts"] == {"source": info.num_experts, "pruned": n_kept}
    for other in info.other_files:
        assert (out / other).read_bytes() == (base / other).read_bytes()
    return info


def load_report(path: Path) -> dict[str, Any]:
    import transformers

    cfg = json.loads((path / "config.json").read_text())
    cls = getattr(transformers, cfg["architectures"][0])
    _, info = cls.from_pretrained(path, dtype=torch.float32, output_loading_info=True)
    return info


# -- transformers-written checkpoints, every family ---------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES)
def test_family_prune_layout(family: str, tmp_path: Path) -> None:
    base = make_checkpoint(family, tmp_path / "base", seed=1)
    info = inspect_checkpoint(base)
    assert info.family.family == family
    groups = info.family.num_groups(info.config)
    out, kept = prune_with(base, tmp_path, 2 if groups > 1 else 3)
    check_pruned(base, out, kept)
    # transformers loads the pruned checkpoint with no re-initialised, missing or unexpected weights.
    report = load_report(out)
    assert not report["missing_keys"] and not report["unexpected_keys"] and not report["mismatched_keys"], report


def test_moe_layers_follow_the_config(tmp_path: Path) -> None:
    """Dense layers (DeepSeek first_k_dense_replace, Llama 4 interleave, Qwen mlp_only_layers) are untouched."""
    cases = {"deepseek_v3": ({}, [1, 2]), "llama4": ({}, [1, 3]), "qwen3_moe": ({"mlp_only_layers": [1]}, [0, 2])}
    for family, (overrides, layers) in cases.items():
        base = make_checkpoint(family, tmp_path / family, with_tokenizer=False, **overrides)
        info = inspect_checkpoint(base)
        assert info.moe_layers == layers, family
        assert sorted({ref.layer for ref in info.experts.values()}) == layers, family


def test_single_file_checkpoint(tmp_path: Path) -> None:
    base = make_checkpoint("qwen3_moe", tmp_path / "base", max_shard_size="100MB", min_shards=1)
    assert not (base / INDEX).exists() and (base / "model.safetensors").exists()
    out, kept = prune_with(base, tmp_path, 3)
    check_pruned(base, out, kept)
    assert not load_report(out)["mismatched_keys"]


# -- Hub layouts written tensor by tensor ---------------------------------------------------------------

def _state_dict(family: str, tmp: Path, **overrides: Any) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """config.json and tensors as transformers writes them to disk (per-expert where it converts)."""
    path = make_checkpoint(family, tmp / f"{family}-saved", seed=2, with_tokenizer=False, **overrides)
    return json.loads((path / "config.json").read_text()), {n: t for n, (_f, t) in read_all(path).items()}


def test_gpt_oss_mxfp4_hub_layout(tmp_path: Path) -> None:
    """openai/gpt-oss-*: MXFP4 blocks/scales (U8) with expert axis at dim 0, BF16 biases, router bias."""
    config, sd = _state_dict("gpt_oss", tmp_path)
    e, h = config["num_local_experts"], config["hidden_size"]
    i = config["intermediate_size"]
    gen = torch.Generator().manual_seed(0)
    tensors: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
        if ".mlp.experts." in name:
            continue
        tensors[name] = t.to(torch.bfloat16)
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}.mlp.experts."
        tensors[p + "gate_up_proj_blocks"] = torch.randint(0, 256, (e, 2 * i, h // 32, 16), generator=gen,
                                                           dtype=torch.uint8)
        tensors[p + "gate_up_proj_scales"] = torch.randint(100, 140, (e, 2 * i, h // 32), generator=gen,
                                                           dtype=torch.uint8)
        tensors[p + "gate_up_proj_bias"] = torch.randn(e, 2 * i, generator=gen).to(torch.bfloat16)
        tensors[p + "down_proj_blocks"] = torch.randint(0, 256, (e, h, i // 32, 16), generator=gen,
                                                        dtype=torch.uint8)
        tensors[p + "down_proj_scales"] = torch.randint(100, 140, (e, h, i // 32), generator=gen, dtype=torch.uint8)
        tensors[p + "down_proj_bias"] = torch.randn(e, h, generator=gen).to(torch.bfloat16)
    config["quantization_config"] = {"quant_method": "mxfp4",
                                     "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                                                "model.embed_tokens", "lm_head"]}
    base = write_safetensors_checkpoint(tmp_path / "base", config, tensors, shards=3)
    out, kept = prune_with(base, tmp_path, 3)
    info = check_pruned(base, out, kept)
    assert info.layout == "fused"
    sliced = {n for n, r in info.experts.items() if r.action == "slice"}
    assert {n.rsplit(".", 1)[-1] for n in sliced} >= {"gate_up_proj_blocks", "gate_up_proj_scales",
                                                      "gate_up_proj_bias", "down_proj_blocks", "down_proj_scales",
                                                      "down_proj_bias", "weight", "bias"}
    assert json.loads((out / "config.json").read_text())["quantization_config"] == config["quantization_config"]


def _fuse_qwen_experts(tensors: dict[str, torch.Tensor], num_experts: int, prefix: str) -> dict[str, torch.Tensor]:
    """Per-expert gate/up/down → Hub-fused gate_up_proj [E,2I,H] and down_proj [E,H,I]."""
    out: dict[str, torch.Tensor] = {}
    layers = sorted({int(n[len(prefix):].split(".")[0]) for n in tensors if n.startswith(prefix) and ".experts." in n})
    for name, t in tensors.items():
        if ".mlp.experts." not in name:
            out[name] = t
    for layer in layers:
        p = f"{prefix}{layer}.mlp.experts."
        out[p + "gate_up_proj"] = torch.stack([
            torch.cat([tensors[f"{p}{j}.gate_proj.weight"], tensors[f"{p}{j}.up_proj.weight"]])
            for j in range(num_experts)])
        out[p + "down_proj"] = torch.stack([tensors[f"{p}{j}.down_proj.weight"] for j in range(num_experts)])
    return out


def test_qwen3_5_moe_fused_hub_layout_equals_per_expert(tmp_path: Path) -> None:
    """Qwen3.5-MoE on the Hub stores fused experts; transformers writes per-expert. Both prune alike."""
    per_expert = make_checkpoint("qwen3_5_moe", tmp_path / "per_expert", seed=4, with_tokenizer=False)
    config = json.loads((per_expert / "config.json").read_text())
    sd = {n: t for n, (_f, t) in read_all(per_expert).items()}
    fused = _fuse_qwen_experts(sd, config["text_config"]["num_experts"], "model.language_model.layers.")
    base = write_safetensors_checkpoint(tmp_path / "fused", config, fused, shards=3)
    assert inspect_checkpoint(base).layout == "fused"
    assert inspect_checkpoint(per_expert).layout == "per-expert"

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    out_fused, kept = prune_with(base, tmp_path / "a", 3, seed=9)
    out_per_expert, kept2 = prune_with(per_expert, tmp_path / "b", 3, seed=9)
    assert kept == kept2
    check_pruned(base, out_fused, kept)
    check_pruned(per_expert, out_per_expert, kept)
    pruned_per_expert = {n: t for n, (_f, t) in read_all(out_per_expert).items()}
    expected = _fuse_qwen_experts(pruned_per_expert, 5, "model.language_model.layers.")
    got = {n: t for n, (_f, t) in read_all(out_fused).items()}
    assert sorted(got) == sorted(expected)
    assert all(same_bytes(got[n], expected[n]) for n in got)

    # transformers reads both layouts into the same model.
    import transformers

    cls = transformers.Qwen3_5MoeForConditionalGeneration
    a, report = cls.from_pretrained(out_fused, dtype=torch.float32, output_loading_info=True)
    b = cls.from_pretrained(out_per_expert, dtype=torch.float32)
    assert not report["missing_keys"] and not report["mismatched_keys"] and not report["unexpected_keys"]
    sa, sb = a.state_dict(), b.state_dict()
    assert sorted(sa) == sorted(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_llama4_hub_names_and_interleave(tmp_path: Path) -> None:
    """meta-llama/Llama-4-*: `language_model.model.layers…`, model_type llama4, MoE layers from the step."""
    text, sd = _state_dict("llama4", tmp_path)
    text.pop("moe_layers")  # Hub configs give only interleave_moe_layer_step
    config = {"architectures": ["Llama4ForConditionalGeneration"], "model_type": "llama4", "text_config": text,
              "vision_config": {"model_type": "llama4_vision_model", "hidden_size": 32}}
    tensors = {f"language_model.{n}": t.to(torch.bfloat16) for n, t in sd.items()}
    tensors["vision_model.patch_embedding.linear.weight"] = torch.randn(32, 48).to(torch.bfloat16)
    base = write_safetensors_checkpoint(tmp_path / "base", config, tensors)
    info = inspect_checkpoint(base)
    assert info.moe_layers == [1, 3] and info.count_key == "text_config.num_local_experts"
    out, kept = prune_with(base, tmp_path, 3)
    check_pruned(base, out, kept)


def _deepseek_fp8(tmp_path: Path, *, mtp: bool) -> Path:
    config, sd = _state_dict("deepseek_v3", tmp_path)
    tensors: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
        if ".mlp.experts." in name and name.endswith(".weight"):
            tensors[name] = t.to(torch.float8_e4m3fn)
            out_f, in_f = t.shape
            tensors[name + "_scale_inv"] = torch.rand(math.ceil(out_f / 128), math.ceil(in_f / 128)) + 0.5
        else:
            tensors[name] = t.to(torch.bfloat16)
    config["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128],
                                     "activation_scheme": "dynamic"}
    base = write_safetensors_checkpoint(tmp_path / ("mtp" if mtp else "base"), config, tensors, shards=3)
    if mtp:  # DeepSeek-V3's MTP block is layer num_hidden_layers, with its own routed experts, in its own shard
        n = config["num_hidden_layers"]
        block = {k.replace("model.layers.1.", f"model.layers.{n}."): t for k, t in tensors.items()
                 if k.startswith("model.layers.1.")}
        block[f"model.layers.{n}.eh_proj.weight"] = torch.randn(64, 128).to(torch.bfloat16)
        _add_shard(base, "model-00004-of-00004.safetensors", block)
        # and one MTP tensor in a shard shared with the main model
        _add_shard(base, "model-00003-of-00003.safetensors",
                   {f"model.layers.{n}.enorm.weight": torch.ones(64, dtype=torch.bfloat16)})
    return base


def _add_shard(base: Path, file: str, tensors: dict[str, torch.Tensor]) -> None:
    """Add tensors to a shard (new or existing) and to the index."""
    from safetensors.torch import save_file

    path = base / file
    if path.exists():
        tensors = {**{n: t for n, (f, t) in read_all(base).items() if f == file}, **tensors}
    save_file(tensors, str(path), metadata={"format": "pt"})
    index = json.loads((base / INDEX).read_text())
    index["weight_map"].update({n: file for n in tensors})
    index["weight_map"] = dict(sorted(index["weight_map"].items()))
    index["metadata"]["total_size"] = sum(t.numel() * t.element_size() for _, t in read_all(base).values())
    (base / INDEX).write_text(json.dumps(index, indent=2) + "\n")


def test_deepseek_v3_fp8_group_balanced(tmp_path: Path) -> None:
    base = _deepseek_fp8(tmp_path, mtp=False)
    info = inspect_checkpoint(base)
    assert info.family.num_groups(info.config) == 2 and info.layout == "per-expert"
    assert any(n.endswith("e_score_correction_bias") for n in info.experts)
    assert any(n.endswith("weight_scale_inv") and r.action == "renumber" for n, r in info.experts.items())
    out, kept = prune_with(base, tmp_path, 2)
    check_pruned(base, out, kept)
    for layer, keep in kept.items():
        assert sum(j < 4 for j in keep) == sum(j >= 4 for j in keep), layer


def test_deepseek_v3_unbalanced_groups_refused(tmp_path: Path) -> None:
    base = _deepseek_fp8(tmp_path, mtp=False)
    data = {"format": "moe-drop-map/1", "base": "test/tiny-moe", "num_experts": 8, "drop": {"1": [0, 1], "2": [4, 5]}}
    drop_map = load_drop_map(write_drop_map(tmp_path / "dropmap.json", data))
    with pytest.raises(InputError, match="group") as exc:
        prune_checkpoint(base, drop_map, tmp_path / "out")
    assert all(p.file == "dropmap.json" for p in exc.value.problems)
    assert not (tmp_path / "out").exists()


def test_mtp_block_refused_unless_dropped(tmp_path: Path) -> None:
    """MTP blocks carry routed experts no drop map covers: refused by default, left out with mtp='drop'."""
    base = _deepseek_fp8(tmp_path, mtp=True)
    info = inspect_checkpoint(base)
    assert len(info.mtp_tensors) > 20 and all(n.startswith("model.layers.3.") for n in info.mtp_tensors)
    assert not any(n.startswith("model.layers.3.") for n in info.experts)
    data = drop_map_dict(8, info.moe_layers, 2, groups=2, seed=3)
    drop_map = load_drop_map(write_drop_map(tmp_path / "dropmap.json", data))
    with pytest.raises(InputError, match="multi-token-prediction") as exc:
        prune_checkpoint(base, drop_map, tmp_path / "out")
    [p] = exc.value.problems
    assert p.field.startswith("model.layers.3.") and p.file.endswith(".safetensors") and "mtp='drop'" in p.message
    assert not (tmp_path / "out").exists()

    result = prune_checkpoint(base, drop_map, tmp_path / "out", mtp="drop")
    out = tmp_path / "out"
    assert not (out / "model-00004-of-00004.safetensors").exists()  # held only MTP tensors: not written
    assert any(name == "model-00004-of-00004.safetensors" for name, _ in result.skipped)
    tensors = read_all(out)
    assert not any(n.startswith("model.layers.3.") for n in tensors)
    index = json.loads((out / INDEX).read_text())
    assert index["weight_map"] == {n: f for n, (f, _) in tensors.items()}
    assert json.loads((out / "expert_pruning.json").read_text())["mtp"] == {
        "policy": "drop", "tensors_removed": len(info.mtp_tensors)}
    verify_pruned(out, base, full=True)

    config, sd = _state_dict("qwen3_next", tmp_path)
    sd["mtp.layers.0.mlp.experts.0.gate_proj.weight"] = torch.zeros(32, 64)
    sd["mtp.fc.weight"] = torch.zeros(64, 128)
    nxt = write_safetensors_checkpoint(tmp_path / "next", config, sd)
    mtp = sorted(inspect_checkpoint(nxt).mtp_tensors)
    assert mtp == ["mtp.fc.weight", "mtp.layers.0.mlp.experts.0.gate_proj.weight"]
    drop_map = load_drop_map(write_drop_map(tmp_path / "next.json", drop_map_dict(8, list(range(4)), 3)))
    with pytest.raises(InputError, match="mtp"):
        prune_checkpoint(nxt, drop_map, tmp_path / "next-out")
    prune_checkpoint(nxt, drop_map, tmp_path / "next-out", mtp="drop")
    assert not any(n.startswith("mtp.") for n in read_all(tmp_path / "next-out"))


def test_qwen3_moe_hub_config_key(tmp_path: Path) -> None:
    """Hub Qwen3-MoE configs call the count `num_experts` (transformers 5.23 writes `num_local_experts`)."""
    base = make_checkpoint("qwen3_moe", tmp_path / "base", with_tokenizer=False)
    text = (base / "config.json").read_text()
    (base / "config.json").write_text(text.replace('"num_local_experts": 8', '"num_experts": 8'))
    assert inspect_checkpoint(base).count_key == "num_experts"
    out, kept = prune_with(base, tmp_path, 3)
    check_pruned(base, out, kept)
    assert json.loads((out / "config.json").read_text())["num_experts"] == 5


def test_hf_cache_snapshot_with_symlinks(tmp_path: Path) -> None:
    """A Hub cache snapshot is a folder of symlinks into blobs/: followed for reading, never copied as links."""
    real = make_checkpoint("mixtral", tmp_path / "blobs", seed=6)
    snap = tmp_path / "snapshots" / ("ab" * 20)
    snap.mkdir(parents=True)
    for f in real.iterdir():
        (snap / f.name).symlink_to(f)
    out, kept = prune_with(snap, tmp_path, 3)
    check_pruned(real, out, kept)
    assert not any(p.is_symlink() for p in out.iterdir())


def test_copy_falls_back_without_copy_file_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """File systems that refuse copy_file_range (EXDEV, EOPNOTSUPP …) get the pread/pwrite loop, same bytes."""
    import errno
    import os

    base = make_checkpoint("olmoe", tmp_path / "base", seed=6, with_tokenizer=False)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fast, _ = prune_with(base, tmp_path / "a", 3)
    calls = []

    def refuse(*args: object) -> int:
        calls.append(args)
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    slow, _ = prune_with(base, tmp_path / "b", 3)
    assert len(calls) == 1  # refused once, then the loop takes over for the rest of the run
    for f in sorted(fast.iterdir()):
        assert (slow / f.name).read_bytes() == f.read_bytes(), f.name
