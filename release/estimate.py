"""Parameter census and size estimates from a config alone, so `plan` and the cards can show sizes
before anything is built. Built artifacts replace these with measured sizes.

GGUF sizes of families whose GGUF tensors are known from the config (release.gguf.names) are summed
tensor by tensor at the type llama.cpp's quantizer will pick (release.gguf.mixture): text tensors only,
as the converter leaves the vision tower out. Other families fall back to whole-file bits per weight.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from .families import Family, all_families
from .gguf import sizes
from .gguf.names import ExpectedTensor, ModelHparams, UnreadableConfig, expected_hparams, expected_tensors
from .gguf.tiers import FTYPES, GGML_TYPES, TierRecipe, large_variant_base
from .spec.load import Release

# Fallback for families without a tensor list: effective bits per weight of whole files, measured on a
# Gemma-4-layout model at the 26B's widths (fallbacks on 704/2112-wide tensors included).
MEASURED_BPW: dict[str, float] = {
    "Q2_K": 3.26, "Q3_K_S": 3.79, "Q3_K_M": 4.13, "Q3_K_L": 4.32, "Q4_0": 4.53, "Q4_K_S": 4.85,
    "Q4_K_M": 5.31, "Q5_K_S": 5.67, "Q5_K_M": 6.07, "Q6_K": 7.19, "Q8_0": 8.51, "IQ2_M": 3.22,
    "IQ3_XS": 3.60, "IQ3_M": 3.84, "IQ4_XS": 4.35, "IQ4_NL": 4.52, "F16": 16.0, "BF16": 16.0, "F32": 32.0,
}
_FALLBACK_BPW = {"Q4_1": 5.0, "Q5_0": 5.5, "Q5_1": 6.0, "IQ2_XXS": 2.9, "IQ2_XS": 3.0, "IQ2_S": 3.1,
                 "Q2_K_S": 3.1, "IQ3_XXS": 3.4, "IQ3_S": 3.8, "IQ1_S": 2.4, "IQ1_M": 2.6, "TQ1_0": 2.0,
                 "TQ2_0": 2.4, "MXFP4_MOE": 4.6}


@dataclass(frozen=True)
class Census:
    """Parameters of the base and of the pruned model (estimates when no checkpoint was read)."""

    base_total: int | None
    pruned_total: int | None
    per_expert: int  # parameters of one expert in one layer
    moe_layers: int
    experts_before: int
    experts_after: int
    embedding: int
    # The GGUF's tensors and the hyperparameters the quantizer reads, when the family is known to
    # release.gguf.names; None otherwise.
    gguf_tensors: tuple[ExpectedTensor, ...] | None = None
    gguf_hparams: ModelHparams | None = None
    has_imatrix: bool = False

    @property
    def gguf_parameters(self) -> int | None:
        """Parameters the GGUF files hold (the text model: the converter leaves a vision tower out)."""
        return sum(t.n_elements for t in self.gguf_tensors) if self.gguf_tensors is not None else None

    @property
    def removed(self) -> int:
        return self.per_expert * self.moe_layers * (self.experts_before - self.experts_after)


def census(release: Release) -> Census:
    g = release.definition.gguf
    # The job plan asks for the census of every tier of every job candidate: derive it once per input.
    return _census(json.dumps(release.base_config, sort_keys=True), release.family.family,
                   release.drop_map.kept_count, release.definition.base.parameters, g is not None,
                   bool(g and g.imatrix))


@lru_cache(maxsize=16)
def _census(config_json: str, family_name: str, after: int, base_total: int | None, gguf: bool,
            imatrix: bool) -> Census:
    config = json.loads(config_json)
    fam = next(f for f in all_families() if f.family == family_name)
    cfg = fam.text_config(config)
    per_expert = _expert_params(fam, config)
    layers = len(fam.moe_layers(config))
    before = fam.num_experts(config)
    pruned = base_total - per_expert * layers * (before - after) if base_total else None
    embedding = int(cfg.get("vocab_size", 0) or 0) * int(cfg.get("hidden_size", 0) or 0)
    tensors, hparams = None, None
    if gguf:
        try:
            tensors = expected_tensors(config, num_experts=after)
            hparams = expected_hparams(config, num_experts=after)
        except UnreadableConfig:
            tensors, hparams = None, None  # `check` reports it; plan falls back to a whole-file estimate
    return Census(base_total, pruned, per_expert, layers, before, after, embedding,
                  tuple(tensors) if tensors is not None else None, hparams, imatrix)


def _expert_params(family: Family, config: dict) -> int:
    """One expert = gate, up and down matrices of moe_intermediate × hidden (every family listed)."""
    cfg = family.text_config(config)
    extra = family.extra
    keys = extra.get("expert_param_keys") or [
        next((k for k in ("moe_intermediate_size", "intermediate_size") if cfg.get(k)), "intermediate_size"),
        "hidden_size",
    ]
    factor = int(extra.get("expert_param_factor", 3))
    value = factor
    for k in keys:
        value *= int(cfg.get(k, 0) or 0)
    return value


def ftype_bpw(ftype: str) -> float:
    if ftype in MEASURED_BPW:
        return MEASURED_BPW[ftype]
    return _FALLBACK_BPW.get(ftype, 8.0)


def gguf_size(c: Census, ftype: str, *, embed_type: str | None = None,
              expert_types: list[str] | None = None) -> int | None:
    """Estimated bytes of a GGUF file of the pruned model (the baseline conversion when `ftype` is one)."""
    if ftype not in FTYPES:
        return None
    if c.gguf_tensors is not None and c.gguf_hparams is not None and not expert_types:
        return _per_tensor(c, TierRecipe(ftype, ftype, embed_type=embed_type))
    if c.pruned_total is None:
        return None
    bpw = ftype_bpw(ftype)
    total = c.pruned_total
    bits = total * bpw
    if embed_type:
        bits += c.embedding * (GGML_TYPES[embed_type] - bpw)
    if expert_types:
        experts = c.per_expert * c.moe_layers * c.experts_after
        mean = sum(GGML_TYPES[t] for t in expert_types) / len(expert_types)
        bits += experts * (mean - bpw)
    return int(bits / 8)


def _per_tensor(c: Census, recipe: TierRecipe) -> int:
    assert c.gguf_tensors is not None and c.gguf_hparams is not None
    return sizes.tier_size(list(c.gguf_tensors), c.gguf_hparams, recipe, has_imatrix=c.has_imatrix)


def tier_size(c: Census, tier: str, recipe: dict) -> int | None:
    """Estimated bytes of one tier; `recipe` as release.kinds.gguf.gguf_recipe gives it."""
    base = recipe.get("ftype") or large_variant_base(tier) or tier
    if base in FTYPES and c.gguf_tensors is not None and c.gguf_hparams is not None:
        return _per_tensor(c, TierRecipe(tier, base, recipe.get("embed_type") or None,
                                         recipe.get("output_type") or None,
                                         tuple((str(p), str(t).lower()) for p, t in recipe.get("overrides") or [])))
    expert_types = [t for pattern, t in recipe.get("overrides", []) if "exps" in pattern]
    return gguf_size(c, base, embed_type=recipe.get("embed_type") or None, expert_types=expert_types or None)


def bf16_size(c: Census) -> int | None:
    return c.pruned_total * 2 if c.pruned_total else None
