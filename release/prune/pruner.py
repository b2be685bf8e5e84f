"""Streaming expert pruner: a new checkpoint with only the kept experts, without loading the model.

Every input is checked first (config, headers, index, drop map, free space); then shards are written
from source byte ranges into a staging folder that replaces `out_dir` only when complete.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError, Problem, WorkError
from ..fsutil import staging_dir
from ..spec.dropmap import DropMap, check_against_config
from .checkpoint import CONFIG, INDEX, SIDECAR, CheckpointInfo, inspect_checkpoint
from .copy import RangeCopier, ShortRead
from .jsontext import dump_object, object_style, replace_value
from .plan import ShardPlan, plan_checkpoint

SIDECAR_FORMAT = "moe-expert-pruning/1"
MTP_POLICIES = ("refuse", "drop")
# Room left on the disk beyond the output itself (metadata, other writers on a shared machine).
FREE_SPACE_MARGIN = 64 << 20


@dataclass
class PruneResult:
    out_dir: Path
    files: list[tuple[str, int]]  # every output file (name, size), sorted by name
    tensor_bytes_in: int
    tensor_bytes_out: int
    total_parameters_before: int  # tensor elements in all shards
    total_parameters_after: int
    family: str
    count_key: str  # dotted, e.g. "text_config.num_experts"
    num_experts_before: int
    num_experts_after: int
    kept: dict[int, tuple[int, ...]]
    layout: str  # "fused" | "per-expert" | "fused+per-expert"
    skipped: list[tuple[str, str]] = field(default_factory=list)  # base files not carried over, and why


@dataclass
class PrunePreview:
    """Everything pruning would write, computed from headers only (nothing read beyond them, nothing written)."""

    info: CheckpointInfo
    drop_map: DropMap
    plans: list[ShardPlan]
    config_text: str
    index_text: str | None
    sidecar_text: str

    @property
    def tensor_bytes_out(self) -> int:
        return sum(p.data_len for p in self.plans)

    @property
    def total_parameters_after(self) -> int:
        return self.info.total_parameters - sum(p.removed_elements for p in self.plans)

    @property
    def output_bytes(self) -> int:
        """Size of the output folder: shards (headers included), JSON files and copied files."""
        small = [self.config_text, self.sidecar_text, self.index_text or ""]
        return (sum(p.size for p in self.plans if p.written) + sum(len(t.encode()) for t in small)
                + sum((self.info.base_dir / f).stat().st_size for f in self.info.other_files))


def check_prune(base_dir: Path, drop_map: DropMap, *, base_repo: str = "", base_revision: str = "",
                mtp: str = "refuse") -> PrunePreview:
    """Validate base checkpoint + drop map together and plan the output; InputError listing every problem.

    `release check` / `release plan` can call this to report problems and the BF16 size without writing.
    `mtp`: what to do with a multi-token-prediction block (DeepSeek-V3/GLM-4.5 layer num_hidden_layers,
    Qwen3-Next `mtp.*`), whose routed experts no drop map covers: "refuse" (default) or "drop" — leave it
    out, as save_pretrained-based pruners do implicitly; the main model is unaffected, MTP speculative
    decoding is no longer available.
    """
    if mtp not in MTP_POLICIES:
        raise InputError(f"must be one of {', '.join(MTP_POLICIES)}, got {mtp!r}", file="options", field="mtp")
    info = inspect_checkpoint(Path(base_dir))
    problems = check_against_config(drop_map, info.config, info.family, base_repo=base_repo or None)
    if info.mtp_tensors and mtp == "refuse":
        first = info.mtp_tensors[0]
        problems.append(Problem(_shard_of(info, first), first,
                                f"{len(info.mtp_tensors)} tensors of a multi-token-prediction block with its own "
                                "routed experts, which the drop map does not cover; pruning with mtp='drop' "
                                "leaves the MTP block out (the main model is unaffected)"))
    if problems:
        raise InputError(problems)
    remove = frozenset(info.mtp_tensors) if mtp == "drop" else frozenset()
    plans = plan_checkpoint(info, drop_map, remove)
    return PrunePreview(
        info=info, drop_map=drop_map, plans=plans,
        config_text=edit_config(info, drop_map.kept_count),
        index_text=edit_index(info, plans) if info.index_text is not None else None,
        sidecar_text=sidecar_text(info, drop_map, plans, base_repo=base_repo, base_revision=base_revision,
                                  mtp_removed=len(remove)),
    )


def _shard_of(info: CheckpointInfo, tensor: str) -> str:
    return next(s.file for s in info.shards if any(e.name == tensor for e in s.entries))


def prune_checkpoint(
    base_dir: Path,
    drop_map: DropMap,
    out_dir: Path,
    *,
    base_repo: str = "",
    base_revision: str = "",
    progress: Callable[[int, int], None] | None = None,
    durable: bool = True,
    mtp: str = "refuse",
) -> PruneResult:
    """Write `out_dir`: `base_dir` with the experts of `drop_map` removed. InputError before any write.

    `progress(done, total)` is called with tensor bytes copied so far. With `durable` every file is
    fsync'ed before the folder is renamed into place, so a crash never leaves a complete-looking folder
    with empty files (the rename is only atomic for the name, not for the data).
    """
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    preview = check_prune(base_dir, drop_map, base_repo=base_repo, base_revision=base_revision, mtp=mtp)
    info, plans = preview.info, preview.plans
    _check_out_dir(base_dir, out_dir)
    _check_free_space(out_dir, preview.output_bytes)
    copied = preview.tensor_bytes_out
    done = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, copied)

    copier = RangeCopier(on_bytes)
    with staging_dir(out_dir) as tmp:
        for plan in plans:
            if plan.written:
                write_shard(plan, tmp / plan.name, copier, durable=durable)
        small = {CONFIG: preview.config_text, SIDECAR: preview.sidecar_text}
        if preview.index_text is not None:
            small[INDEX] = preview.index_text
        for name, text in small.items():
            (tmp / name).write_text(text, encoding="utf-8")
        for name in info.other_files:
            shutil.copyfile(base_dir / name, tmp / name)
        if durable:
            for name in [*small, *info.other_files]:
                _fsync_path(tmp / name)
            _fsync_path(tmp)
    if progress is not None and copied == 0:
        progress(0, 0)

    files = sorted((p.name, p.stat().st_size) for p in out_dir.iterdir() if p.is_file())
    skipped = list(info.skipped)
    if mtp == "drop" and info.mtp_tensors:
        skipped.append((f"{len(info.mtp_tensors)} MTP tensors", "multi-token-prediction block left out (mtp='drop')"))
        skipped += [(p.name, "held only MTP tensors") for p in plans if not p.written]
    return PruneResult(
        out_dir=out_dir, files=files,
        tensor_bytes_in=info.tensor_bytes, tensor_bytes_out=copied,
        total_parameters_before=info.total_parameters,
        total_parameters_after=preview.total_parameters_after,
        family=info.family.family, count_key=info.count_key,
        num_experts_before=info.num_experts, num_experts_after=drop_map.kept_count,
        kept=dict(drop_map.kept), layout=info.layout, skipped=skipped,
    )


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_shard(plan: ShardPlan, path: Path, copier: RangeCopier, *, durable: bool = True) -> None:
    try:
        _write_shard(plan, path, copier, durable=durable)
    except ShortRead as exc:
        raise InputError(f"ended early while being copied ({exc.strerror}); did it change during the prune?",
                         file=plan.name, field="data") from exc
    except OSError as exc:  # disk full, I/O error …: a failure while working, not bad input
        raise WorkError(f"writing {path.name} from {plan.source.path}: {exc.strerror or exc}") from exc


def _write_shard(plan: ShardPlan, path: Path, copier: RangeCopier, *, durable: bool) -> None:
    src_fd = os.open(plan.source.path, os.O_RDONLY)
    try:
        dst_fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.pwrite(dst_fd, plan.header, 0)
            copier.copy(src_fd, dst_fd, plan.runs)
            # The source may have shrunk after its header was checked; a short output must not pass.
            if os.fstat(dst_fd).st_size != plan.size:
                raise InputError(f"output size {os.fstat(dst_fd).st_size} != planned {plan.size}; did the "
                                 "source change while pruning?", file=plan.name)
            if durable:
                os.fsync(dst_fd)
        finally:
            os.close(dst_fd)
    finally:
        os.close(src_fd)


# -- raw JSON edits ---------------------------------------------------------------------------------

def edit_config(info: CheckpointInfo, new_count: int) -> str:
    """config.json text with only the expert-count key(s) changed."""
    text = info.config_text
    for key in info.count_keys:
        text = replace_value(text, info.config_path(key), str(new_count))
    expected = json.loads(info.config_text)
    target = expected
    for part in info.config_path(info.count_keys[0])[:-1]:
        target = target[part]
    for key in info.count_keys:
        target[key] = new_count
    if json.loads(text) != expected:
        raise WorkError("config.json: the raw edit changed more than the expert count (please report)")
    return text


def edit_index(info: CheckpointInfo, plans: list[ShardPlan]) -> str:
    """model.safetensors.index.json text with weight_map and sizes updated, all else as it was."""
    assert info.index_text is not None and info.index is not None
    text = info.index_text
    renamed: dict[str, str] = {}
    dropped: set[str] = set()
    for p in plans:
        renamed.update(p.renamed)
        dropped.update(p.dropped)
    old_items = list(info.index["weight_map"].items())
    items = [(renamed.get(k, k), v) for k, v in old_items if k not in dropped]
    if [k for k, _ in old_items] == sorted(k for k, _ in old_items):
        items.sort()  # transformers writes sorted keys; renumbering must not leave them out of order
    ascii_only = text.isascii()
    new_map = dump_object(items, object_style(text, ("weight_map",)), ensure_ascii=ascii_only)
    text = replace_value(text, ("weight_map",), new_map)
    metadata = info.index.get("metadata")
    if isinstance(metadata, dict):
        if isinstance(metadata.get("total_size"), int):
            text = replace_value(text, ("metadata", "total_size"), str(sum(p.data_len for p in plans)))
        if isinstance(metadata.get("total_parameters"), int):
            removed = sum(p.removed_elements for p in plans)
            text = replace_value(text, ("metadata", "total_parameters"),
                                 str(metadata["total_parameters"] - removed))
    return text


def sidecar_text(info: CheckpointInfo, drop_map: DropMap, plans: list[ShardPlan], *, base_repo: str,
                 base_revision: str, mtp_removed: int = 0) -> str:
    removed = sum(p.removed_elements for p in plans)
    data = {
        "format": SIDECAR_FORMAT,
        "tool": "moe-release",
        "tool_version": _tool_version(),
        "base": {"repo": base_repo or drop_map.base, "revision": base_revision},
        # Only the file's name: the sidecar is published, local paths are nobody's business.
        "drop_map": {"file": Path(drop_map.file).name, "sha256": drop_map.sha256, "source": drop_map.source},
        "family": info.family.family,
        "layout": info.layout,
        "count_key": info.count_key,
        "num_experts": {"source": info.num_experts, "pruned": drop_map.kept_count},
        "tensor_bytes": {"source": info.tensor_bytes, "pruned": sum(p.data_len for p in plans)},
        "parameters": {"source": info.total_parameters, "pruned": info.total_parameters - removed},
        "kept": {str(layer): list(kept) for layer, kept in sorted(drop_map.kept.items())},
    }
    if mtp_removed:
        data["mtp"] = {"policy": "drop", "tensors_removed": mtp_removed}
    previous = info.base_dir / SIDECAR
    if previous.is_file():
        # Pruning an already pruned model: `kept` counts in the base's numbering, keep the earlier record.
        try:
            data["previous"] = json.loads(previous.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data["previous"] = {"unreadable": True}
    return json.dumps(data, indent=2) + "\n"


def _tool_version() -> str:
    try:
        return str(getattr(importlib.import_module("release"), "__version__", "0"))
    except ImportError:
        return "0"


# -- output folder checks ---------------------------------------------------------------------------

def _check_out_dir(base_dir: Path, out_dir: Path) -> None:
    base, out = base_dir.resolve(), out_dir.resolve()
    if out == base or base in out.parents or out in base.parents:
        raise InputError(f"output folder {out_dir} overlaps the base checkpoint {base_dir}",
                         file=str(out_dir), field="--out")
    if out.exists():
        if not out.is_dir():
            raise InputError("exists and is not a folder", file=str(out_dir), field="--out")
        # Replacing a folder is fine for a previous prune output; anything else might be someone's data.
        if any(out.iterdir()) and not (out / SIDECAR).exists():
            raise InputError(f"exists, is not empty and has no {SIDECAR} (not a previous prune output); "
                             "refusing to replace it", file=str(out_dir), field="--out")


def _check_free_space(out_dir: Path, need: int) -> None:
    probe = out_dir.resolve()
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < need + FREE_SPACE_MARGIN:
        raise InputError(Problem(str(out_dir), "free space",
                                 f"needs {need / 1e9:.2f} GB (+{FREE_SPACE_MARGIN >> 20} MiB margin), "
                                 f"{free / 1e9:.2f} GB free on {probe}"))
