"""Exactness of the byte-range pruner on tiny real checkpoints (Gemma 4, Qwen3-MoE, Mixtral, OLMoE).

Pruning experts ≡ the original model with the dropped experts' router logits at −inf (docs/moe-pruning.md §3). To be
robust to reduction order and top-k ties, both models route with the same code: softmax over the kept
experts only and a stable descending sort (ties → lowest index). The reference is the *original*
checkpoint routing over its kept experts; the candidate is the *pruned* checkpoint routing over all of
its experts. In fp32 their logits must be bit-identical, and the keep-set must matter (the test would
pass vacuously if routing ignored it).
"""

from __future__ import annotations

import filecmp
import types
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from model_factory import VOCAB, drop_map_dict, make_checkpoint, write_drop_map

from release.families import all_families
from release.prune import inspect_checkpoint, prune_checkpoint
from release.prune.exactness import Routed, load_model, route_over, routers
from release.spec.dropmap import load_drop_map

FAMILY = {f.family: f for f in all_families()}

CASES = {
    # case: (family, config overrides, experts dropped per layer)
    "gemma4": ("gemma4", {}, 3),
    # the real model's ratio: 128 experts, top-8, 30 dropped in every layer
    "gemma4-128e": ("gemma4", {"num_experts": 128, "top_k_experts": 8, "moe_intermediate_size": 8}, 30),
    "qwen3_moe": ("qwen3_moe", {}, 3),
    "mixtral": ("mixtral", {}, 3),
    "olmoe": ("olmoe", {}, 3),  # norm_topk_prob = False: pruning rescales every token's weights
}


@pytest.fixture(scope="module", params=sorted(CASES))
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, int]:
    family, overrides, n_drop = CASES[request.param]
    path = make_checkpoint(family, tmp_path_factory.mktemp(request.param) / "base", seed=7, **overrides)
    return family, path, n_drop


def _prune(base_dir: Path, tmp: Path, n_drop: int, seed: int = 3) -> tuple[Path, dict[int, tuple[int, ...]]]:
    info = inspect_checkpoint(base_dir)
    data = drop_map_dict(info.num_experts, info.moe_layers, n_drop, seed=seed)
    drop_map = load_drop_map(write_drop_map(tmp / f"dropmap-{n_drop}.json", data))
    out = tmp / f"pruned-{n_drop}"
    result = prune_checkpoint(base_dir, drop_map, out, base_repo="test/tiny-moe", base_revision="0" * 40)
    assert result.num_experts_after == info.num_experts - n_drop
    return out, drop_map.kept


def test_identity_prune_is_byte_identical(base: tuple[str, Path, int], tmp_path: Path) -> None:
    _family, base_dir, _ = base
    out, kept = _prune(base_dir, tmp_path, 0)
    assert all(len(v) == inspect_checkpoint(base_dir).num_experts for v in kept.values())
    for src in sorted(base_dir.iterdir()):
        assert (out / src.name).exists(), src.name
        assert filecmp.cmp(src, out / src.name, shallow=False), f"{src.name} differs after an identity prune"
    assert (out / "expert_pruning.json").exists()


def _route_over(model: torch.nn.Module, family: str, keep_per_layer: list[torch.Tensor]) -> None:
    route_over(model, FAMILY[family], keep_per_layer)


def _routers(model: torch.nn.Module, family: str) -> list[torch.nn.Module]:
    return routers(model, FAMILY[family])


def _load(path: Path) -> torch.nn.Module:
    return load_model(path, torch.float32)


