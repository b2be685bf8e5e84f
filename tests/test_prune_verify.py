"""The verify gate on pruned checkpoints, and the `release prune` command end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from model_factory import drop_map_dict, make_checkpoint, write_drop_map

from release.errors import VerifyError
from release.prune import check_prune, inspect_checkpoint, prune_checkpoint, verify_pruned
from release.spec.dropmap import load_drop_map

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    root = tmp_path_factory.mktemp("verify")
    base = make_checkpoint("gemma4", root / "base", seed=5)
    info = inspect_checkpoint(base)
    dm = write_drop_map(root / "dropmap.json", drop_map_dict(info.num_experts, info.moe_layers, 3, seed=2))
    out = root / "pruned"
    prune_checkpoint(base, load_drop_map(dm), out)
    return base, out, dm


def test_verify_passes_on_a_fresh_prune(pruned: tuple[Path, Path, Path]) -> None:
    base, out, _ = pruned
    assert verify_pruned(out).num_experts == 5
    assert verify_pruned(out, base, full=True).layout == "fused"


def test_verify_catches_a_flipped_byte(pruned: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, out, _ = pruned
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    info = inspect_checkpoint(copy)
    name = next(n for n, r in info.experts.items() if n.endswith("experts.down_proj"))
    shard = next(s for s in info.shards if any(e.name == name for e in s.entries))
    entry = shard.by_name()[name]
    with open(shard.path, "r+b") as fh:
        pos = shard.data_start + entry.begin + entry.nbytes // 2
        fh.seek(pos)
        byte = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([byte[0] ^ 0x40]))
    verify_pruned(copy, base)  # headers and sizes still agree: only a full compare can see it
    with pytest.raises(VerifyError, match=rf"{shard.file}: tensor data differs .* byte {pos}"):
        verify_pruned(copy, base, full=True)


def test_verify_catches_config_and_sidecar_drift(pruned: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, out, _ = pruned
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    (copy / "config.json").write_text((copy / "config.json").read_text().replace('"sliding_window": 16',
                                                                                  '"sliding_window": 32'))
    with pytest.raises(VerifyError, match=r"config\.json"):
        verify_pruned(copy, base)
    side = json.loads((copy / "expert_pruning.json").read_text())
    side["kept"]["0"] = side["kept"]["0"][::-1]
    (copy / "expert_pruning.json").write_text(json.dumps(side))
    with pytest.raises(VerifyError, match="ascending"):
        verify_pruned(copy)


def test_verify_reports_a_truncated_output(pruned: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, out, _ = pruned
    copy = Path(shutil.copytree(out, tmp_path / "copy"))
    shard = sorted(copy.glob("*.safetensors"))[-1]
    os.truncate(shard, shard.stat().st_size - 8)
    with pytest.raises(VerifyError, match="truncated"):
        verify_pruned(copy)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "release", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_release_prune_command(pruned: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, out, dm = pruned
    done = _cli("prune", "--base", str(base), "--drop-map", str(dm), "--out", str(tmp_path / "cli"), "--json")
    assert done.returncode == 0, done.stderr
    for f in sorted(out.iterdir()):
        assert (tmp_path / "cli" / f.name).read_bytes() == f.read_bytes(), f.name  # deterministic output

    broken = Path(shutil.copytree(base, tmp_path / "broken"))
    shard = sorted(broken.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-3])
    refused = _cli("prune", "--base", str(broken), "--drop-map", str(dm), "--out", str(tmp_path / "nope"))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert shard.name in refused.stdout + refused.stderr and "truncated" in refused.stdout + refused.stderr
    assert not (tmp_path / "nope").exists()


def test_check_prune_previews_the_output_exactly(pruned: tuple[Path, Path, Path], tmp_path: Path) -> None:
    base, out, dm = pruned
    preview = check_prune(base, load_drop_map(dm))
    assert preview.output_bytes == sum(f.stat().st_size for f in out.iterdir())
    assert preview.tensor_bytes_out == json.loads((out / "model.safetensors.index.json").read_text())[
        "metadata"]["total_size"]
    assert not (tmp_path / "anything").exists() and list(tmp_path.iterdir()) == []


def test_pruning_a_pruned_model_keeps_the_earlier_record(pruned: tuple[Path, Path, Path], tmp_path: Path) -> None:
    _, out, _ = pruned
    info = inspect_checkpoint(out)
    dm = write_drop_map(tmp_path / "again.json", drop_map_dict(info.num_experts, info.moe_layers, 2, seed=4))
    again = tmp_path / "again"
    prune_checkpoint(out, load_drop_map(dm), again)
    side = json.loads((again / "expert_pruning.json").read_text())
    assert side["num_experts"] == {"source": 5, "pruned": 3}
    assert side["previous"]["num_experts"] == {"source": 8, "pruned": 5}
    verify_pruned(again, out, full=True)


def test_compare_logits_is_exact_and_not_vacuous(tmp_path: Path) -> None:
    """The verify gate's model-level check: exact for a true prune, and it notices a wrong keep-set."""
    from release.families import all_families
    from release.prune.exactness import compare_logits

    gemma4 = next(f for f in all_families() if f.family == "gemma4")
    base = make_checkpoint("gemma4", tmp_path / "base", seed=5, with_tokenizer=False)
    info = inspect_checkpoint(base)
    dm = load_drop_map(write_drop_map(tmp_path / "dm.json", drop_map_dict(info.num_experts, info.moe_layers, 3,
                                                                            seed=1)))
    out = tmp_path / "pruned"
    prune_checkpoint(base, dm, out)
    report = compare_logits(base, out, dm.kept, gemma4)
    assert report.exact and report.mask_effect > 1e-2
    wrong = {layer: tuple(sorted(set(range(info.num_experts)) - set(keep)))[:len(keep)] or keep
             for layer, keep in dm.kept.items()}
    assert not compare_logits(base, out, wrong, gemma4).exact
