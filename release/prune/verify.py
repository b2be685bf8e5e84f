"""Verify a pruned checkpoint without loading the model (the `verify` gate before anything is uploaded).

Without the base: the output must validate as a checkpoint (headers, index ↔ shards, expert dim 0 ==
the config's count) and agree with its sidecar. With the base: the output must be exactly what pruning
the base with the sidecar's keep-sets produces — shard names, header bytes, sizes, config.json and index
text — and with `full=True` every tensor byte too, compared in a streaming pass with flat memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import InputError, VerifyError
from ..spec.dropmap import DropMap
from .checkpoint import CONFIG, INDEX, SIDECAR, CheckpointInfo, inspect_checkpoint
from .plan import plan_checkpoint
from .pruner import edit_config, edit_index

COMPARE_BUFFER = 8 << 20


def verify_pruned(out_dir: Path, base_dir: Path | None = None, *, full: bool = False) -> CheckpointInfo:
    """Raise VerifyError naming every problem; return the pruned checkpoint's info when it passes."""
    out_dir = Path(out_dir)
    try:
        info = inspect_checkpoint(out_dir)
    except InputError as exc:
        raise VerifyError(f"pruned checkpoint {out_dir} is not valid:\n{exc}") from exc
    problems: list[str] = []
    kept = _sidecar_kept(out_dir, info, problems)
    if base_dir is not None and kept is not None and not problems:
        _compare_with_base(Path(base_dir), out_dir, kept, full, problems)
    if problems:
        raise VerifyError(f"pruned checkpoint {out_dir}:\n" + "\n".join(problems))
    return info


def _sidecar_kept(out_dir: Path, info: CheckpointInfo, problems: list[str]) -> dict[int, tuple[int, ...]] | None:
    try:
        sidecar = json.loads((out_dir / SIDECAR).read_text(encoding="utf-8"))
        kept = {int(layer): tuple(int(j) for j in v) for layer, v in sidecar["kept"].items()}
        source, pruned = int(sidecar["num_experts"]["source"]), int(sidecar["num_experts"]["pruned"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        problems.append(f"{SIDECAR}: missing or malformed ({exc})")
        return None
    if pruned != info.num_experts:
        problems.append(f"{SIDECAR}: num_experts.pruned = {pruned}, {CONFIG} says {info.num_experts}")
    if sorted(kept) != info.moe_layers:
        problems.append(f"{SIDECAR}: kept: layers {sorted(kept)} ≠ MoE layers {info.moe_layers} of {CONFIG}")
    for layer, keep in kept.items():
        if len(keep) != pruned or list(keep) != sorted(set(keep)) or (keep and not 0 <= keep[0] <= keep[-1] < source):
            problems.append(f"{SIDECAR}: kept.{layer}: not {pruned} distinct ascending indices below {source}")
    return kept


def _compare_with_base(base_dir: Path, out_dir: Path, kept: dict[int, tuple[int, ...]], full: bool,
                       problems: list[str]) -> None:
    base = inspect_checkpoint(base_dir)
    drop_map = DropMap(file=SIDECAR, base="", num_experts=base.num_experts, kept=kept, sha256="")
    sidecar = json.loads((out_dir / SIDECAR).read_text(encoding="utf-8"))
    dropped_mtp = isinstance(sidecar.get("mtp"), dict) and sidecar["mtp"].get("policy") == "drop"
    if base.mtp_tensors and not dropped_mtp:
        problems.append(f"the base has {len(base.mtp_tensors)} MTP tensors, the sidecar does not record removing them")
        return
    try:
        plans = plan_checkpoint(base, drop_map, frozenset(base.mtp_tensors))
    except KeyError as exc:
        problems.append(f"{SIDECAR}: kept has no entry for MoE layer {exc} of the base")
        return
    n_kept = len(next(iter(kept.values())))
    for plan in plans:
        path = out_dir / plan.name
        if not plan.written:
            if path.exists():
                problems.append(f"{plan.name}: present, but the base shard holds only removed MTP tensors")
            continue
        size = path.stat().st_size if path.exists() else None
        if size != plan.size:
            problems.append(f"{plan.name}: {size} bytes, pruning the base gives {plan.size}")
            continue
        with open(path, "rb") as fh:
            if fh.read(len(plan.header)) != plan.header:
                problems.append(f"{plan.name}: header differs from the base's pruned header")
                continue
        if full:
            bad = _first_difference(plan.source.path, path, plan.runs)
            if bad is not None:
                problems.append(f"{plan.name}: tensor data differs from the base at output byte {bad}")
    if (out_dir / CONFIG).read_text(encoding="utf-8") != edit_config(base, n_kept):
        problems.append(f"{CONFIG}: differs from the base's {CONFIG} with only the expert count changed")
    if base.index_text is not None:
        index = out_dir / INDEX
        if not index.exists() or index.read_text(encoding="utf-8") != edit_index(base, plans):
            problems.append(f"{INDEX}: differs from the base's index updated for the pruned tensors")
    for name in base.other_files:
        other = out_dir / name
        if not other.exists() or (full and other.read_bytes() != (base_dir / name).read_bytes()):
            problems.append(f"{name}: missing or not a copy of the base's file")


def _first_difference(src: Path, dst: Path, runs: list[tuple[int, int, int]]) -> int | None:
    sfd, dfd = os.open(src, os.O_RDONLY), os.open(dst, os.O_RDONLY)
    try:
        for s, d, length in runs:
            done = 0
            while done < length:
                n = min(COMPARE_BUFFER, length - done)
                a, b = os.pread(sfd, n, s + done), os.pread(dfd, n, d + done)
                if a != b:
                    return d + done + next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y),
                                           min(len(a), len(b)))
                done += n
    finally:
        os.close(sfd)
        os.close(dfd)
    return None
