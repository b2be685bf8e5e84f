"""NVFP4 size before building: exact from headers, and from a config alone (docs/nvfp4.md §6)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from model_factory import FAMILIES, drop_map_dict, make_checkpoint, tiny_config, write_drop_map

from release.cli import cli
from release.errors import InputError
from release.families import for_config
from release.nvfp4 import estimate_size, estimate_size_from_config, quantize_checkpoint
from release.nvfp4.estimate import config_tensors
from release.prune.checkpoint import inspect_checkpoint

V4_CONFIG = Path(__file__).parents[1] / "pipelines" / "v4" / "base-config.json"
# How close the NVFP4 size from a config comes to the safetensors (shards + index) the build writes.
ESTIMATE_BOUND = 0.02


def test_estimate_from_headers_is_exact(tmp_path: Path) -> None:
    src = make_checkpoint("gemma4", tmp_path / "src", dtype=torch.bfloat16)
    for opts in ({}, {"quantize_attention": False, "ignore": [r"layers\.2\.experts"]}):
        want = estimate_size(src, **opts)
        result = quantize_checkpoint(src, tmp_path / "out", **opts)
        assert want == result.bytes_out == sum(p.stat().st_size for p in (tmp_path / "out").iterdir())


@pytest.mark.parametrize("family", FAMILIES)
def test_config_census_matches_checkpoint(family: str, tmp_path: Path) -> None:
    """The census holds the bytes of the checkpoint transformers writes, and the same names outside the
    routed experts (which it may write one tensor per expert; Mixtral also renames its MoE block)."""
    src = make_checkpoint(family, tmp_path / "src", dtype=torch.bfloat16, with_tokenizer=False)
    info = inspect_checkpoint(src)
    on_disk = {e.name: e.shape for s in info.shards for e in s.entries}
    config = json.loads((src / "config.json").read_text())
    census = config_tensors(config, info.num_experts)
    assert sum(t.nbytes for t in census) == sum(e.nbytes for s in info.shards for e in s.entries)
    if family in ("gemma4", "gpt_oss", "llama4"):  # written fused, as held
        assert {t.name: t.shape for t in census} == on_disk
    if family != "mixtral":
        outside = {t.name: t.shape for t in census if ".experts." not in t.name}
        assert outside == {n: s for n, s in on_disk.items() if ".experts." not in n}
    fewer = config_tensors(config, info.num_experts - 3)
    assert sum(t.nbytes for t in fewer) < sum(t.nbytes for t in census)


def _transformers_census(config: dict[str, Any], experts: int) -> dict[str, tuple[int, ...]]:
    """The oracle: every tensor transformers' own model class holds for `config` (meta device, no memory)."""
    import transformers

    family = for_config(config)
    cfg = copy.deepcopy(config)
    family.text_config(cfg)[family.count_key(cfg)] = experts
    with torch.device("meta"):
        model = getattr(transformers, cfg["architectures"][0])(transformers.AutoConfig.for_model(**cfg))
    state = model.state_dict()
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers() if n in state]
    return {n: tuple(state[n].shape) for n in dict.fromkeys(names) if n in state}


