"""Stream a BF16 safetensors checkpoint into a weight-only NVFP4 (NVFP4A16) checkpoint on CPU.

Memory stays flat: output headers are computed up front from the plan, so each shard is created at
its final size and filled with pwrite (quantized modules) and copy_file_range (everything else,
byte for byte, in the kernel). Only one fusion group's weights are in memory at a time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, NotAvailable
from ..fsutil import staging_dir
from ..prune.checkpoint import CONFIG, INDEX
from ..prune.copy import RangeCopier
from . import numerics
from .checkpoint import DEFAULT_MAX_SHARD, OutputLayout, Source, layout_outputs, open_source, read_2d
from .layout import Plan, QuantGroup, SrcTensor, make_plan
from .parallel import default_workers, ordered_map
from .qconfig import quantization_config

FORMATS = ("compressed-tensors", "modelopt")
# source bytes of fusion groups being quantized at once; each costs ≈1.5× that in buffers
IN_FLIGHT_BYTES = 512 << 20


@dataclass
class Nvfp4Result:
    out_dir: Path
    fmt: str
    files: list[tuple[str, int]]  # (path relative to out_dir, size in bytes)
    quantized_modules: int
    kept_modules: int  # linears kept BF16 (all listed in quantization_config.ignore)
    ignore: list[str]
    bytes_in: int  # tensor bytes of the source checkpoint
    bytes_out: int  # bytes of every file written
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def facts(self) -> dict[str, Any]:
        """What the manifest and the cards want to show."""
        return {"format": self.fmt, "size": self.bytes_out, "bytes_in": self.bytes_in,
                "quantized_modules": self.quantized_modules, "kept_modules": self.kept_modules,
                "ignore": list(self.ignore), "seconds": round(self.seconds, 2)}


def plan_for(src: Source, *, fmt: str = "compressed-tensors", ignore: Sequence[str] = (),
             quantize_attention: bool = True, quantize_dense_mlp: bool = True) -> Plan:
    _check_format(fmt)
    return make_plan(src.tensors, src.config, ignore=ignore, quantize_attention=quantize_attention,
                     quantize_dense_mlp=quantize_dense_mlp)


def quantize_checkpoint(src_dir: Path, out_dir: Path, *, fmt: str = "compressed-tensors",
                        ignore: Sequence[str] = (), quantize_attention: bool = True,
                        quantize_dense_mlp: bool = True,
                        progress: Callable[[int, int], None] | None = None,
                        max_shard_size: int = DEFAULT_MAX_SHARD, workers: int | None = None) -> Nvfp4Result:
    """Write the NVFP4A16 checkpoint of `src_dir` to `out_dir` (replaced atomically on success).

    progress(done, total) counts source tensor bytes. Bad input raises InputError before or during
    the run; either way nothing appears at `out_dir`. `workers` threads (default: the CPUs we may
    use, at most 8) quantize fusion groups in parallel.
    """
    started = time.perf_counter()
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    if out_dir.resolve() == src_dir.resolve() or src_dir.resolve() in out_dir.resolve().parents:
        raise InputError("the output folder must not be the source folder or inside it", file=str(out_dir))
    src = open_source(src_dir)
    plan = plan_for(src, fmt=fmt, ignore=ignore, quantize_attention=quantize_attention,
                    quantize_dense_mlp=quantize_dense_mlp)
    layout = layout_outputs(plan, max_shard_size)
    with staging_dir(out_dir) as tmp:
        _write_shards(src, plan, layout, tmp, progress, workers or default_workers())
        (tmp / INDEX).write_text(layout.index_json())
        config = dict(src.config)
        config["quantization_config"] = quantization_config(plan.ignore)
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
        for name in src.other_files:
            shutil.copy2(src.root / name, tmp / name)
        files = sorted((p.name, p.stat().st_size) for p in tmp.iterdir() if p.is_file())
    return Nvfp4Result(out_dir=out_dir, fmt=fmt, files=files, quantized_modules=plan.quantized_modules,
                       kept_modules=len(plan.kept_linears), ignore=plan.ignore, bytes_in=src.tensor_bytes,
                       bytes_out=sum(s for _, s in files), seconds=time.perf_counter() - started,
                       notes=plan.notes)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", file="release.toml",
                         field="nvfp4.format")
    if fmt == "modelopt":
        raise NotAvailable("NVFP4 in the ModelOpt layout is not implemented; use format = "
                           "\"compressed-tensors\" (vLLM loads it on any GPU ≥ SM75)")


def _write_shards(src: Source, plan: Plan, layout: OutputLayout, tmp: Path,
                  progress: Callable[[int, int], None] | None, workers: int) -> None:
    total = src.tensor_bytes
    done = 0
    src_fds: dict[str, int] = {}
    out_fds: list[int] = []
    copier = RangeCopier()
    try:
        for shard in layout.shards:
            fd = os.open(tmp / shard.name, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            out_fds.append(fd)
            os.ftruncate(fd, shard.size)
            os.pwrite(fd, shard.header, 0)
        for t in src.tensors:
            if t.file not in src_fds:
                src_fds[t.file] = os.open(src.root / t.file, os.O_RDONLY)

        def task(item: QuantGroup | SrcTensor) -> int:
            if isinstance(item, SrcTensor):
                p = layout.placed[item.name]
                copier.copy(src_fds[item.file], out_fds[p.shard], [(item.begin, p.offset, item.nbytes)])
                return item.nbytes
            return _quantize_group(item, src_fds, layout, out_fds)

        def cost(item: QuantGroup | SrcTensor) -> int:  # copies go through the kernel, not our memory
            return 0 if isinstance(item, SrcTensor) else sum(m.nbytes for m in item.members)

        for nbytes in ordered_map(task, plan.work(), workers, cost, IN_FLIGHT_BYTES):
            done += nbytes
            if progress is not None:
                progress(done, total)
        for fd in out_fds:
            os.fsync(fd)
    finally:
        for fd in (*src_fds.values(), *out_fds):
            os.close(fd)


def _quantize_group(group: QuantGroup, src_fds: dict[str, int], layout: OutputLayout,
                    out_fds: list[int]) -> int:
    weights = []
    group_amax = None
    for m in group.members:
        w = read_2d(src_fds[m.src.file], m.src_offset, m.src.dtype, m.out_features, m.in_features,
                    file=m.src.file)
        a = numerics.amax(w)
        if not torch.isfinite(a):
            raise InputError(f"non-finite values (NaN or Inf) in a weight to be quantized ({m.label}); "
                             "fix the checkpoint or add the module to nvfp4.ignore", file=m.src.file,
                             field=m.src.name)
        group_amax = a if group_amax is None else torch.maximum(group_amax, a)
        weights.append(w)
    assert group_amax is not None
    gs = numerics.global_scale(group_amax)
    nbytes = 0
    for m, w in zip(group.members, weights, strict=True):
        packed, scale = numerics.quantize(w, gs)
        for suffix, data in (("weight_packed", packed), ("weight_scale", scale.view(torch.uint8)),
                             ("weight_global_scale", gs)):
            p = layout.placed[f"{m.module}.{suffix}"]
            _pwrite_all(out_fds[p.shard], memoryview(data.contiguous().view(torch.uint8).numpy()).cast("B"),
                        p.offset)
        nbytes += m.nbytes
    return nbytes


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    written = 0
    while written < len(view):
        written += os.pwrite(fd, view[written:], offset + written)
