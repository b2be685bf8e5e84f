"""Read, validate and write safetensors headers without touching tensor data.

File layout: 8-byte little-endian u64 `N`, `N` bytes of JSON header, then the data. Offsets in the header
are relative to byte `8 + N`. The writer reproduces what the safetensors library writes (compact JSON,
`__metadata__` first, entries in data-offset order, spaces to a multiple of 8), so rewriting an unchanged
header gives the same bytes — that is what makes an identity prune byte-identical.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, ProblemCollector
from ..spec.readers import loads_guarded
from .jsontext import value_span

# Bits per element; sub-byte types (F4 …) pack several elements per byte.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E4M3": 8, "F8_E4M3FNUZ": 8, "F8_E5M2": 8, "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8, "E8M0": 8, "U16": 16, "I16": 16, "F16": 16, "BF16": 16, "U32": 32, "I32": 32, "F32": 32,
    "U64": 64, "I64": 64, "F64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}
# A header is a few hundred bytes per tensor; this bounds a corrupt length before we allocate for it.
MAX_HEADER_BYTES = 256 << 20


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # relative to the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class ShardHeader:
    path: Path
    file: str  # name shown in messages (relative to the checkpoint folder)
    header_len: int
    entries: tuple[TensorEntry, ...]  # in data-offset order
    metadata_json: str | None  # raw text of "__metadata__" as found, so it is written back unchanged
    file_size: int

    @property
    def data_start(self) -> int:
        return 8 + self.header_len

    @property
    def data_len(self) -> int:
        return self.entries[-1].end if self.entries else 0

    def by_name(self) -> dict[str, TensorEntry]:
        return {e.name: e for e in self.entries}


def expected_nbytes(dtype: str, shape: tuple[int, ...]) -> int | None:
    bits = DTYPE_BITS.get(dtype)
    if bits is None:
        return None
    total_bits = math.prod(shape) * bits
    return (total_bits + 7) // 8


def read_header(path: Path, file: str | None = None) -> ShardHeader:
    """Parse and validate one shard's header against the file's size; every problem at once."""
    file = file or path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise InputError(f"{size} bytes: too short for a safetensors file (needs an 8-byte header "
                                 "length)", file=file, field="header length")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise InputError(f"header length {n} runs past the end of the file ({size} bytes): truncated "
                                 "or not a safetensors file", file=file, field="header length")
            raw = fh.read(n)
    except FileNotFoundError as exc:
        raise InputError("file not found", file=file) from exc
    except IsADirectoryError as exc:
        raise InputError("is a directory, expected a safetensors file", file=file) from exc
    except PermissionError as exc:
        raise InputError(f"cannot read: {exc.strerror}", file=file) from exc
    text, header = parse_header_json(raw, file)

    problems = ProblemCollector()
    metadata_json: str | None = None
    if "__metadata__" in header:
        meta = header["__metadata__"]
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            problems.add(file, "__metadata__", "must be an object of strings")
        else:
            try:
                start, end = value_span(text, ("__metadata__",), first_member=True)
            except KeyError:  # not first (another writer): find it the slow way
                start, end = value_span(text, ("__metadata__",))
            metadata_json = text[start:end]

    entries: list[TensorEntry] = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        entry = _entry(name, info, file, problems)
        if entry is not None:
            entries.append(entry)
    entries.sort(key=lambda e: (e.begin, e.end))

    position = 0
    for e in entries:
        if e.begin < position:
            problems.add(file, f"{e.name}.data_offsets",
                         f"[{e.begin}, {e.end}] overlaps the previous tensor (which ends at {position})")
        elif e.begin > position:
            problems.add(file, f"{e.name}.data_offsets",
                         f"starts at {e.begin}, leaving a gap after byte {position}")
        position = max(position, e.end)
    data_len = 8 + n + position
    if not problems and data_len != size:
        what = "truncated" if data_len > size else "has trailing bytes"
        problems.add(file, "data_offsets",
                     f"file {what}: the header's tensors end at byte {data_len}, the file has {size} bytes")
    problems.raise_if_any()
    return ShardHeader(path=path, file=file, header_len=n, entries=tuple(entries),
                       metadata_json=metadata_json, file_size=size)


def parse_header_json(raw: bytes, file: str) -> tuple[str, dict[str, Any]]:
    """(text, object) of a header's JSON; anything else — not UTF-8, not JSON, nested deeper than any real
    header (three levels) so that the parser would recurse without end — is one InputError naming the file."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"header is not valid JSON: {exc}", file=file, field="header") from exc
    header = loads_guarded(text, file, "header")
    if not isinstance(header, dict):
        raise InputError("header must be a JSON object", file=file, field="header")
    return text, header


def _entry(name: str, info: Any, file: str, problems: ProblemCollector) -> TensorEntry | None:
    if not isinstance(info, dict):
        problems.add(file, name, "tensor entry must be an object with dtype, shape, data_offsets")
        return None
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    ok = True
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        problems.add(file, f"{name}.dtype", f"unknown dtype {dtype!r}")
        ok = False
    if not (isinstance(shape, list) and all(_nonneg_int(d) for d in shape)):
        problems.add(file, f"{name}.shape", f"must be a list of non-negative integers, got {shape!r}")
        ok = False
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_nonneg_int(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        problems.add(file, f"{name}.data_offsets",
                     f"must be [begin, end] with 0 ≤ begin ≤ end, got {offsets!r}")
        ok = False
    if not ok:
        return None
    assert isinstance(dtype, str) and isinstance(shape, list) and isinstance(offsets, list)
    want = expected_nbytes(dtype, tuple(shape))
    if want != offsets[1] - offsets[0]:
        problems.add(file, f"{name}.data_offsets",
                     f"{dtype} {shape} needs {want} bytes, the offsets [{offsets[0]}, {offsets[1]}] span "
                     f"{offsets[1] - offsets[0]}")
        return None
    return TensorEntry(name, dtype, tuple(shape), offsets[0], offsets[1])


def _nonneg_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def encode_header(entries: list[TensorEntry], metadata_json: str | None) -> bytes:
    """Header bytes (length prefix included) for `entries`, which must be in data-offset order."""
    parts = []
    if metadata_json is not None:
        parts.append('"__metadata__":' + metadata_json)
    for e in entries:
        # Formatted by hand (dtype is one of DTYPE_BITS' plain names): json.dumps per entry dominated
        # planning for checkpoints with 10^5 per-expert tensors. Same bytes as compact json.dumps.
        shape = ",".join(str(d) for d in e.shape)
        parts.append(f'{json.dumps(e.name, ensure_ascii=False)}:{{"dtype":"{e.dtype}","shape":[{shape}],'
                     f'"data_offsets":[{e.begin},{e.end}]}}')
    raw = ("{" + ",".join(parts) + "}").encode("utf-8")
    # Pad so the data section starts 8-aligned, as the safetensors writer does.
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw

