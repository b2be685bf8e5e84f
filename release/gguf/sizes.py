"""Planned byte size of a GGUF file: its header plus every tensor at the type llama.cpp will write
(release.gguf.mixture), each tensor's data padded to the file's alignment as ggml's writer does.

GGUF v3 layout (ggml docs/gguf.md): magic, version, tensor and KV counts (24 bytes); the KV pairs; one info
record per tensor (name, dims, type, offset); padding to `general.alignment` (32); the tensor data.
"""

from __future__ import annotations

from . import tiers as T
from .mixture import tensor_types
from .names import ExpectedTensor, ModelHparams

ALIGNMENT = 32
# KV metadata besides the vocabulary (architecture keys, names, chat template, quantize.* keys)
_KV_FIXED_BYTES = 4096
# Per vocabulary entry: the token string, its score and type, and about one merge. Measured 29 B on the
# demo's byte-level BPE; at the 26B's 262k vocabulary this is ≈8 MB, under 0.1 % of any tier.
_KV_BYTES_PER_TOKEN = 30


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def _info_bytes(t: ExpectedTensor) -> int:
    dims = len(t.shape) or (1 if t.n_elements == t.ne0 else 2)
    return 8 + len(t.name.encode()) + 4 + 8 * dims + 4 + 8


def file_size(tensors: list[ExpectedTensor], types: dict[str, str], *, vocab_size: int) -> int:
    """Bytes of a GGUF holding `tensors` at `types` (name → ggml type)."""
    header = 24 + _KV_FIXED_BYTES + _KV_BYTES_PER_TOKEN * vocab_size + sum(_info_bytes(t) for t in tensors)
    return _align(header) + sum(_align(T.tensor_bytes(types[t.name], t.n_elements)) for t in tensors)


def tier_size(tensors: list[ExpectedTensor], hp: ModelHparams, recipe: T.TierRecipe, *, has_imatrix: bool) -> int:
    """Planned bytes of one tier (or of the baseline conversion: a recipe whose ftype is the baseline)."""
    types = tensor_types(tensors, recipe, hp, has_imatrix=has_imatrix)
    return file_size(tensors, types, vocab_size=hp.vocab_size)
