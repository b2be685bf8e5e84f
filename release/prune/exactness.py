"""Model-level exactness of a prune: the pruned model's logits equal the base model's with the
dropped experts' router logits at −inf (docs/moe-pruning.md §3).

To be robust to reduction order and top-k ties, both models route with the same code: a softmax
over the *kept* experts only and a stable descending sort (ties → lowest index). The reference is the
base checkpoint routing over its kept experts; the candidate is the pruned checkpoint routing over
all of its experts. In fp32 (and in bf16, given the shared router) their logits are bit-identical.
How a family's router is rerouted is data: the `router` key of its layout file.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import VerifyError
from ..families import Family

Routed = tuple[Any, Any, Any]  # (scores or probabilities, weights, expert indices)


@dataclass(frozen=True)
class ExactnessReport:
    max_abs_diff: float  # pruned vs rerouted base; 0.0 means bit-identical
    mask_effect: float  # how much dropping the experts changes the base's logits (non-vacuity)

    @property
    def exact(self) -> bool:
        return self.max_abs_diff == 0.0


def supported(family: Family) -> bool:
    return isinstance(family.extra.get("router"), dict)


def _logits(h: Any, weight: Any, keep: Any) -> Any:
    import torch
    import torch.nn.functional as F

    # One single-row product per expert: an [E, H] matmul may round differently from a [k, H] one
    # (BLAS picks kernels by shape), which is arithmetic noise, not a pruning error.
    return torch.cat([F.linear(h, weight[j:j + 1]) for j in keep.tolist()], dim=-1)


def _stable_topk(probs: Any, k: int) -> tuple[Any, Any]:
    import torch

    values, index = torch.sort(probs, dim=-1, descending=True, stable=True)
    return values[..., :k], index[..., :k]


def _gemma4_forward(keep: Any) -> Callable[..., Routed]:
    import torch
    import torch.nn.functional as F

    def forward(self: Any, hidden_states: Any) -> Routed:
        h = self.norm(hidden_states) * self.scale * self.scalar_root_size
        probs = F.softmax(_logits(h, self.proj.weight, keep), dim=-1, dtype=torch.float32)
        w, idx = _stable_topk(probs, self.config.top_k_experts)
        w = w / w.sum(dim=-1, keepdim=True)
        expert = keep[idx]
        return probs, w * self.per_expert_scale[expert], expert

    return forward


def _softmax_topk_forward(keep: Any, renormalise: bool | None) -> Callable[..., Routed]:
    import torch.nn.functional as F

    def forward(self: Any, hidden_states: Any) -> Routed:
        h = hidden_states.reshape(-1, self.hidden_dim)
        logits = _logits(h, self.weight, keep)
        probs = F.softmax(logits.float(), dim=-1)
        w, idx = _stable_topk(probs, self.top_k)
        if renormalise if renormalise is not None else self.norm_topk_prob:
            w = w / w.sum(dim=-1, keepdim=True)
        return logits, w.to(logits.dtype), keep[idx]

    return forward


def routers(model: Any, family: Family) -> list[Any]:
    suffix = family.extra["router"]["module_suffix"]
    found = [m for n, m in model.named_modules() if n.endswith(suffix) and "layers." in n]
    if not found:
        raise VerifyError(f"no routers ending in {suffix!r} found in {type(model).__name__}")
    return found


def route_over(model: Any, family: Family, keep_per_layer: Sequence[Any]) -> None:
    """Make every router of `model` route over the given expert indices (kept-only softmax, stable top-k)."""
    spec = family.extra["router"]
    found = routers(model, family)
    if len(found) != len(keep_per_layer):
        raise VerifyError(f"{len(found)} routers but {len(keep_per_layer)} MoE layers in the drop map")
    for router, keep in zip(found, keep_per_layer, strict=True):
        if spec["style"] == "gemma4":
            fwd = _gemma4_forward(keep)
        else:
            fwd = _softmax_topk_forward(keep, spec.get("renormalise"))
        router.forward = types.MethodType(fwd, router)


def load_model(path: Path, dtype: Any) -> Any:
    """Load a checkpoint with transformers; a silently re-initialised tensor is an error."""
    import transformers

    cfg = transformers.AutoConfig.from_pretrained(path)
    cls = getattr(transformers, cfg.architectures[0])
    model, info = cls.from_pretrained(path, dtype=dtype, output_loading_info=True)
    bad = {k: info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs") if info.get(k)}
    if bad:
        raise VerifyError(f"{path} does not load cleanly in transformers: {bad}")
    return model.eval()


def fixed_inputs(vocab_size: int, *, rows: int = 3, length: int = 40) -> dict[str, Any]:
    """A fixed batch with left padding, as batched generation uses."""
    import torch

    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(min(8, vocab_size - 1), vocab_size, (rows, length), generator=gen)
    mask = torch.ones_like(ids)
    for row, pad in enumerate((0, 5, 17)[:rows]):
        ids[row, :pad] = 0
        mask[row, :pad] = 0
    return {"input_ids": ids, "attention_mask": mask}


def compare_logits(base_dir: Path, pruned_dir: Path, kept: dict[int, tuple[int, ...]], family: Family, *,
                   dtype: Any = None, inputs: dict[str, Any] | None = None) -> ExactnessReport:
    """Pruned model vs the base rerouted over its kept experts, on a fixed batch."""
    import torch

    dtype = dtype or torch.float32
    with torch.no_grad():
        original = load_model(base_dir, dtype)
        pruned = load_model(pruned_dir, dtype)
        if inputs is None:
            vocab = original.get_input_embeddings().weight.shape[0]
            inputs = fixed_inputs(vocab)
        layers = sorted(kept)
        first = routers(original, family)[0]
        n_before = (first.proj.weight if family.extra["router"]["style"] == "gemma4" else first.weight).shape[0]
        route_over(original, family, [torch.arange(n_before)] * len(layers))
        unmasked = original(**inputs).logits
        route_over(original, family, [torch.tensor(kept[layer]) for layer in layers])
        reference = original(**inputs).logits
        n_kept = len(next(iter(kept.values())))
        route_over(pruned, family, [torch.arange(n_kept)] * len(layers))
        candidate = pruned(**inputs).logits
        mask = inputs["attention_mask"].bool()
        diff = (candidate - reference)[mask].abs().max().item()
        effect = (unmasked - reference)[mask].abs().max().item()
    return ExactnessReport(max_abs_diff=float(diff), mask_effect=float(effect))
