"""BF16 gate: the pruned checkpoint holds exactly the base's bytes for every kept expert.

Re-derives, independently of the pruner's own plan, where each pruned tensor's bytes must come from
in the base (same tensor; kept rows of a fused expert tensor; the kept expert's tensor under its old
number) and compares them in chunks, so memory stays flat at any model size. Exactness of the
*model* (logits equal the router-masked base) is tested on tiny checkpoints in tests/; byte equality
of every kept expert is what carries that result to the full-size model.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..prune import inspect_checkpoint
from ..prune.safetensors_header import ShardHeader, TensorEntry
from ..spec.dropmap import DropMap

CHUNK = 8 << 20


def _locate(shards: list[ShardHeader]) -> dict[str, tuple[ShardHeader, TensorEntry]]:
    return {e.name: (s, e) for s in shards for e in s.entries}


def _same_bytes(a: tuple[int, int], b: tuple[int, int], n: int) -> bool:
    (fa, oa), (fb, ob) = a, b
    done = 0
    while done < n:
        k = min(CHUNK, n - done)
        if os.pread(fa, k, oa + done) != os.pread(fb, k, ob + done):
            return False
        done += k
    return True


def verify_bf16(base_dir: Path, pruned_dir: Path, drop_map: DropMap) -> list[str]:
    """Problems found (empty: every tensor is where it must be, byte for byte)."""
    base = inspect_checkpoint(base_dir)
    pruned = inspect_checkpoint(pruned_dir)
    problems: list[str] = []
    if pruned.num_experts != drop_map.kept_count:
        problems.append(f"config says {pruned.num_experts} experts, the drop map keeps {drop_map.kept_count}")
    src = _locate(base.shards)
    dst = _locate(pruned.shards)
    fds: dict[Path, int] = {}

    def fd(path: Path) -> int:
        if path not in fds:
            fds[path] = os.open(path, os.O_RDONLY)
        return fds[path]

    try:
        expected_names: set[str] = set()
        for name in src:
            ref = base.experts.get(name)
            if ref is None or ref.action == "slice":
                expected_names.add(name)
            else:
                keep = drop_map.kept[ref.layer]
                if ref.expert in keep:
                    expected_names.add(ref.renamed(name, keep.index(ref.expert)))
        if set(dst) != expected_names:
            missing = sorted(expected_names - set(dst))[:5]
            extra = sorted(set(dst) - expected_names)[:5]
            problems.append(f"tensor names differ from the plan: missing {missing}, unexpected {extra}")
        for name, (ps, pe) in sorted(dst.items()):
            ref = pruned.experts.get(name)
            if ref is not None and ref.action == "renumber":
                keep = drop_map.kept[ref.layer]
                assert ref.expert is not None
                source = ref.renamed(name, keep[ref.expert])
                bs, be = src[source]
                if (be.dtype, be.shape) != (pe.dtype, pe.shape) or not _same_bytes(
                        (fd(bs.path), bs.data_start + be.begin), (fd(ps.path), ps.data_start + pe.begin), pe.nbytes):
                    problems.append(f"{name} is not the base's {source}")
            elif ref is not None and ref.action == "slice":
                keep = drop_map.kept[ref.layer]
                bs, be = src[name]
                row = be.nbytes // be.shape[0]
                if pe.shape != (len(keep), *be.shape[1:]) or pe.dtype != be.dtype:
                    problems.append(f"{name}: shape {pe.shape}, expected {(len(keep), *be.shape[1:])}")
                    continue
                for k, j in enumerate(keep):
                    if not _same_bytes((fd(bs.path), bs.data_start + be.begin + j * row),
                                       (fd(ps.path), ps.data_start + pe.begin + k * row), row):
                        problems.append(f"{name}: row {k} is not the base's expert {j}")
                        break
            else:
                if name not in src:
                    continue
                bs, be = src[name]
                if (be.dtype, be.shape) != (pe.dtype, pe.shape) or not _same_bytes(
                        (fd(bs.path), bs.data_start + be.begin), (fd(ps.path), ps.data_start + pe.begin), pe.nbytes):
                    problems.append(f"{name} differs from the base")
            if len(problems) > 20:
                problems.append("… (stopped after 20 problems)")
                break
    finally:
        for f in fds.values():
            os.close(f)
    return problems
