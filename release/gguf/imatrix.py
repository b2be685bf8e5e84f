"""The importance matrix in llama-imatrix's GGUF format: reading, writing, and llama.cpp's own collector.

A release build computes its matrix layer by layer from the BF16 checkpoint in bounded memory
(release/gguf/imatrix_stream.py), with the chunking (`chunk_plan`) and the file writer (`write_imatrix`) of
this module. `compute_imatrix` here is llama.cpp's own computation, kept as the reference the streamed
matrix is measured against (tests, benchmarks/quality.py): it maps the whole F16/BF16 GGUF, which at 26B
size wants ≈41 GB of page cache. It runs llama.cpp's forward pass on the GGUF through the context's
`cb_eval` hook — the mechanism llama-imatrix uses — and accumulates Σx² and counts exactly as
tools/imatrix/imatrix.cpp (0c1e570) does: every MUL_MAT_ID (per expert, via the routing ids) and every
MUL_MAT on a `blk.*` weight with ≥16 F32 rows; chunks of n_ctx tokens with BOS first; logits for every
token so the last layer's FFN sees every row. (llama-cpp-python builds no `llama-imatrix` executable.)

File format (llama-imatrix GGUF, read by `llama-quantize --imatrix`): `general.type = "imatrix"`,
`imatrix.datasets` [str], `imatrix.chunk_count`, `imatrix.chunk_size`; per weight `<name>.in_sum2` f32
{ne0, n_mat} and `<name>.counts` f32 {1, n_mat}. For the quantizer, values are in_sum2 / counts per matrix,
1.0 where a matrix (expert) never saw a token (llama-quantize's neutral choice).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, WorkError
from ..fsutil import sha256_file
from .runtime import GGML_TYPE_F32, Runner, ggml_base, op_ids, tensor_array


@dataclass
class Stats:
    values: np.ndarray  # (n_mat, ne0) float32 Σx²
    counts: np.ndarray  # (n_mat,) int64


@dataclass
class ImatrixResult:
    path: Path
    chunks: int
    chunk_size: int
    entries: int
    dataset: str
    tokens: int
    partial: dict[str, float] = field(default_factory=dict)  # weight → share of experts that saw tokens


def _filter_name(name: str) -> str:
    # CUDA0#blk.0.attn_k.weight#0 → blk.0.attn_k.weight (as llama-imatrix)
    if "#" in name:
        rest = name.split("#", 1)[1]
        return rest.split("#", 1)[0]
    return name


class Collector:
    """The cb_eval hook: Σx² of every weight's input, per expert for MUL_MAT_ID."""

    def __init__(self) -> None:
        self.base = ggml_base()
        ops = op_ids(self.base, "MUL_MAT", "MUL_MAT_ID")
        self.mul_mat, self.mul_mat_id = ops["MUL_MAT"], ops["MUL_MAT_ID"]
        self.f32 = GGML_TYPE_F32
        self.stats: dict[str, Stats] = {}
        self.error: BaseException | None = None

    def __call__(self, t, ask: bool) -> bool:
        try:
            return self._collect(t, ask)
        except BaseException as exc:  # a Python exception must not unwind through C
            self.error = self.error or exc
            return False

    def _collect(self, t, ask: bool) -> bool:
        if t.op not in (self.mul_mat, self.mul_mat_id):
            return not ask
        src0, src1 = t.src[0].contents, t.src[1].contents
        wname = _filter_name(src0.name.decode(errors="replace"))
        if ask:
            if t.op == self.mul_mat_id:
                return True
            return src1.ne[1] >= 16 and src1.type == self.f32 and wname.startswith("blk.")
        x = tensor_array(self.base, src1, np.float32)  # (ne3, ne2, ne1, ne0)
        ne0 = x.shape[3]
        # Sums are float32 and added one row at a time in llama-imatrix's loop order (np.cumsum is a
        # sequential sum), so the file is the one llama-imatrix writes, to the bit.
        if t.op == self.mul_mat_id:
            ids_t = t.src[2].contents
            ids = tensor_array(self.base, ids_t, np.int32)[0, 0]  # (n_tokens, n_ids)
            n_as = int(src0.ne[2])
            n_tokens, n_ids = ids.shape
            if x.shape[0] != 1 or x.shape[1] != n_tokens:
                raise WorkError(f"imatrix: unexpected MUL_MAT_ID input shape for {wname}: {x.shape}")
            if ids.min() < 0 or ids.max() >= n_as:
                raise WorkError(f"imatrix: expert id out of range in {wname}")
            st = self.stats.get(wname)
            if st is None:
                st = self.stats[wname] = Stats(np.zeros((n_as, ne0), dtype=np.float32),
                                               np.zeros(n_as, dtype=np.int64))
            ne1 = x.shape[2]
            # llama-imatrix: for idx in slots: for row in tokens: acc[ids[row, idx]] += x[row, idx % ne1]²
            order_idx = np.repeat(np.arange(n_ids), n_tokens)
            order_row = np.tile(np.arange(n_tokens), n_ids)
            experts = ids[order_row, order_idx]
            for ex in np.unique(experts):
                sel = experts == ex
                rows = x[0, order_row[sel], order_idx[sel] % ne1, :]
                st.values[ex] = _sequential_sum(st.values[ex], rows)
            st.counts += np.bincount(experts, minlength=n_as)
        else:
            n_mat = int(src0.ne[2] * src0.ne[3])
            st = self.stats.get(wname)
            if st is None:
                st = self.stats[wname] = Stats(np.zeros((n_mat, ne0), dtype=np.float32),
                                               np.zeros(1, dtype=np.int64))
            ne3, ne2 = x.shape[0], x.shape[1]
            for i3 in range(ne3):
                for i2 in range(ne2):
                    mat = (i3 % int(src0.ne[3])) * int(src0.ne[2]) + (i2 % int(src0.ne[2]))
                    st.values[mat] = _sequential_sum(st.values[mat], x[i3, i2])
            st.counts += (x.shape[0] * x.shape[1] * x.shape[2]) // n_mat
        if not np.all(np.isfinite(st.values)):
            raise WorkError(f"imatrix: non-finite activations in {wname}")
        return True


