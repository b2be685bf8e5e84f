"""One tier = one in-process `llama_model_quantize` call (byte-identical to the llama-quantize binary,
docs/gguf.md §2.3), run in its own process so tiers can go in parallel and a crash in C++ costs
only that tier.
"""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import WorkError
from . import tiers as T


@dataclass(frozen=True)
class QuantizeJob:
    """Everything a worker process needs (picklable)."""

    tier: str
    source: str  # the F16/BF16 GGUF
    out: str  # final path (written as <out>.partial, renamed on success)
    ftype: str
    embed_type: str | None
    output_type: str | None
    overrides: tuple[tuple[str, str], ...]
    imatrix: str | None  # imatrix GGUF path, or None
    imatrix_dataset: str | None
    nthread: int


def quantize(job: QuantizeJob) -> dict[str, Any]:
    """Quantize `job.source` into `job.out`; returns timing. Raises WorkError on a non-zero status."""
    from .runtime import llama  # lazy: numpy and libllama at start-up

    lc = llama()
    started, cpu0 = time.perf_counter(), time.process_time()
    p = lc.llama_model_quantize_default_params()
    p.ftype = T.FTYPES[job.ftype]
    p.nthread = job.nthread
    keep: list[Any] = []  # every ctypes buffer stays referenced until the call returns
    if job.embed_type:
        p.token_embedding_type = T.GGML_TYPE_IDS[job.embed_type.lower()]
    if job.output_type:
        p.output_tensor_type = T.GGML_TYPE_IDS[job.output_type.lower()]
    if job.overrides:
        ov = (lc.llama_model_tensor_override * (len(job.overrides) + 1))()
        for i, (pattern, typ) in enumerate(job.overrides):
            ov[i].pattern = pattern.encode()
            ov[i].type = T.GGML_TYPE_IDS[typ.lower()]
        ov[len(job.overrides)].pattern = None
        keep.append(ov)
        p.tt_overrides = ctypes.cast(ov, ctypes.POINTER(lc.llama_model_tensor_override))
    kvs: list[tuple[str, str | int]] = []
    if job.imatrix:
        from .imatrix import load_imatrix  # lazy: numpy at start-up

        data, meta = load_imatrix(Path(job.imatrix))
        im = (lc.llama_model_imatrix_data * (len(data) + 1))()
        for i, (name, arr) in enumerate(sorted(data.items())):
            keep.append(arr)
            bname = name.encode()
            keep.append(bname)
            im[i].name = bname
            im[i].data = arr.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            im[i].size = arr.size
        im[len(data)].name = None
        keep.append(im)
        p.imatrix = ctypes.cast(im, ctypes.POINTER(lc.llama_model_imatrix_data))
        # What llama-quantize records (quantize.cpp); strings are capped at 127 bytes (G6).
        kvs.append(("quantize.imatrix.file", Path(job.imatrix).name[:127]))
        if job.imatrix_dataset:
            kvs.append(("quantize.imatrix.dataset", job.imatrix_dataset[:127]))
        kvs.append(("quantize.imatrix.entries_count", len(data)))
        chunks = meta.get("chunks")
        if isinstance(chunks, int) and chunks > 0:
            kvs.append(("quantize.imatrix.chunks_count", chunks))
    if kvs:
        arr = (lc.llama_model_kv_override * (len(kvs) + 1))()
        for i, (key, val) in enumerate(kvs):
            arr[i].key = key.encode()
            if isinstance(val, int):
                arr[i].tag = lc.LLAMA_KV_OVERRIDE_TYPE_INT
                arr[i].value.val_i64 = val
            else:
                arr[i].tag = lc.LLAMA_KV_OVERRIDE_TYPE_STR
                arr[i].value.val_str = val.encode()
        arr[len(kvs)].key = b""
        keep.append(arr)
        p.kv_overrides = ctypes.cast(arr, ctypes.POINTER(lc.llama_model_kv_override))

    out = Path(job.out)
    tmp = out.with_name(f".{out.name}.partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    rc = lc.llama_model_quantize(job.source.encode(), str(tmp).encode(), ctypes.byref(p))
    del keep
    if rc != 0:
        tmp.unlink(missing_ok=True)
        hint = " (this type needs an importance matrix)" if job.imatrix is None else ""
        raise WorkError(f"llama_model_quantize failed for {job.tier} (status {rc}){hint}")
    os.replace(tmp, out)
    return {"tier": job.tier, "wall_s": round(time.perf_counter() - started, 2),
            "cpu_s": round(time.process_time() - cpu0, 2)}


def run_job(job: QuantizeJob) -> dict[str, Any]:
    """Process-pool entry point: exceptions cross the process boundary as WorkError text."""
    try:
        return quantize(job)
    except WorkError:
        raise
    except Exception as exc:
        raise WorkError(f"{job.tier}: {type(exc).__name__}: {exc}") from None
