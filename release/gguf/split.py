"""Split a GGUF above the size limit in llama.cpp's split format (what `llama-gguf-split --split
--split-max-size` writes: `<stem>-00001-of-0000N.gguf`, `split.no`/`split.count`/`split.tensors.count`,
metadata in the first shard), into a per-tier folder as bartowski and unsloth publish them. Written with
gguf's GGUFWriter (docs/gguf.md §5: same shards and identical logits as llama-gguf-split).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..fsutil import staging_dir


def split_gguf(source: Path, folder: Path, stem: str, max_bytes: int,
               progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Write `folder/<stem>-0000i-of-0000N.gguf` from `source`; returns the shard paths (sorted)."""
    import gguf

    reader = gguf.GGUFReader(str(source))
    arch = reader.fields["general.architecture"].contents()
    with staging_dir(folder) as tmp:
        writer = gguf.GGUFWriter(str(tmp / f"{stem}.gguf"), arch=arch, split_max_size=max_bytes)
        for field in reader.fields.values():
            # GGUF.* are the reader's virtual fields; the writer adds the architecture and split keys itself.
            if field.name.startswith("GGUF.") or field.name == "general.architecture" or \
                    field.name.startswith("split."):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
        total = 0
        for t in reader.tensors:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
            total += t.n_bytes
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        done = 0
        for t in reader.tensors:
            writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
            done += t.n_bytes
            if progress:
                progress(done, total)
        writer.close()
        if len(list(tmp.glob("*.gguf"))) == 1:
            # A single tensor larger than the limit cannot be split; keep llama.cpp's naming anyway.
            (tmp / f"{stem}.gguf").rename(tmp / f"{stem}-00001-of-00001.gguf")
    return sorted(folder.glob(f"{stem}-*-of-*.gguf"))