def _sequential_sum(acc: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """acc + Σ rows² in float32, added row after row (not numpy's pairwise summation)."""
    sq = np.square(rows, dtype=np.float32)
    return np.cumsum(np.concatenate([acc[None, :], sq]), axis=0, dtype=np.float32)[-1]


def calibration_tokens(runner, text: str) -> list[int]:
    return runner.tokenize(text, add_special=True, parse_special=False)


def chunk_plan(n_tokens: int, chunks: int, n_ctx: int = 512) -> tuple[int, int]:
    """(chunks, tokens per chunk) the importance matrix (streamed or llama.cpp's) uses for `n_tokens` tokens.

    Below two chunks' worth the chunk shrinks to half the text (at least 16 tokens), so a short text
    gives at most 2 chunks whatever `chunks` asks; `release check` warns from this before a build.
    """
    if n_tokens < 2 * n_ctx:
        n_ctx = max(16, n_tokens // 2)
    return min(chunks, n_tokens // n_ctx), n_ctx


def compute_imatrix(model: Path, calibration: Path, out: Path, *, chunks: int = 16, n_ctx: int = 512,
                    threads: int = 2, progress: Callable[[int, int], None] | None = None) -> ImatrixResult:
    """Run llama.cpp on `model` (the F16/BF16 GGUF) over `calibration` text and write `out` (imatrix GGUF).

    `n_ctx` shrinks to half the calibration's tokens when the text is short (llama-imatrix needs two
    chunks' worth); at least one full chunk is required.
    """

    try:
        text = calibration.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read calibration text: {exc}", file=str(calibration)) from exc
    collector = Collector()
    with Runner(model, n_ctx=n_ctx, n_threads=threads) as probe:
        tokens = calibration_tokens(probe, text)
        add_bos, bos = probe.add_bos, probe.bos
    n_chunk, n_ctx = chunk_plan(len(tokens), chunks, n_ctx)
    if n_chunk < 1:
        raise InputError(f"calibration text has only {len(tokens)} tokens; need at least 32",
                         file=str(calibration))
    with Runner(model, n_ctx=n_ctx, n_threads=threads, eval_callback=collector) as runner:
        for i in range(n_chunk):
            chunk = tokens[i * n_ctx:(i + 1) * n_ctx]
            if add_bos:
                chunk = [bos, *chunk[1:]]
            runner.decode(chunk)
            if collector.error is not None:
                raise WorkError(f"imatrix collection failed: {collector.error}") from collector.error
            if progress:
                progress(i + 1, n_chunk)
    if not collector.stats:
        raise WorkError("imatrix: no matrix multiplication was observed (cb_eval not called?)")
    write_imatrix(out, collector.stats, dataset=calibration.name, chunk_count=n_chunk, chunk_size=n_ctx)
    partial = {k: float((s.counts > 0).mean()) for k, s in collector.stats.items() if (s.counts == 0).any()}
    return ImatrixResult(out, n_chunk, n_ctx, len(collector.stats), calibration.name, n_chunk * n_ctx, partial)


def write_imatrix(out: Path, stats: dict[str, Stats], *, dataset: str, chunk_count: int, chunk_size: int) -> None:
    import gguf

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    w = gguf.GGUFWriter(str(tmp), arch="imatrix")
    # llama-imatrix writes no architecture key; keep the file identical in shape.
    w.kv_data[0].pop("general.architecture", None)
    w.add_type("imatrix")
    w.add_array("imatrix.datasets", [dataset])
    w.add_uint32("imatrix.chunk_count", chunk_count)
    w.add_uint32("imatrix.chunk_size", chunk_size)
    for name in sorted(stats):
        st = stats[name]
        n_mat = st.values.shape[0]
        counts = st.counts if len(st.counts) == n_mat else np.full(n_mat, st.counts[0])
        # ggml drops trailing dimensions of 1 when writing: a dense weight's entry is 1-D, as llama-imatrix's.
        values = st.values[0] if n_mat == 1 else st.values
        w.add_tensor(f"{name}.in_sum2", values.astype(np.float32))
        w.add_tensor(f"{name}.counts", counts.astype(np.float32).reshape(n_mat, 1) if n_mat > 1
                     else counts.astype(np.float32).reshape(1))
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_imatrix(path: Path) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Per-weight importance (float32, n_mat × ne0 flattened, normalised as llama-quantize does) and metadata."""
    import gguf

    try:
        r = gguf.GGUFReader(str(path))
    except Exception as exc:  # the reader raises bare ValueError/struct errors on junk
        raise InputError(f"not a GGUF imatrix file: {exc}", file=str(path)) from exc
    f = r.fields.get("general.type")
    if f is None or f.contents() != "imatrix":
        raise InputError("not an imatrix GGUF (general.type != 'imatrix'); legacy .dat files are not supported",
                         file=str(path), field="general.type")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray] = {}
    for t in r.tensors:
        if t.name.endswith(".in_sum2"):
            sums[t.name[:-8]] = np.asarray(t.data, dtype=np.float32).reshape(-1, int(t.shape[0]))
        elif t.name.endswith(".counts"):
            counts[t.name[:-7]] = np.asarray(t.data, dtype=np.float32).reshape(-1)
    data: dict[str, np.ndarray] = {}
    for name, s in sums.items():
        c = counts.get(name)
        if c is None:
            raise InputError(f"{name}.counts missing", file=str(path))
        out = np.ones_like(s)
        seen = c > 0
        out[seen] = s[seen] / c[seen, None]
        data[name] = out.reshape(-1).astype(np.float32)
    meta: dict[str, object] = {"sha256": sha256_file(path), "entries": len(data)}
    for key, short in (("imatrix.datasets", "datasets"), ("imatrix.chunk_count", "chunks"),
                       ("imatrix.chunk_size", "chunk_size")):
        fld = r.fields.get(key)
        if fld is not None:
            meta[short] = fld.contents()
    return data, meta
