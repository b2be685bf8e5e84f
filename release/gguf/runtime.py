"""A thin in-process runner over libllama (llama-cpp-python's ctypes API): load a GGUF, tokenize, decode
a batch, read logits, and optionally watch every matrix multiplication through `cb_eval`.

Used for the importance matrix (release.gguf.imatrix) and the smoke test (next-token distributions vs the
baseline). The high-level `llama_cpp.Llama` is avoided: it hides `cb_eval` and trips on the iSWA cache
when reused (docs/gguf.md G8).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import numpy as np

_BACKEND_READY = False


def llama():
    """The llama_cpp binding, with the backend initialised once and logging silenced."""
    global _BACKEND_READY
    import llama_cpp

    if not _BACKEND_READY:
        llama_cpp.llama_backend_init()
        _silence(llama_cpp)
        _BACKEND_READY = True
    return llama_cpp


_LOG_CB = None


def _silence(lc) -> None:
    # libllama prints every tensor while loading/quantizing; keep errors only (level 4 = ERROR).
    global _LOG_CB

    @ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    def _log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        if level == 4 and text:
            import sys

            sys.stderr.write(text.decode(errors="replace"))

    _LOG_CB = _log
    lc.llama_log_set(_log, ctypes.c_void_p(0))


class GgmlTensor(ctypes.Structure):
    """`struct ggml_tensor` of ggml 0.25.x (llama.cpp 0c1e570: ggml/include/ggml.h)."""


GgmlTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * 4),
    ("nb", ctypes.c_size_t * 4),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * 16),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GgmlTensor) * 10),
    ("view_src", ctypes.POINTER(GgmlTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * 64),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]

GGML_TYPE_F32 = 0
GGML_TYPE_I32 = 26


def ggml_base() -> ctypes.CDLL:
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"
    base = ctypes.CDLL(str(lib))
    base.ggml_op_name.restype = ctypes.c_char_p
    base.ggml_op_name.argtypes = [ctypes.c_int]
    base.ggml_nbytes.restype = ctypes.c_size_t
    base.ggml_nbytes.argtypes = [ctypes.c_void_p]
    base.ggml_backend_tensor_get.restype = None
    base.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    return base


def op_ids(base: ctypes.CDLL, *names: str) -> dict[str, int]:
    """Enum values of ggml ops by name (looked up, not hard-coded, so a shifted enum can't mislead)."""
    out: dict[str, int] = {}
    for i in range(256):
        name = base.ggml_op_name(i)
        if name is None:
            break
        s = name.decode()
        if s in names:
            out[s] = i
        if len(out) == len(names):
            return out
    raise RuntimeError(f"ggml ops not found: {set(names) - set(out)}")


def tensor_array(base: ctypes.CDLL, t: GgmlTensor, dtype: np.dtype) -> np.ndarray:
    """A copy of tensor `t` as an array of shape (ne3, ne2, ne1, ne0), honouring its byte strides."""
    nbytes = base.ggml_nbytes(ctypes.addressof(t))
    buf = np.empty(nbytes, dtype=np.uint8)
    base.ggml_backend_tensor_get(ctypes.addressof(t), buf.ctypes.data, 0, nbytes)
    ne = [int(t.ne[i]) for i in range(4)]
    nb = [int(t.nb[i]) for i in range(4)]
    return _strided(buf, ne, nb, dtype)


def _strided(buf: np.ndarray, ne: list[int], nb: list[int], dtype: np.dtype) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    base_arr = np.frombuffer(buf, dtype=dtype, count=len(buf) // itemsize)
    strides = tuple(nb[i] for i in (3, 2, 1, 0))
    return np.lib.stride_tricks.as_strided(base_arr, shape=(ne[3], ne[2], ne[1], ne[0]), strides=strides,
                                           writeable=False)


EvalCallback = Callable[[GgmlTensor, bool], bool]


def _tokenize(lc, vocab, text: str, add_special: bool, parse_special: bool) -> list[int]:  # type: ignore[no-untyped-def]
    data = text.encode()
    cap = len(data) + 16
    buf = (lc.llama_token * cap)()
    n = lc.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    if n < 0:
        cap = -n
        buf = (lc.llama_token * cap)()
        n = lc.llama_tokenize(vocab, data, len(data), buf, cap, add_special, parse_special)
    return list(buf[:n])


def tokenize_file(path: Path, text: str, *, add_special: bool = True,
                  parse_special: bool = False) -> tuple[list[int], bool, int]:
    """(tokens, whether the model adds BOS, the BOS id) from a GGUF's vocabulary alone (loaded vocab-only: no
    weight is mapped)."""
    lc = llama()
    params = lc.llama_model_default_params()
    params.vocab_only = True
    model = lc.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise RuntimeError(f"libllama could not read the vocabulary of {path}")
    try:
        vocab = lc.llama_model_get_vocab(model)
        return (_tokenize(lc, vocab, text, add_special, parse_special), bool(lc.llama_vocab_get_add_bos(vocab)),
                int(lc.llama_vocab_bos(vocab)))
    finally:
        lc.llama_model_free(model)


class Runner:
    """One model + one context. `logits(tokens)` decodes a sequence from position 0 (cache cleared)."""

    def __init__(self, path: Path, *, n_ctx: int = 512, n_threads: int = 2,
                 eval_callback: EvalCallback | None = None, flash_attn: bool | None = None) -> None:
        """`flash_attn`: None leaves llama.cpp's choice (auto: on for CPU); False computes attention without
        it, in float32 — what quality measurements want (on CPU its float16 accumulation moves logits by
        tenths, as much as some quantizations do)."""
        lc = llama()
        self.lc = lc
        mp = lc.llama_model_default_params()
        self.model = lc.llama_model_load_from_file(str(path).encode(), mp)
        if not self.model:
            raise RuntimeError(f"libllama could not load {path}")
        self.vocab = lc.llama_model_get_vocab(self.model)
        cp = lc.llama_context_default_params()
        cp.n_ctx = n_ctx
        cp.n_batch = n_ctx
        cp.n_ubatch = n_ctx
        cp.n_threads = n_threads
        cp.n_threads_batch = n_threads
        if flash_attn is not None:
            cp.flash_attn_type = 1 if flash_attn else 0  # LLAMA_FLASH_ATTN_TYPE_ENABLED / _DISABLED
        self._cb = None
        if eval_callback is not None:
            def _cb(ptr: int, ask: bool, _user: int) -> bool:
                return eval_callback(GgmlTensor.from_address(ptr), bool(ask))

            self._cb = lc.ggml_backend_sched_eval_callback(_cb)
            cp.cb_eval = self._cb
            cp.cb_eval_user_data = None
        self.ctx = lc.llama_init_from_model(self.model, cp)
        if not self.ctx:
            lc.llama_model_free(self.model)
            raise RuntimeError(f"libllama could not create a context for {path}")
        self.n_ctx = n_ctx
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)

    @property
    def add_bos(self) -> bool:
        return bool(self.lc.llama_vocab_get_add_bos(self.vocab))

    @property
    def bos(self) -> int:
        return int(self.lc.llama_vocab_bos(self.vocab))

    def tokenize(self, text: str, *, add_special: bool = True, parse_special: bool = False) -> list[int]:
        return _tokenize(self.lc, self.vocab, text, add_special, parse_special)

    def decode(self, tokens: list[int]) -> None:
        """Decode `tokens` as one sequence from position 0, outputs for every token."""
        lc = self.lc
        if len(tokens) > self.n_ctx:
            raise ValueError(f"{len(tokens)} tokens > n_ctx {self.n_ctx}")
        lc.llama_memory_clear(lc.llama_get_memory(self.ctx), True)
        batch = lc.llama_batch_init(len(tokens), 0, 1)
        try:
            for i, tok in enumerate(tokens):
                batch.token[i] = tok
                batch.pos[i] = i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                # Every position is an output: llama.cpp otherwise skips the last layer's FFN for
                # non-output rows, which would starve the importance matrix of those activations.
                batch.logits[i] = 1
            batch.n_tokens = len(tokens)
            rc = lc.llama_decode(self.ctx, batch)
            if rc != 0:
                raise RuntimeError(f"llama_decode failed ({rc})")
        finally:
            lc.llama_batch_free(batch)

    def logits(self, tokens: list[int]) -> np.ndarray:
        """(len(tokens), n_vocab) float32 logits."""
        self.decode(tokens)
        ptr = self.lc.llama_get_logits(self.ctx)
        return np.ctypeslib.as_array(ptr, shape=(len(tokens), self.n_vocab)).copy()

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode(errors="replace") if n >= 0 else None

    def close(self) -> None:
        if getattr(self, "ctx", None):
            self.lc.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            self.lc.llama_model_free(self.model)
            self.model = None

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
