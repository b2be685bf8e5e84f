"""NVFP4 weight numerics, bit-exact with compressed-tensors 0.19/0.20 (as llm-compressor 0.14 runs it).

The order and dtype of every operation below is deliberate: compressed-tensors computes the global
scale and the block scale in the *weight's* dtype (bf16 for our checkpoints), then multiplies them
in fp32. Doing the same arithmetic in fp32 throughout changes ≈2 % of the packed bytes, so the
arithmetic mirrors the reference rather than the textbook formula (docs/nvfp4.md §2.1).

Work is done in row chunks of ~CHUNK_ELEMS elements: whole-tensor torch ops on CPU are several
times slower (they fall out of cache) and would allocate fp32 copies of the whole tensor.
"""

from __future__ import annotations

import torch

from .layout import GROUP  # elements per block scale

FP4_MAX = 6.0
FP8_MAX = 448.0
SCALE_EPS = 0.125  # compressed-tensors' substitute for a block scale that rounds to 0 in e4m3
CHUNK_ELEMS = 1 << 19

# E2M1 rounding by one fp32 add: a + M with M = 1.5·2^23·step has an ulp of exactly `step` (0.5 below
# 2, 1 in [2, 4), 2 in [4, 6]), so the FPU's own round-to-nearest-even puts a on the E2M1 grid with
# the reference's tie rules (0.25, 1.25, 2.5, 5 down; 0.75, 1.75, 3.5 up) and no double rounding.
# The integer difference of the bit patterns is then the grid index within that binade.
_MAGIC = float(3 * 2**21)  # × 2^exponent(a): 1.5·2^23·step with step = 2^exponent / 2
E2M1_VALUES = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                            -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=torch.float32)

# byte → (value of the low nibble, value of the high nibble)
_BYTE_VALUES = torch.stack((E2M1_VALUES.repeat(16), E2M1_VALUES.repeat_interleave(16)), dim=-1)

SUPPORTED_DTYPES = (torch.bfloat16, torch.float32)


