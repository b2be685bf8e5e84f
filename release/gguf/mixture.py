"""The tensor type llama.cpp's quantizer writes for every tensor of a tier, worked out before anything is
converted, so planned sizes and fallback warnings follow what `llama_model_quantize` really does.

A port of `llama_tensor_get_type` and `llama_tensor_get_type_impl` in src/llama-quant.cpp of llama.cpp
0c1e570 (the commit vendored in llama-cpp-python 0.3.36): the explicit embedding/output types first, then
the first matching override, else the ftype's mixture (which bumps attn_v, ffn_down, attn_output … by layer,
using per-category counters in the loader's tensor order), then the row-width fallback
(`tensor_type_fallback`). Tensors llama.cpp never quantizes keep the converter's F32.
tests/test_gguf_estimate.py compares it with the types of really built files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache

from . import tiers as T
from .names import ExpectedTensor, ModelHparams

# llama_ftype_get_default_type: the type a file type starts every quantizable tensor at.
FTYPE_DEFAULT_TYPE: dict[str, str] = {
    **T.FTYPE_MAIN_TYPE,
    "IQ2_S": "iq2_xs",  # sic: IQ2_S files start at IQ2_XS and raise some tensors
    "IQ3_XS": "iq3_s",
}

_IQ_LOW = {"IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M"}


@cache  # plan asks for every tensor of every tier: a few hundred names, tens of thousands of calls
def category(name: str) -> str:
    """tensor_get_category: a broad role from substrings of the GGUF name (order matters)."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"),
                     ("attn_v.weight", "attn_v"), ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"),
                     ("attn_output.weight", "attn_output"), ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"),
                     ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def _is_attn_v(cat: str) -> bool:
    return cat in ("attn_v", "attn_qkv", "attn_kv_b")


@cache
def _layer_of(name: str) -> int:
    m = re.match(r"blk\.(\d+)\.", name)
    return int(m.group(1)) if m else -1


def loader_order(tensors: list[ExpectedTensor]) -> list[ExpectedTensor]:
    """The loader's `weights_map` order (weight_name_comparer): by layer (non-layer tensors first), then name."""
    return sorted(tensors, key=lambda t: (_layer_of(t.name), t.name))


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


@dataclass
class _State:
    hp: ModelHparams
    ftype: str
    has_imatrix: bool
    tied: bool
    output_type: str | None
    n_attention_wv: int
    counters: dict[str, int] = field(default_factory=lambda: {"attn_v": 0, "ffn_down": 0, "ffn_gate": 0,
                                                               "ffn_up": 0})

    def layer(self, counter: str, name: str) -> tuple[int, int]:
        if self.hp.n_expert > 1:
            return _layer_of(name), self.hp.n_layer
        return self.counters[counter], self.hp.n_layer


