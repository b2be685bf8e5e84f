"""Bad input is refused before anything is written: one InputError naming file and field, no output left.

Each test corrupts a real tiny checkpoint the way it happens in practice (interrupted download, hand
edits, a drop map made for another model) and checks the message, the exit status and the output folder.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from model_factory import drop_map_dict, make_checkpoint, write_drop_map

from release.errors import InputError
from release.prune import inspect_checkpoint, prune_checkpoint
from release.spec.dropmap import DropMap, load_drop_map

INDEX = "model.safetensors.index.json"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint("qwen3_moe", tmp_path_factory.mktemp("pristine") / "base", seed=3)


@pytest.fixture
def base(pristine: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pristine, tmp_path / "base"))


def _drop_map(base: Path, tmp: Path, **changes: object) -> DropMap:
    info = inspect_checkpoint(base)
    data = drop_map_dict(info.num_experts, info.moe_layers, 3, seed=1)
    data.update(changes)
    return load_drop_map(write_drop_map(tmp / "dropmap.json", data))


def _refused(base: Path, drop_map: DropMap, out: Path, **kwargs: str) -> InputError:
    with pytest.raises(InputError) as exc:
        prune_checkpoint(base, drop_map, out, **kwargs)
    err = exc.value
    assert err.exit_code == 2
    assert err.problems and all(p.file and p.field for p in err.problems), err.problems
    assert not out.exists(), "a refused prune left an output folder"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")], "staging folder left"
    return err


def _shards(base: Path) -> list[Path]:
    return sorted(base.glob("*.safetensors"))


def _rewrite_header(shard: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    raw = shard.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (n - len(text))  # same length, so the data stays where it was
    assert len(text) == n
    shard.write_bytes(raw[:8] + text + raw[8 + n:])


def test_truncated_shard(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    shard = _shards(base)[1]
    data = shard.read_bytes()
    shard.write_bytes(data[:-100])
    err = _refused(base, drop_map, tmp_path / "out")
    [p] = err.problems
    assert p.file == shard.name and p.field == "data_offsets" and "truncated" in p.message
    assert str(len(data) - 100) in p.message


def test_header_length_past_end_of_file(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    shard = _shards(base)[0]
    data = shard.read_bytes()
    shard.write_bytes(struct.pack("<Q", len(data) * 2) + data[8:])
    [p] = _refused(base, drop_map, tmp_path / "out").problems
    assert (p.file, p.field) == (shard.name, "header length") and "past the end" in p.message


def test_tiny_file_and_bad_json_header(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    first, second = _shards(base)[:2]
    first.write_bytes(b"\x01\x02")
    data = second.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    second.write_bytes(data[:8] + b"{" * n + data[8 + n:])
    problems = {(p.file, p.field) for p in _refused(base, drop_map, tmp_path / "out").problems}
    assert problems == {(first.name, "header length"), (second.name, "header")}  # all shards reported at once


def test_overlapping_offsets(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    shard = _shards(base)[0]
    victim = {}

    def overlap(header: dict[str, Any]) -> None:
        entries = sorted((v["data_offsets"][0], k) for k, v in header.items() if k != "__metadata__")
        _, name = entries[2]
        b, e = header[name]["data_offsets"]
        header[name]["data_offsets"] = [b - 4, e - 4]
        victim["name"] = name

    _rewrite_header(shard, overlap)
    problems = _refused(base, drop_map, tmp_path / "out").problems
    assert any(p.file == shard.name and p.field == f"{victim['name']}.data_offsets" and "overlaps" in p.message
               for p in problems), problems


def test_byte_length_disagrees_with_dtype_and_shape(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    shard = _shards(base)[0]

    def wrong_shape(header: dict[str, Any]) -> None:
        name = next(k for k in header if k != "__metadata__")
        header[name]["shape"] = [d + 1 for d in header[name]["shape"]]

    _rewrite_header(shard, wrong_shape)
    problems = _refused(base, drop_map, tmp_path / "out").problems
    assert any(p.file == shard.name and p.field.endswith(".data_offsets") and "needs" in p.message for p in problems)


def test_missing_shard_named_in_index(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    gone = _shards(base)[-1]
    gone.unlink()
    problems = _refused(base, drop_map, tmp_path / "out").problems
    assert len(problems) == 1
    [p] = problems
    assert p.file == INDEX and p.field.startswith("weight_map[") and gone.name in p.message and "missing" in p.message


def test_index_disagrees_with_shards(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    index = json.loads((base / INDEX).read_text())
    name = next(iter(index["weight_map"]))
    other = next(f for f in sorted(set(index["weight_map"].values())) if f != index["weight_map"][name])
    index["weight_map"][name] = other
    del index["weight_map"][sorted(index["weight_map"])[-1]]
    (base / INDEX).write_text(json.dumps(index, indent=2))
    problems = _refused(base, drop_map, tmp_path / "out").problems
    fields = [p.field for p in problems]
    assert f"weight_map[{name!r}]" in fields and "weight_map" in fields
    assert all(p.file == INDEX for p in problems)


def test_drop_map_for_another_model(base: Path, tmp_path: Path) -> None:
    info = inspect_checkpoint(base)
    other = drop_map_dict(128, list(range(48)), 30, seed=2, base="Qwen/Qwen3-30B-A3B")
    drop_map = load_drop_map(write_drop_map(tmp_path / "dropmap.json", other))
    problems = _refused(base, drop_map, tmp_path / "out", base_repo="test/tiny-moe").problems
    by_field = {p.field: p for p in problems}
    assert by_field["base"].file == "dropmap.json" and "Qwen/Qwen3-30B-A3B" in by_field["base"].message
    assert by_field["num_experts"].file == "dropmap.json"
    assert f"{info.num_experts} experts" in by_field["num_experts"].message


def test_drop_map_layers_do_not_match(base: Path, tmp_path: Path) -> None:
    data = drop_map_dict(8, [0, 1, 2, 5], 3, seed=1)
    del data["drop"]["1"]
    drop_map = load_drop_map(write_drop_map(tmp_path / "dropmap.json", data))
    fields = {p.field for p in _refused(base, drop_map, tmp_path / "out").problems}
    assert fields == {"drop.1", "drop.5"}


def test_keep_fewer_than_top_k(base: Path, tmp_path: Path) -> None:
    data = drop_map_dict(8, [0, 1, 2], 7, seed=1)
    drop_map = load_drop_map(write_drop_map(tmp_path / "dropmap.json", data))
    [p] = _refused(base, drop_map, tmp_path / "out").problems
    assert p.field == "drop" and "top-k" in p.message


def test_expert_count_disagrees_with_tensors(base: Path, tmp_path: Path) -> None:
    """config.json says 16 experts, the tensors hold 8: the drop map matches the config, the checkpoint not."""
    cfg = (base / "config.json").read_text().replace('"num_local_experts": 8', '"num_local_experts": 16')
    (base / "config.json").write_text(cfg)
    drop_map = load_drop_map(write_drop_map(tmp_path / "dropmap.json", drop_map_dict(16, [0, 1, 2], 3)))
    problems = _refused(base, drop_map, tmp_path / "out").problems
    assert any(p.field.endswith("mlp.gate.weight.shape") and "16" in p.message for p in problems)
    assert any("experts 8, 9" in p.message for p in problems)


def test_unknown_architecture(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    cfg = json.loads((base / "config.json").read_text())
    cfg["model_type"] = "llama"
    (base / "config.json").write_text(json.dumps(cfg))
    [p] = _refused(base, drop_map, tmp_path / "out").problems
    assert (p.file, p.field) == ("config.json", "model_type") and "llama" in p.message


def test_missing_config_and_not_a_checkpoint(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    (base / "config.json").unlink()
    with pytest.raises(InputError, match=r"config\.json: file not found"):
        prune_checkpoint(base, drop_map, tmp_path / "out")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text(json.dumps({"model_type": "qwen3_moe", "num_experts": 8,
                                                   "num_experts_per_tok": 2, "num_hidden_layers": 3}))
    with pytest.raises(InputError, match="not a safetensors checkpoint"):
        inspect_checkpoint(empty)
    assert not (tmp_path / "out").exists()


def test_output_folder_guards(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    with pytest.raises(InputError, match="overlaps the base"):
        prune_checkpoint(base, drop_map, base / "pruned")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="refusing to replace"):
        prune_checkpoint(base, drop_map, precious)
    assert (precious / "thesis.tex").read_text() == "years of work"
    # A previous prune output is replaced as a whole.
    out = tmp_path / "out"
    prune_checkpoint(base, drop_map, out)
    (out / "stale.txt").write_text("from an older run")
    prune_checkpoint(base, drop_map, out)
    assert not (out / "stale.txt").exists()


def test_not_enough_free_space(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import release.prune.pruner as pruner

    drop_map = _drop_map(base, tmp_path)
    real = shutil.disk_usage
    monkeypatch.setattr(pruner.shutil, "disk_usage", lambda p: real(p)._replace(free=10_000))
    [p] = _refused(base, drop_map, tmp_path / "out").problems
    assert p.field == "free space" and "needs" in p.message


def test_interrupted_prune_leaves_nothing(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        prune_checkpoint(base, drop_map, out, progress=progress)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "dropmap.json"]


def test_progress_reports_bytes(base: Path, tmp_path: Path) -> None:
    drop_map = _drop_map(base, tmp_path)
    seen: list[tuple[int, int]] = []
    result = prune_checkpoint(base, drop_map, tmp_path / "out", progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1] == (result.tensor_bytes_out, result.tensor_bytes_out)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_write_failure_is_a_work_error(base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk mid-copy is a failure while working (exit 1), and still leaves no output."""
    import errno
    import os

    from release.errors import WorkError

    drop_map = _drop_map(base, tmp_path)

    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", full)
    monkeypatch.setattr(os, "pwrite", full)
    out = tmp_path / "out"
    with pytest.raises(WorkError, match="No space left") as exc:
        prune_checkpoint(base, drop_map, out)
    assert exc.value.exit_code == 1
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_many_problems_are_capped(base: Path, tmp_path: Path) -> None:
    """A wrong expert count touches every expert tensor; the report stays readable."""
    cfg = (base / "config.json").read_text().replace('"num_local_experts": 8', '"num_local_experts": 4')
    (base / "config.json").write_text(cfg)
    drop_map = load_drop_map(write_drop_map(tmp_path / "dropmap.json", drop_map_dict(4, [0, 1, 2], 1)))
    problems = _refused(base, drop_map, tmp_path / "out").problems
    assert len(problems) == 31 and problems[-1].field == "(more)" and "more problems" in problems[-1].message
    assert "out of range" in str(problems)