def _inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(11)
    ids = torch.randint(8, VOCAB, (3, 40), generator=gen)
    mask = torch.ones_like(ids)
    for row, pad in enumerate((0, 5, 17)):  # left padding, as batched generation uses
        ids[row, :pad] = 0
        mask[row, :pad] = 0
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def test_pruned_logits_equal_kept_only_reference(base: tuple[str, Path, int], tmp_path: Path) -> None:
    family, base_dir, n_drop = base
    out, kept = _prune(base_dir, tmp_path, n_drop)
    n_kept = len(next(iter(kept.values())))
    assert len({tuple(v) for v in kept.values()}) > 1, "drop sets should differ between layers"

    original = _load(base_dir)
    pruned = _load(out)
    inputs = _inputs()

    layers = sorted(kept)
    _route_over(original, family, [torch.arange(inspect_checkpoint(base_dir).num_experts)] * len(layers))
    unmasked = original(**inputs).logits

    _route_over(original, family, [torch.tensor(kept[layer]) for layer in layers])
    reference = original(**inputs).logits
    _route_over(pruned, family, [torch.arange(n_kept)] * len(layers))
    candidate = pruned(**inputs).logits

    mask = inputs["attention_mask"].bool()
    assert torch.equal(candidate[mask], reference[mask]), (
        f"max |Δ| = {(candidate - reference)[mask].abs().max().item():.3g}")
    effect = (unmasked - reference)[mask].abs().max().item()
    assert effect > 1e-2, f"dropping experts barely changed the logits ({effect:.3g}); the test is vacuous"


@torch.no_grad()
def test_pruned_model_matches_minus_inf_masking_with_stock_router(base: tuple[str, Path, int],
                                                                  tmp_path: Path) -> None:
    """The pruned model with its stock transformers router ≈ the original with −inf on dropped logits."""
    family, base_dir, n_drop = base
    out, kept = _prune(base_dir, tmp_path, n_drop)
    original, pruned = _load(base_dir), _load(out)
    inputs = _inputs()

    layers = sorted(kept)
    for router, layer in zip(_routers(original, family), layers, strict=True):
        dropped = [j for j in range(inspect_checkpoint(base_dir).num_experts) if j not in kept[layer]]
        weight = router.proj.weight if family == "gemma4" else router.weight
        bias = torch.zeros(weight.shape[0])
        bias[dropped] = float("-inf")
        # −inf logits via a forward hook on the logit projection, leaving the stock routing code in charge.
        if family == "gemma4":
            router.proj.register_forward_hook(lambda _m, _i, o, b=bias: o + b)
        else:
            orig = router.forward
            router.forward = types.MethodType(_masked_linear_forward(orig, bias), router)
    masked = original(**inputs).logits
    plain = pruned(**inputs).logits
    mask = inputs["attention_mask"].bool()
    # Not bit-exact: the softmax denominator sums a different number of terms (docs/moe-pruning.md §3, cause 1).
    torch.testing.assert_close(plain[mask], masked[mask], rtol=1e-4, atol=1e-4)


def _masked_linear_forward(orig: Callable[..., Routed], bias: torch.Tensor) -> Callable[..., Routed]:
    # The stock router calls F.linear for its logits; adding the −inf row there keeps its own code in charge.
    def forward(self: torch.nn.Module, hidden_states: torch.Tensor) -> Routed:
        real = F.linear
        try:
            F.linear = lambda x, w, b=None: real(x, w, b) + bias
            return orig(hidden_states)
        finally:
            F.linear = real
    return forward


@torch.no_grad()
def test_bf16_pruned_logits_equal_kept_only_reference(tmp_path: Path) -> None:
    """In BF16 top-k ties are common (docs/moe-pruning.md §3); with the shared stable router the match is exact."""
    import transformers

    base_dir = make_checkpoint("gemma4", tmp_path / "base", seed=8, dtype=torch.bfloat16, with_tokenizer=False)
    out, kept = _prune(base_dir, tmp_path, 3)
    cls = transformers.Gemma4ForConditionalGeneration
    original = cls.from_pretrained(base_dir, dtype=torch.bfloat16).eval()
    pruned = cls.from_pretrained(out, dtype=torch.bfloat16).eval()
    layers = sorted(kept)
    _route_over(original, "gemma4", [torch.tensor(kept[layer]) for layer in layers])
    _route_over(pruned, "gemma4", [torch.arange(5)] * len(layers))
    inputs = _inputs()
    mask = inputs["attention_mask"].bool()
    assert torch.equal(pruned(**inputs).logits[mask], original(**inputs).logits[mask])