_GEMMA4_VARIANTS = {
    "plain": {},
    # per-layer inputs, KV sharing with double-wide MLPs, separate V everywhere, an untied head
    "ple-shared": {"text_config": {
        "hidden_size_per_layer_input": 16, "num_kv_shared_layers": 2, "use_double_wide_mlp": True,
        "attention_k_eq_v": False, "tie_word_embeddings": False,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention"] * 2}},
    "clipped-vision": {"vision_config": {"use_clipped_linears": True, "standardize": True}},
}


# Tiny configs of every family (tests/model_factory.py) and variants that change what a layer holds.
_VARIANTS: dict[str, dict[str, Any]] = {
    "qwen3_moe:dense-layer": {"mlp_only_layers": [1], "attention_bias": True},
    "qwen3_next:dense-layer": {"mlp_only_layers": [1], "attention_bias": True},
    "deepseek_v3:no-q-lora": {"q_lora_rank": None, "attention_bias": True, "first_k_dense_replace": 2},
    "glm4_moe:qk-norm-bias": {"use_qk_norm": True, "attention_bias": True, "first_k_dense_replace": 0},
    "gpt_oss:tied": {"tie_word_embeddings": True},
    "llama4:all-moe": {"interleave_moe_layer_step": 1},
}
# Keys a config.json may leave out: the census takes transformers' defaults (the family file's `defaults`).
_LEFT_OUT = {"gpt_oss:defaults": ["attention_bias", "head_dim"], "qwen3_next:defaults": ["head_dim", "layer_types"],
             "llama4:defaults": ["head_dim", "moe_layers"]}


def _tiny_family_config(case: str) -> dict[str, Any]:
    """config.json of a tiny model of `case` ("family" or "family:variant"), as save_pretrained writes it."""
    family, _, variant = case.partition(":")
    if family == "gemma4":
        arch, cfg = tiny_config(family, **copy.deepcopy(_GEMMA4_VARIANTS[variant or "plain"]))
    elif case == "qwen3_5_moe:text":  # the text-only model a Qwen3.5 checkpoint may also be saved as
        _, cfg = tiny_config("qwen3_5_moe")
        arch, cfg = "Qwen3_5MoeForCausalLM", cfg.text_config
    elif case == "llama4:vision":  # the Hub's Llama 4: text model, vision encoder, projector
        from transformers import Llama4Config

        _, text = tiny_config("llama4")
        vision = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
                  "vision_output_dim": 48, "image_size": 32, "patch_size": 8, "projector_input_dim": 64,
                  "projector_output_dim": 48}
        arch, cfg = "Llama4ForConditionalGeneration", Llama4Config(text_config=text.to_dict(), vision_config=vision)
    else:
        arch, cfg = tiny_config(family, **_VARIANTS.get(case, {}))
    config = {**cfg.to_dict(), "architectures": [arch]}
    for key in _LEFT_OUT.get(case, []):
        del config[key]
    return config


_CENSUS_CASES = ["v4", "demo", *(f"gemma4:{v}" for v in _GEMMA4_VARIANTS), *FAMILIES, *_VARIANTS, *_LEFT_OUT,
                 "qwen3_5_moe:text", "llama4:vision"]


@pytest.mark.parametrize("case", [c for c in _CENSUS_CASES if c != "gemma4"])
def test_config_census_names_what_transformers_holds(case: str) -> None:
    """The census from config.json alone (no torch, no transformers) names and shapes every tensor the
    transformers model class holds, with the pruned expert count."""
    root = Path(__file__).parents[1] / "pipelines"
    if case in ("v4", "demo"):
        config, experts = json.loads((root / case / "base-config.json").read_text()), 6
    else:
        config, experts = _tiny_family_config(case), 5
    census = config_tensors(config, experts)
    assert {t.name: t.shape for t in census} == _transformers_census(config, experts)
    assert len({t.name for t in census}) == len(census)


def test_plan_imports_neither_torch_nor_transformers() -> None:
    """`release plan v4 --matrix --json` sizes NVFP4 from the config: no model code is imported."""
    probe = ("import runpy, sys\n"
             "sys.argv = ['release', 'plan', 'v4', '--matrix', '--json']\n"
             "try:\n    runpy.run_module('release', run_name='__main__')\n"
             "except SystemExit as exc:\n    assert not exc.code, exc.code\n"
             "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))\n"
             "sys.stderr.write('HEAVY=' + ','.join(heavy[:5]) + '\\n')\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["jobs"]
    assert "HEAVY=\n" in proc.stderr, proc.stderr[-500:]


def test_config_estimate_close_to_built_size(tmp_path: Path) -> None:
    src = make_checkpoint("qwen3_moe", tmp_path / "src", dtype=torch.bfloat16, with_tokenizer=False)
    result = quantize_checkpoint(src, tmp_path / "out")
    built = sum(s for f, s in result.files if "safetensors" in f)  # shards + index
    config = json.loads((src / "config.json").read_text())
    est = estimate_size_from_config(config, num_experts_kept=inspect_checkpoint(src).num_experts)
    assert abs(est - built) / built < ESTIMATE_BOUND, (est, built)


def _tiny_release(family: str, root: Path) -> Path:
    """A release definition of a tiny checkpoint of `family` kept outside it: 2 experts dropped per MoE
    layer (as many from every group where routing is group-limited), a BF16 and an NVFP4 repo."""
    base = make_checkpoint(family, root / "base", dtype=torch.bfloat16)
    config = json.loads((base / "config.json").read_text())
    fam = for_config(config)
    folder = root / "pipelines" / f"tiny-{family}"
    folder.mkdir(parents=True)
    (folder / "base-config.json").write_text(json.dumps(config, indent=2) + "\n")
    kept = fam.num_experts(config) - 2
    write_drop_map(folder / "dropmap.json", drop_map_dict(fam.num_experts(config), fam.moe_layers(config), 2,
                                                          groups=fam.num_groups(config), base=f"test/tiny-{family}"))
    (folder / "scores.json").write_text(json.dumps({
        "format": "moe-release-scores/1", "harness": {"description": "illustrative"},
        "benchmarks": [{"name": "Toy", "n": 1, "metric": "acc", "reference": 50.0, "variant": 50.0}]}))
    (folder / "release.toml").write_text(f"""[release]
name = "tiny-{family}"
title = "Tiny {family}"
summary = "A tiny random {family} checkpoint with {kept} experts per MoE layer."
owner = "test"
license = "apache-2.0"

[base]
repo = "test/tiny-{family}"
revision = "{"1" * 40}"
path = "{base}"
path_outside = true

[prune]
experts_kept = {kept}

[bf16]
repo = "test/tiny-{family}-{kept}e"

[nvfp4]
repo = "test/tiny-{family}-{kept}e-NVFP4A16"
""")
    return folder


@pytest.mark.parametrize("family", FAMILIES)
def test_planned_nvfp4_size_of_every_family(family: str, tmp_path: Path) -> None:
    """`release plan` sizes the NVFP4 artifact of a release of every family from its config, and `release
    build` makes it within the bound. gpt-oss and Llama 4 hold their experts [E, H, 2·I], which the NVFP4
    writer refuses: `check` refuses such a definition at once (naming [nvfp4]), and the writer refuses the
    real checkpoint as the census predicts."""
    from release.nvfp4.checkpoint import open_source
    from release.nvfp4.layout import make_plan

    folder, dist = _tiny_release(family, tmp_path), tmp_path / "dist"
    runner = CliRunner()
    if family in ("gpt_oss", "llama4"):
        checked = runner.invoke(cli, ["check", str(folder)])
        assert checked.exit_code == 2 and "release.toml: nvfp4:" in checked.stderr, checked.output
        assert "[experts, out, in]" in checked.stderr
        src = open_source(tmp_path / "base")
        with pytest.raises(InputError, match="not supported for NVFP4"):
            make_plan(src.tensors, src.config)
        return
    planned = runner.invoke(cli, ["plan", str(folder), "--dist", str(dist), "--json"])
    assert planned.exit_code == 0, planned.output
    size = next(a for a in json.loads(planned.stdout)["artifacts"] if a["id"] == "nvfp4")["facts"]["size"]
    built = runner.invoke(cli, ["build", str(folder), "--dist", str(dist), "--only", "nvfp4"])
    assert built.exit_code == 0, built.output
    on_disk = sum(p.stat().st_size for p in (dist / folder.name / "nvfp4").glob("*.safetensors*"))
    assert size and abs(size - on_disk) / on_disk < ESTIMATE_BOUND, (size, on_disk)


def test_gemma4_26b_98_experts_rows_of_docs_nvfp4() -> None:
    """docs/nvfp4.md §6: 98 experts → A 13.36 GB, B 14.95 GB, C 15.72 GB; 128 experts A 16.37 GB.

    docs/nvfp4.md counts the vision tower as ≈550M (its real intermediate size, 4304); the v4 base config
    leaves vision intermediate_size at transformers' default, so the test sets it.
    """
    config = json.loads(V4_CONFIG.read_text())
    config["vision_config"] = {**config["vision_config"], "intermediate_size": 4304}
    rows = {
        "A": (estimate_size_from_config(config, 98), 13.36e9),
        "B": (estimate_size_from_config(config, 98, quantize_attention=False), 14.95e9),
        "C": (estimate_size_from_config(config, 98, quantize_attention=False, quantize_dense_mlp=False), 15.72e9),
        "A128": (estimate_size_from_config(config, 128), 16.37e9),
    }
    for row, (got, want) in rows.items():
        assert abs(got - want) / want < 0.01, (row, got, want)


def test_config_estimate_errors_are_value_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the census cannot size is a ValueError (plan then shows no NVFP4 size), never a crash."""
    _, cfg = tiny_config("gemma4")
    config = cfg.to_dict()
    config["text_config"]["hidden_size"] = "wide"
    with pytest.raises(ValueError, match="hidden_size"):
        estimate_size_from_config(config, 4)
    with pytest.raises(ValueError):
        estimate_size_from_config({"model_type": "bert"}, 4)
    broken = [
        _tiny_family_config("deepseek_v3") | {"kv_lora_rank": None},
        _tiny_family_config("qwen3_next") | {"linear_num_value_heads": "many"},
        _tiny_family_config("qwen3_next") | {"layer_types": ["full_attention"]},  # 1 type for 4 layers
        _tiny_family_config("qwen3_moe") | {"layer_types": ["linear_attention"] * 3},  # not in this family
        _tiny_family_config("llama4:vision") | {"vision_config": {"hidden_size": -1}},
    ]
    for bad in broken:
        with pytest.raises(ValueError, match="cannot size this config"):
            estimate_size_from_config(bad, 4)
    ds = _tiny_family_config("deepseek_v3")
    for key, value in (("attenton", "mla"), ("attention", "latent")):  # a mistyped family file
        with monkeypatch.context() as m:
            m.setitem(for_config(ds).extra["nvfp4_census"], key, value)
            with pytest.raises(ValueError, match=f"nvfp4_census.{key} = '{value}'"):
                estimate_size_from_config(ds, 4)
    monkeypatch.delitem(for_config(ds).extra, "nvfp4_census")  # a family file without a census layout
    with pytest.raises(ValueError, match="no tensor census"):
        estimate_size_from_config(ds, 4)
