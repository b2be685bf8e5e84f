"""The verify gate: passes a correct NVFP4A16 checkpoint, and catches each kind of damage."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from model_factory import make_checkpoint
from safetensors import safe_open

from release.errors import VerifyError
from release.nvfp4 import quantize_checkpoint, verify_checkpoint
from release.nvfp4.checkpoint import read_quant_shard_headers

P = "model.language_model.layers."


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("verify")
    src = make_checkpoint("gemma4", root / "src", seed=9, dtype=torch.bfloat16)
    quantize_checkpoint(src, root / "out", max_shard_size=300_000)
    return src, root / "out"


@pytest.mark.parametrize("dequantizer", ["compressed-tensors", "own"])
def test_good_checkpoint_passes(built: tuple[Path, Path], dequantizer: str) -> None:
    report = verify_checkpoint(built[1], built[0], dequantizer=dequantizer)
    assert report.ok, report.problems
    assert len(report.modules) == 6 * 27 + 23 and report.passthrough > 50
    assert report.dequantizer.startswith(dequantizer)
    assert all(0.05 < m.rel_error < 0.13 for m in report.modules)
    report.raise_if_failed()


def damaged(built: tuple[Path, Path], tmp_path: Path, tensor: str, edit) -> Path:  # type: ignore[no-untyped-def]
    """A copy of the output with `tensor`'s bytes changed by `edit(bytes) -> bytes` in place."""
    out = tmp_path / "damaged"
    shutil.copytree(built[1], out)
    file, entry, offset = read_quant_shard_headers(out)[tensor]
    with open(out / file, "r+b") as fh:
        fh.seek(offset)
        data = fh.read(entry.nbytes)
        fh.seek(offset)
        fh.write(edit(data))
    return out


def problems_for(built: tuple[Path, Path], out: Path) -> list[str]:
    report = verify_checkpoint(out, built[0])
    assert not report.ok
    with pytest.raises(VerifyError):
        report.raise_if_failed()
    return report.problems


def test_wrong_global_scale_caught(built: tuple[Path, Path], tmp_path: Path) -> None:
    name = P + "2.experts.5.up_proj.weight_global_scale"
    double = lambda b: (torch.frombuffer(bytearray(b), dtype=torch.float32) * 2).numpy().tobytes()  # noqa: E731
    problems = problems_for(built, damaged(built, tmp_path, name, double))
    assert any(p.startswith(P + "2.experts.5.up_proj: global scale") for p in problems)
    assert any(p.startswith(P + "2.experts.5.up_proj: relative error") for p in problems)


def test_swapped_gate_and_up_caught(built: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "swapped"
    shutil.copytree(built[1], out)
    heads = read_quant_shard_headers(out)
    gate, up = P + "1.experts.0.gate_proj.weight_packed", P + "1.experts.0.up_proj.weight_packed"
    blobs = {}
    for n in (gate, up):
        file, entry, offset = heads[n]
        with open(out / file, "rb") as fh:
            fh.seek(offset)
            blobs[n] = fh.read(entry.nbytes)
    for n, other in ((gate, up), (up, gate)):
        file, _, offset = heads[n]
        with open(out / file, "r+b") as fh:
            fh.seek(offset)
            fh.write(blobs[other])
    problems = verify_checkpoint(out, built[0]).problems
    assert any(p.startswith(P + "1.experts.0.gate_proj: relative error") for p in problems)


def test_changed_passthrough_byte_caught(built: tuple[Path, Path], tmp_path: Path) -> None:
    name = P + "3.router.proj.weight"
    out = damaged(built, tmp_path, name, lambda b: bytes([b[0] ^ 1]) + b[1:])
    assert problems_for(built, out) == [f"{name}: bytes differ from the source (must be copied unchanged)"]


def test_incomplete_ignore_list_caught(built: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "cfg"
    shutil.copytree(built[1], out)
    config = json.loads((out / "config.json").read_text())
    config["quantization_config"]["ignore"].remove(P + "4.router.proj")
    config["quantization_config"]["ignore"].append(P + "0.self_attn.q_proj")
    (out / "config.json").write_text(json.dumps(config))
    problems = problems_for(built, out)
    assert any("lacks " + P + "4.router.proj" in p for p in problems)
    assert any("names " + P + "0.self_attn.q_proj, which is quantized" in p for p in problems)


def test_missing_tensor_caught(built: tuple[Path, Path], tmp_path: Path) -> None:
    """A shard rewritten without one module's tensors: reported, not silently skipped."""
    from safetensors.torch import save_file

    out = tmp_path / "missing"
    shutil.copytree(built[1], out)
    name = P + "0.mlp.down_proj.weight_scale"
    file = read_quant_shard_headers(out)[name][0]
    with safe_open(out / file, "pt") as h:
        names = h.keys()
        tensors = {k: h.get_tensor(k) for k in names if k != name}
    save_file(tensors, out / file, {"format": "pt"})
    index = json.loads((out / "model.safetensors.index.json").read_text())
    del index["weight_map"][name]
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    assert f"{P}0.mlp.down_proj: missing weight_scale" in problems_for(built, out)
