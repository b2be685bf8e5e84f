"""Source checkpoint access and output shard layout shared by the builder, the estimator and verify."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError
from ..prune.checkpoint import CONFIG, INDEX, WEIGHT_SUFFIXES, inspect_checkpoint
from ..prune.safetensors_header import TensorEntry, encode_header, read_header
from .layout import DTYPE_BYTES, OutTensor, Plan, QuantGroup, SrcTensor

TORCH_DTYPES = {"BF16": torch.bfloat16, "F32": torch.float32, "F16": torch.float16, "U8": torch.uint8,
                "F8_E4M3": torch.float8_e4m3fn}
DEFAULT_MAX_SHARD = 2 * 10**9
SAFETENSORS_METADATA = '{"format":"pt"}'


@dataclass
class Source:
    """A validated safetensors checkpoint folder: config, tensors in reading order, other files."""

    root: Path
    config: dict[str, Any]
    tensors: list[SrcTensor]
    other_files: list[str]

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)


def open_source(src_dir: Path) -> Source:
    info = inspect_checkpoint(Path(src_dir))  # every header validated; InputError names file + field
    if isinstance(info.config.get("quantization_config"), dict):
        raise InputError("already quantized (has quantization_config); NVFP4 needs the BF16 checkpoint",
                         file=CONFIG, field="quantization_config")
    tensors: list[SrcTensor] = []
    for shard in info.shards:
        for e in shard.entries:
            tensors.append(SrcTensor(e.name, e.dtype, e.shape, shard.file, shard.data_start + e.begin,
                                     len(tensors)))
    handled = {CONFIG, INDEX, *(s.file for s in info.shards)}
    # other weight formats (.bin, .gguf …) would be stale next to the quantized shards
    others = sorted(p.name for p in info.base_dir.iterdir()
                    if p.is_file() and p.name not in handled and not p.name.endswith(WEIGHT_SUFFIXES))
    return Source(info.base_dir, info.config, tensors, others)


def read_2d(fd: int, offset: int, dtype: str, rows: int, cols: int, *, file: str = "") -> torch.Tensor:
    """rows × cols elements at `offset`, read with pread into a fresh tensor (no mmap: RSS stays the
    size of what we hold, not of what the page cache touched)."""
    buf = torch.empty(rows * cols * DTYPE_BYTES[dtype], dtype=torch.uint8)
    view = memoryview(buf.numpy()).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise InputError(f"ends before byte {offset + len(view)} promised by its header", file=file)
        done += n
    return buf.view(TORCH_DTYPES[dtype]).reshape(rows, cols)


@dataclass
class Placed:
    tensor: OutTensor
    shard: int
    offset: int  # absolute byte offset in the shard file


@dataclass
class ShardFile:
    name: str
    header: bytes
    size: int


@dataclass
class OutputLayout:
    shards: list[ShardFile]
    placed: dict[str, Placed]

    @property
    def tensor_bytes(self) -> int:
        return sum(p.tensor.nbytes for p in self.placed.values())

    @property
    def file_bytes(self) -> int:
        return sum(s.size for s in self.shards)

    def index_json(self) -> str:
        weight_map = {name: self.shards[p.shard].name for name, p in sorted(self.placed.items())}
        return json.dumps({"metadata": {"total_size": self.tensor_bytes}, "weight_map": weight_map},
                          indent=2) + "\n"


def layout_outputs(plan: Plan, max_shard_size: int = DEFAULT_MAX_SHARD) -> OutputLayout:
    """Assign output tensors to shards in processing order, so each shard fills while its inputs are
    read; inside a shard, wider dtypes come first so every tensor's data is aligned to its item size."""
    buckets: list[list[OutTensor]] = [[]]
    size = 0
    for item in plan.work():
        for t in plan.outputs_of(item):
            if buckets[-1] and size + t.nbytes > max_shard_size:
                buckets.append([])
                size = 0
            buckets[-1].append(t)
            size += t.nbytes
    n = len(buckets)
    shards: list[ShardFile] = []
    placed: dict[str, Placed] = {}
    for i, bucket in enumerate(buckets):
        name = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
        ordered = sorted(bucket, key=lambda t: -DTYPE_BYTES[t.dtype])  # stable: keeps processing order
        entries: list[TensorEntry] = []
        pos = 0
        for t in ordered:
            entries.append(TensorEntry(t.name, t.dtype, t.shape, pos, pos + t.nbytes))
            pos += t.nbytes
        header = encode_header(entries, SAFETENSORS_METADATA)
        for t, e in zip(ordered, entries, strict=True):
            placed[t.name] = Placed(t, i, len(header) + e.begin)
        shards.append(ShardFile(name, header, len(header) + pos))
    return OutputLayout(shards, placed)


def group_label(group: QuantGroup) -> str:
    return ", ".join(m.module for m in group.members)


def read_quant_shard_headers(quant_dir: Path) -> dict[str, tuple[str, TensorEntry, int]]:
    """name → (shard file, entry, absolute data offset) for every tensor of an output checkpoint."""
    index_path = quant_dir / INDEX
    if index_path.exists():
        files = sorted(set(json.loads(index_path.read_text())["weight_map"].values()))
    else:
        files = sorted(p.name for p in quant_dir.glob("*.safetensors"))
    out: dict[str, tuple[str, TensorEntry, int]] = {}
    for f in files:
        h = read_header(quant_dir / f, f)
        for e in h.entries:
            out[e.name] = (f, e, h.data_start + e.begin)
    return out