# ---- hostile nesting (issue 19.15) ---------------------------------------------------------------------------

def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def test_a_header_nested_100000_deep_is_one_error_from_the_command(base: Path, tmp_path: Path) -> None:
    """Python's json recurses: a hostile header used to end `release prune` in a RecursionError traceback."""
    import os
    import subprocess
    import sys

    info = inspect_checkpoint(base)
    drop_map = write_drop_map(tmp_path / "dropmap.json", drop_map_dict(info.num_experts, info.moe_layers, 3, seed=1))
    shard = _shards(base)[0]
    raw = shard.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    hostile = ('{"evil":' + _nested(100_000) + "}").encode()
    shard.write_bytes(struct.pack("<Q", len(hostile)) + hostile + raw[8 + n:])
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "release", "prune", "--base", str(base), "--drop-map", str(drop_map),
                           "--out", str(out)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "RecursionError" not in proc.stderr, proc.stderr[-2000:]
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert f"{shard.name}: header: " in line and "nested deeper than" in line, line
    assert not out.exists()


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deep_nesting_in_the_config_and_the_index_is_refused(base: Path, tmp_path: Path, depth: int) -> None:
    for name in ("config.json", INDEX):
        copy = Path(shutil.copytree(base, tmp_path / f"copy-{name}"))
        text = (copy / name).read_text()
        (copy / name).write_text(text.replace("{", '{"deep": ' + _nested(depth) + ", ", 1))
        with pytest.raises(InputError) as exc:
            inspect_checkpoint(copy)
        (p,) = exc.value.problems
        assert p.file == name and "nested deeper than" in p.message, p


def test_header_nesting_of_a_real_checkpoint_passes_and_a_deep_one_is_refused() -> None:
    from release.prune.safetensors_header import parse_header_json

    assert parse_header_json(b'{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}', "x.safetensors")
    with pytest.raises(InputError) as exc:
        parse_header_json(('{"w":' + '[' * 40 + ']' * 40 + "}").encode(), "x.safetensors")
    assert exc.value.problems[0].field == "header"
    # A bracket inside a string is text, not nesting.
    assert parse_header_json(('{"__metadata__":{"k":"' + "[{" * 5000 + '"}}').encode(), "x.safetensors")


def test_every_json_reader_of_a_user_file_guards_its_depth(tmp_path: Path) -> None:
    """The definition's files (release/spec/readers.py) and a drop map's scores file refuse deep nesting in
    one error naming the file, whatever the depth."""
    from release.spec.expert_scores import parse_scores
    from release.spec.readers import parse_json

    for depth in (40, 100_000):
        deep = ('{"format":' + _nested(depth) + "}").encode()
        for parse in (parse_json, parse_scores):
            with pytest.raises(InputError) as exc:
                parse(deep, "x.json")
            (p,) = exc.value.problems
            assert p.file == "x.json" and "nested deeper than 32 levels" in p.message, p