def _rows_per_chunk(cols: int) -> int:
    return max(1, CHUNK_ELEMS // max(cols, 1))


def amax(w: torch.Tensor) -> torch.Tensor:
    """max |w| in w's own dtype (exact); NaN propagates so callers can refuse non-finite weights."""
    rows = _rows_per_chunk(w.shape[-1])
    out = torch.zeros((), dtype=w.dtype)
    for r in range(0, w.shape[0], rows):
        out = torch.maximum(out, w[r:r + rows].abs().amax())
    return out


def global_scale(group_amax: torch.Tensor) -> torch.Tensor:
    """fp32 [1] encode factor 2688/amax, computed in amax's dtype like compressed-tensors' generate_gparam.

    An all-zero group (or one so small that 2688/amax overflows) gets 1.0, as the reference does.
    """
    a = torch.clamp(group_amax, min=torch.finfo(group_amax.dtype).tiny)
    gs = (FP8_MAX * FP4_MAX) / a
    gs = torch.nan_to_num(gs, nan=1.0, posinf=1.0, neginf=1.0)
    return gs.to(torch.float32).reshape(1)


def _block_amax(ax: torch.Tensor) -> torch.Tensor:
    # a halving tree of elementwise maxima beats amax(-1) over a 16-wide inner dim
    m = torch.maximum(ax[..., :8], ax[..., 8:])
    m = torch.maximum(m[..., :4], m[..., 4:])
    m = torch.maximum(m[..., :2], m[..., 2:])
    return torch.maximum(m[..., 0], m[..., 1])


def _codes(q: torch.Tensor) -> torch.Tensor:
    """int32 E2M1 codes (sign in bit 3) of fp32 `q`, rounding exactly as compressed-tensors does."""
    a = q.abs().clamp_(max=FP4_MAX)
    e = (a.view(torch.int32) & 0x7F800000).view(torch.float32).clamp_(min=1.0)
    m = e.mul_(_MAGIC)
    k = (a + m).view(torch.int32) - m.view(torch.int32)
    # binade offset: 0 below 2, 2 in [2, 4), 4 in [4, 6]  (= 2·log2(e), read off e's exponent bits)
    k += (m.view(torch.int32) >> 22) - 299  # m = 1.5·2^22·e: exponent bits 149 + log2(e), top mantissa bit 1
    # sign: set for q < 0 only. Negatives that round to 0 keep it (0x8) like the reference, but -0.0
    # does not (the reference takes the sign from torch.sign, which is +0 there): require |q| > 0.
    k |= ((q.view(torch.int32) & -a.view(torch.int32)) >> 28) & 8
    return k


def _pack(codes: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    pairs = codes.reshape(rows, cols // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << 4)).to(torch.uint8)


def quantize_into(w: torch.Tensor, gs: torch.Tensor, packed: torch.Tensor, scale_u8: torch.Tensor) -> None:
    """Quantize 2-D `w` [out, in] with global scale `gs` into preallocated outputs.

    packed:   uint8 [out, in/2]  — element 2j in the low nibble, 2j+1 in the high nibble
    scale_u8: uint8 [out, in/16] — the e4m3 block scales' bytes
    """
    out_features, in_features = w.shape
    nb = in_features // GROUP
    rows = _rows_per_chunk(in_features)
    gs32 = gs.to(torch.float32)
    for r0 in range(0, out_features, rows):
        r1 = min(r0 + rows, out_features)
        x = w[r0:r1].reshape(r1 - r0, nb, GROUP).to(torch.float32)
        # block scale: amax/6 in the weight dtype, then × gs in fp32, then e4m3 (RNE, clamped);
        # the fp32 amax of widened values is exact, so narrowing it back loses nothing
        sb = _block_amax(x.abs()).to(w.dtype) / FP4_MAX
        s8 = torch.clamp(sb.to(torch.float32) * gs32, -FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn)
        s32 = s8.to(torch.float32)
        s32 = torch.where(s32 == 0, torch.tensor(SCALE_EPS, dtype=torch.float32), s32)
        scale_u8[r0:r1] = s32.to(torch.float8_e4m3fn).view(torch.uint8)
        # q = w / (s / gs): the reference divides the scale first, then the weight (fp32)
        eff = (s32 / gs32).unsqueeze(-1)
        q = x / eff
        packed[r0:r1] = _pack(_codes(q), r1 - r0, in_features)


def quantize(w: torch.Tensor, gs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight_packed uint8 [out, in/2], weight_scale float8_e4m3fn [out, in/16]) of `w`."""
    out_features, in_features = w.shape
    packed = torch.empty((out_features, in_features // 2), dtype=torch.uint8)
    scale = torch.empty((out_features, in_features // GROUP), dtype=torch.uint8)
    quantize_into(w, gs, packed, scale)
    return packed, scale.view(torch.float8_e4m3fn)


def dequantize(packed: torch.Tensor, scale: torch.Tensor, gs: torch.Tensor,
               dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """w = e2m1 · (fp32(scale) / gs), cast to `dtype` — the same arithmetic as compressed-tensors'
    NVFP4PackedCompressor.decompress, so the bf16 results are bit-identical (tested)."""
    out_features, half = packed.shape
    in_features = half * 2
    nb = in_features // GROUP
    result = torch.empty((out_features, in_features), dtype=dtype)
    rows = _rows_per_chunk(in_features)
    eff_all = scale.view(torch.float8_e4m3fn).to(torch.float32) / gs.to(torch.float32)
    for r0 in range(0, out_features, rows):
        r1 = min(r0 + rows, out_features)
        # one gather per byte: both nibbles' values at once
        vals = _BYTE_VALUES.index_select(0, packed[r0:r1].flatten().to(torch.int32))
        vals = vals.reshape(r1 - r0, nb, GROUP) * eff_all[r0:r1].unsqueeze(-1)
        result[r0:r1] = vals.reshape(r1 - r0, in_features).to(dtype)
    return result


def expected_size(out_features: int, in_features: int) -> int:
    """Bytes of one quantized module: packed + e4m3 scales + fp32 global scale."""
    return out_features * in_features // 2 + out_features * in_features // GROUP + 4