def _mixture(s: _State, t: ExpectedTensor, new: str, cat: str) -> str:
    """llama_tensor_get_type_impl (arch-specific branches for Falcon, GLM-5 and 70B models left out)."""
    ftype, hp = s.ftype, s.hp
    if cat == "output" or (s.tied and cat == "token_embd"):
        if s.output_type:
            return s.output_type
        if ftype == "MXFP4_MOE" or t.ne0 % T.block_size(new):
            return "q8_0"
        if ftype in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
            return "q5_k"
        return new if new == "q8_0" else "q6_k"
    if ftype == "MXFP4_MOE":
        return "mxfp4" if len(t.shape) > 2 and t.shape[2] > 1 else "q8_0"
    if cat == "token_embd":
        if ftype in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "q2_k"
        if ftype in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "iq3_s"
        if ftype in ("TQ1_0", "TQ2_0"):
            return "q4_k"
        return new
    if ftype in _IQ_LOW:
        if _is_attn_v(cat):
            low = "iq3_s" if ftype in ("IQ2_S", "IQ2_M") else "q2_k"
            new = "q4_k" if hp.n_gqa >= 4 or hp.n_expert >= 4 else low
            s.counters["attn_v"] += 1
        elif hp.n_expert == 8 and cat == "attn_k":
            new = "q4_k"
        elif cat == "ffn_down":
            if s.counters["ffn_down"] < hp.n_layer // 8:
                new = "iq3_s" if ftype in ("IQ2_S", "IQ2_M") else "q2_k"
            s.counters["ffn_down"] += 1
        elif cat == "attn_output":
            if hp.n_expert == 8:
                new = "q5_k"
            elif ftype in ("IQ1_S", "IQ1_M"):
                new = "iq2_xxs"
            elif ftype in ("IQ2_S", "IQ2_M"):
                new = "iq3_s"
        return new
    if _is_attn_v(cat):
        i, n = s.counters["attn_v"], s.n_attention_wv
        if ftype == "Q2_K":
            new = "q4_k" if hp.n_gqa >= 4 else "q3_k"
        elif ftype == "Q2_K_S" and hp.n_gqa >= 4:
            new = "q4_k"
        elif ftype == "IQ3_XXS":
            new = "q4_k" if hp.n_gqa >= 4 else ("iq3_s" if not s.has_imatrix else "iq3_xxs")
        elif (ftype in ("IQ3_XS", "IQ3_S") and hp.n_gqa >= 4) or ftype == "IQ3_M":
            new = "q4_k"
        elif ftype == "Q3_K_M":
            new = "q5_k" if i < 2 else "q4_k"
        elif ftype == "Q3_K_L" or (ftype in ("IQ4_NL", "IQ4_XS") and hp.n_gqa >= 4):
            new = "q5_k"
        elif ftype in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i, n):
            new = "q6_k"
        elif ftype == "Q4_K_S" and i < 4:
            new = "q5_k"
        if hp.n_expert == 8:
            new = "q8_0"
        s.counters["attn_v"] += 1
    elif cat == "attn_k":
        if hp.n_expert == 8:
            new = "q8_0"
        elif ftype == "IQ3_XS":
            new = "iq3_xxs"
        elif ftype == "IQ3_XXS":
            new = "iq2_s"
    elif cat == "attn_q":
        if ftype == "IQ3_XS":
            new = "iq3_xxs"
        elif ftype == "IQ3_XXS":
            new = "iq2_s"
    elif cat == "ffn_down":
        i, n = s.layer("ffn_down", t.name)
        if ftype == "Q2_K":
            new = "q3_k"
        elif ftype == "Q2_K_S":
            if i < n // 8:
                new = "q4_k"
        elif ftype == "IQ3_XXS" and not s.has_imatrix:
            new = "q4_k" if i < n // 8 else "q3_k"
        elif ftype == "Q3_K_M":
            new = "q5_k" if i < n // 16 else "q4_k"  # non-Falcon: use_more_bits || true
        elif ftype == "IQ3_M" and (i < n // 8 or (hp.n_expert == 8 and _use_more_bits(i, n))):
            new = "q4_k"
        elif ftype == "Q3_K_L":
            new = "q5_k"
        elif ftype == "Q4_K_M":
            if _use_more_bits(i, n):
                new = "q6_k"
        elif i < n // 8 and ftype in ("IQ4_NL", "IQ4_XS") and not s.has_imatrix:
            new = "q5_k"
        elif ftype == "Q5_K_M" and _use_more_bits(i, n):
            new = "q6_k"
        elif ftype == "Q4_K_S" and i < n // 8:
            new = "q5_k"
        elif ftype in ("Q4_0", "Q5_0") and s.has_imatrix and i < n // 8:
            new = "q4_1" if ftype == "Q4_0" else "q5_1"
        s.counters["ffn_down"] += 1
    elif cat == "attn_output":
        if hp.n_expert == 8:
            if ftype in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S",
                         "IQ3_M", "IQ4_XS"):
                new = "q5_k"
        else:
            new = {"Q2_K": "q3_k", "IQ3_XXS": "iq3_s", "Q3_K_M": "q4_k", "Q3_K_L": "q5_k",
                   "IQ3_M": "q4_k"}.get(ftype, new)
    elif cat in ("ffn_gate", "ffn_up"):
        i, n = s.layer(cat, t.name)
        if ftype == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            new = "iq3_xxs"
        s.counters[cat] += 1
    return new


def tensor_types(tensors: list[ExpectedTensor], recipe: T.TierRecipe, hp: ModelHparams, *,
                 has_imatrix: bool) -> dict[str, str]:
    """Tensor name → ggml type llama_model_quantize writes for `recipe`.

    Also the types of the converter's own output when `recipe.ftype` is its outtype (F16, BF16, F32, Q8_0):
    it applies the same rules (norms, 1-D tensors and the router F32; Q8_0 rows not a multiple of 32 F16).
    """
    ftype = recipe.ftype
    default = FTYPE_DEFAULT_TYPE[ftype]
    quantized = default not in ("f32", "f16", "bf16")
    overrides = [(re.compile(p), t.lower()) for p, t in recipe.overrides]
    embed = recipe.embed_type.lower() if recipe.embed_type else None
    output = recipe.output_type.lower() if recipe.output_type else None
    ordered = loader_order(tensors)
    state = _State(hp=hp, ftype=ftype, has_imatrix=has_imatrix,
                   tied=not any(t.name == "output.weight" for t in tensors), output_type=output,
                   n_attention_wv=sum(1 for t in tensors if _is_attn_v(category(t.name))))
    out: dict[str, str] = {}
    for t in ordered:
        cat = category(t.name)
        if not t.quantizable:
            out[t.name] = "f32"  # what the converter writes for them; the quantizer copies them
            continue
        if embed and cat == "token_embd":
            out[t.name] = embed  # no row-width fallback on this path
            continue
        if output and cat == "output":
            out[t.name] = output
            continue
        new = default
        if quantized:
            hit = next((typ for rx, typ in overrides if rx.search(t.name)), None)
            new = hit if hit is not None else _mixture(state, t, new, cat)
            new = T.fallback_type(new, t.ne0)
        out[t.name] = new
    return out
