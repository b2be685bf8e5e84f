"""GGUF tiers: llama.cpp's file types and tensor types, `_L` variants, CD-* recipes, and names.

Facts: docs/gguf.md (§2.3 ftypes, §2.5 bits per weight, G4 fallbacks, G5 imatrix, §6 `-hf`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# LLAMA_FTYPE_MOSTLY_* names that `llama_model_quantize` accepts, with their enum values.
FTYPES: dict[str, int] = {
    "F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
    "Q2_K": 10, "Q3_K_S": 11, "Q3_K_M": 12, "Q3_K_L": 13, "Q4_K_S": 14, "Q4_K_M": 15,
    "Q5_K_S": 16, "Q5_K_M": 17, "Q6_K": 18, "IQ2_XXS": 19, "IQ2_XS": 20, "Q2_K_S": 21,
    "IQ3_XS": 22, "IQ3_XXS": 23, "IQ1_S": 24, "IQ4_NL": 25, "IQ3_S": 26, "IQ3_M": 27,
    "IQ2_S": 28, "IQ2_M": 29, "IQ4_XS": 30, "IQ1_M": 31, "BF16": 32, "TQ1_0": 36, "TQ2_0": 37,
    "MXFP4_MOE": 38,
}

# ggml tensor types usable in recipes (overrides, embed/output), with bits per weight.
GGML_TYPES: dict[str, float] = {
    "f32": 32.0, "f16": 16.0, "bf16": 16.0, "q4_0": 4.5, "q4_1": 5.0, "q5_0": 5.5, "q5_1": 6.0,
    "q8_0": 8.5, "q2_k": 2.625, "q3_k": 3.4375, "q4_k": 4.5, "q5_k": 5.5, "q6_k": 6.5625,
    "iq2_xxs": 2.0625, "iq2_xs": 2.3125, "iq2_s": 2.5625, "iq3_xxs": 3.0625, "iq3_s": 3.4375,
    "iq1_s": 1.5625, "iq1_m": 1.75, "iq4_nl": 4.5, "iq4_xs": 4.25, "tq1_0": 1.6875, "tq2_0": 2.0625,
    "mxfp4": 4.25,
}

# G5: ftypes whose tensors need an importance matrix, and tensor types that need one.
FTYPES_NEEDING_IMATRIX = {"IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS",
                          "Q2_K_S"}
TYPES_NEEDING_IMATRIX = {"iq1_s", "iq1_m", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs"}

# Baselines the converter writes directly (not quantized).
BASELINES = ("F16", "BF16", "F32", "Q8_0")

# Standard tier names users and `-hf`/`hf.co` resolution know: every quantizable ftype.
STANDARD_TIERS = tuple(t for t in FTYPES if t not in ("F32", "MXFP4_MOE"))


@dataclass(frozen=True)
class TierRecipe:
    """How one GGUF tier is made: an ftype plus optional per-tensor overrides."""

    name: str
    ftype: str
    embed_type: str | None = None
    output_type: str | None = None
    overrides: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # ordered regex → ggml type
    note: str = ""

    @property
    def needs_imatrix(self) -> bool:
        if self.ftype in FTYPES_NEEDING_IMATRIX:
            return True
        return any(t in TYPES_NEEDING_IMATRIX for _, t in self.overrides)


def large_variant_base(tier: str) -> str | None:
    """The ftype under a bartowski-style `_L`/`_XL` tier (Q8_0 embedding and output), else None.

    `Q6_K_L` → Q6_K, `Q5_K_L` → Q5_K_M (no Q5_K_L ftype exists), `Q3_K_XL` → Q3_K_L (Q3_K_L is an ftype).
    """
    if tier in FTYPES:
        return None
    if tier.endswith("_XL") and tier[:-3] + "_L" in FTYPES:
        return tier[:-3] + "_L"
    if tier.endswith("_K_L") and tier[:-2] + "_M" in FTYPES:
        return tier[:-2] + "_M"
    if tier.endswith("_L") and tier[:-2] in FTYPES and tier[:-2] not in ("F16", "BF16", "F32"):
        return tier[:-2]
    return None


def standard_recipe(tier: str) -> TierRecipe | None:
    """The recipe of a standard tier or `_L` variant, or None if `tier` is neither."""
    if tier in FTYPES:
        return TierRecipe(tier, tier)
    base = large_variant_base(tier)
    if base:
        return TierRecipe(tier, base, embed_type="q8_0", output_type="q8_0",
                          note=f"{base} with Q8_0 embeddings and output")
    return None


def confusable_with(tier: str) -> str | None:
    """The standard tier that llama.cpp's `-hf repo:TAG` (regex `TAG[.-]`, case-insensitive, first
    listed file wins) or Ollama's `hf.co/repo:TAG` would resolve to a file named `<prefix>-<tier>.gguf`,
    when `tier` is a custom name. `CD-Q4_K_M` is confusable with Q4_K_M; `CD-Q4` is not."""
    if tier.upper() in STANDARD_TIERS or standard_recipe(tier.upper()):
        return None
    filename = f"-{tier}.gguf".upper()
    for std in sorted(STANDARD_TIERS, key=len, reverse=True):
        if re.search(re.escape(std) + r"[.-]", filename):
            return std
    return None


def gguf_filename(prefix: str, tier: str) -> str:
    return f"{prefix}-{tier}.gguf"


# Block widths (elements per quantization block along a row); a row width not divisible by a type's
# block falls back (G4), see `fallback_type`.
_BLOCK_256 = {"q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq2_xxs", "iq2_xs", "iq2_s", "iq3_xxs", "iq3_s",
              "iq1_s", "iq1_m", "iq4_xs", "tq1_0", "tq2_0"}
FALLBACKS = {"q2_k": "q4_0", "q3_k": "q4_0", "tq1_0": "q4_0", "tq2_0": "q4_0", "q4_k": "q5_0",
             "q5_k": "q5_1", "q6_k": "q8_0", "iq1_s": "iq4_nl", "iq1_m": "iq4_nl", "iq2_xxs": "iq4_nl",
             "iq2_xs": "iq4_nl", "iq2_s": "iq4_nl", "iq3_xxs": "iq4_nl", "iq3_s": "iq4_nl", "iq4_xs": "iq4_nl"}

# The main tensor type of each ftype (what most weights get; the mixture bumps some, G7).
FTYPE_MAIN_TYPE: dict[str, str] = {
    "F32": "f32", "F16": "f16", "BF16": "bf16", "Q4_0": "q4_0", "Q4_1": "q4_1", "Q5_0": "q5_0", "Q5_1": "q5_1",
    "Q8_0": "q8_0", "Q2_K": "q2_k", "Q2_K_S": "q2_k", "Q3_K_S": "q3_k", "Q3_K_M": "q3_k", "Q3_K_L": "q3_k",
    "Q4_K_S": "q4_k", "Q4_K_M": "q4_k", "Q5_K_S": "q5_k", "Q5_K_M": "q5_k", "Q6_K": "q6_k",
    "IQ2_XXS": "iq2_xxs", "IQ2_XS": "iq2_xs", "IQ2_S": "iq2_s", "IQ2_M": "iq2_s", "IQ3_XXS": "iq3_xxs",
    "IQ3_XS": "iq3_xxs", "IQ3_S": "iq3_s", "IQ3_M": "iq3_s", "IQ1_S": "iq1_s", "IQ1_M": "iq1_m",
    "IQ4_NL": "iq4_nl", "IQ4_XS": "iq4_xs", "TQ1_0": "tq1_0", "TQ2_0": "tq2_0", "MXFP4_MOE": "mxfp4",
}

# GGML_TYPE_* enum values (ggml/include/ggml.h, 0c1e570) for the quantizer's tensor-type fields.
GGML_TYPE_IDS: dict[str, int] = {
    "f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "q2_k": 10, "q3_k": 11,
    "q4_k": 12, "q5_k": 13, "q6_k": 14, "iq2_xxs": 16, "iq2_xs": 17, "iq3_xxs": 18, "iq1_s": 19,
    "iq4_nl": 20, "iq3_s": 21, "iq2_s": 22, "iq4_xs": 23, "iq1_m": 29, "bf16": 30, "tq1_0": 34, "tq2_0": 35,
    "mxfp4": 39,
}


# (elements per block, bytes per block) of each ggml type (gguf-py constants.py GGML_QUANT_SIZES, 0c1e570).
GGML_BLOCKS: dict[str, tuple[int, int]] = {
    "f32": (1, 4), "f16": (1, 2), "bf16": (1, 2), "q4_0": (32, 18), "q4_1": (32, 20), "q5_0": (32, 22),
    "q5_1": (32, 24), "q8_0": (32, 34), "q2_k": (256, 84), "q3_k": (256, 110), "q4_k": (256, 144),
    "q5_k": (256, 176), "q6_k": (256, 210), "iq2_xxs": (256, 66), "iq2_xs": (256, 74), "iq3_xxs": (256, 98),
    "iq1_s": (256, 50), "iq4_nl": (32, 18), "iq3_s": (256, 110), "iq2_s": (256, 82), "iq4_xs": (256, 136),
    "iq1_m": (256, 56), "tq1_0": (256, 54), "tq2_0": (256, 66), "mxfp4": (32, 17),
}


def block_size(ggml_type: str) -> int:
    return GGML_BLOCKS[ggml_type.lower()][0]


def tensor_bytes(ggml_type: str, n_elements: int) -> int:
    """Bytes of a tensor's data (rows are whole blocks once `fallback_type` has been applied)."""
    elems, nbytes = GGML_BLOCKS[ggml_type.lower()]
    return -(-n_elements // elems) * nbytes


def fallback_type(ggml_type: str, ne0: int) -> str:
    """The type llama.cpp actually writes when asked for `ggml_type` on rows `ne0` wide (G4)."""
    t = ggml_type.lower()
    if t in _BLOCK_256 and ne0 % 256 != 0:
        t = FALLBACKS[t]
    if t not in ("f32", "f16", "bf16") and ne0 % 32 != 0:
        return "f16"
    return t
