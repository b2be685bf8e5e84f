"""Measure every routed expert's contribution on calibration tokens, per MoE layer and class.

The family's `collect.experts` module (data, release/families/*.toml) is the model's own experts module,
which the model calls as experts(hidden, top_k_index, top_k_weights) with the router's final weights —
after the family's top-k, renormalisation and scales, computed by the model's own router. `ExpertProbe`
stands in for that call: it runs the same module with each (token, slot) pair as its own row and unit
weight, which gives every selected expert's output before the weighted sum, then records
router weight × ‖output‖₂ per token and expert and returns the weighted sum the way the module's
implementation forms it (per-expert adds in the hidden dtype for `eager`, one fp32 sum over the k slots for
`grouped_mm`/`batched_mm`). The layer's output is therefore the model's, which a test checks against a
full-model forward.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..families import Family
from ..prune.checkpoint import CheckpointInfo
from .calibration import TokenizedClass
from .stream import Batch, LayerStream


@dataclass
class Collected:
    classes: list[str]
    class_tokens: list[int]  # real (unpadded) tokens per class
    counts: dict[int, torch.Tensor]  # MoE layer → [classes, experts] int64: tokens routed
    sums: dict[int, torch.Tensor]  # MoE layer → [classes, experts] float64: Σ router weight × ‖output‖
    seconds: float  # wall time of the layer passes (after loading the model skeleton)
    layer_bytes: int  # largest layer's weights in the compute dtype
    activation_bytes: int  # hidden states + recorded layer arguments held between layers
    final_hidden: list[torch.Tensor] | None = None  # after the last layer (tests compare with a full forward)

    @property
    def tokens(self) -> int:
        return sum(self.class_tokens)


class ExpertProbe:
    """Replaces one experts module's forward while its layer runs (see module docstring)."""

    def __init__(self, experts: torch.nn.Module, num_experts: int, num_classes: int) -> None:
        self.experts = experts
        self.original = experts.forward
        config = getattr(experts, "config", None)
        self.implementation = getattr(config, "_experts_implementation", None) or "eager"
        self.counts = torch.zeros(num_classes, num_experts, dtype=torch.int64)
        self.sums = torch.zeros(num_classes, num_experts, dtype=torch.float64)
        self.valid: torch.Tensor | None = None
        self.label = 0
        experts.forward = self.forward

    def close(self) -> None:
        self.experts.__dict__.pop("forward", None)

    def forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                top_k_weights: torch.Tensor) -> torch.Tensor:
        n, k = top_k_index.shape
        rows = hidden_states.repeat_interleave(k, dim=0)
        # Unit weights in the hidden dtype: x × 1 is exact and keeps the implementation's buffers in that dtype.
        unit = torch.ones((n * k, 1), dtype=hidden_states.dtype, device=hidden_states.device)
        outputs = self.original(rows, top_k_index.reshape(n * k, 1), unit).view(n, k, -1)
        del rows, unit  # working memory: a layer's worth of these per batch
        self._record(outputs, top_k_index, top_k_weights)
        weighted = outputs * top_k_weights.unsqueeze(-1)
        if self.implementation != "eager":
            return weighted.sum(dim=1).to(hidden_states.dtype)
        # eager: index_add_ per expert in ascending index order, each term cast to the hidden dtype first
        terms = weighted.to(hidden_states.dtype)
        order = torch.argsort(top_k_index, dim=1, stable=True)
        terms = terms.gather(1, order.unsqueeze(-1).expand_as(terms))
        acc = torch.zeros_like(hidden_states)
        for slot in range(k):
            acc = acc + terms[:, slot]
        return acc

    def _record(self, outputs: torch.Tensor, index: torch.Tensor, weights: torch.Tensor) -> None:
        assert self.valid is not None and self.valid.numel() == index.shape[0], "token mask out of step"
        norms = torch.linalg.vector_norm(outputs, dim=-1, dtype=torch.float32)
        contribution = norms * weights.float()
        keep = self.valid.unsqueeze(1).expand_as(index)
        # Sums in float64 on the CPU, in token order: the same inputs give the same bits on any device.
        experts = index[keep].cpu()
        values = contribution[keep].to(torch.float64).cpu()
        self.counts[self.label] += torch.bincount(experts, minlength=self.counts.shape[1])
        self.sums[self.label].index_add_(0, experts, values)


def make_batches(classes: Sequence[TokenizedClass], *, batch_tokens: int, pad_id: int) -> list[Batch]:
    """Per class, samples in order, packed into right-padded batches of at most `batch_tokens` (padded) tokens."""
    batches: list[Batch] = []
    for label, cls in enumerate(classes):
        group: list[tuple[int, ...]] = []
        for sample in cls.samples:
            if group and max(len(s) for s in [*group, sample]) * (len(group) + 1) > batch_tokens:
                batches.append(_padded(group, label, pad_id))
                group = []
            group.append(sample)
        if group:
            batches.append(_padded(group, label, pad_id))
    return batches


def _padded(samples: list[tuple[int, ...]], label: int, pad_id: int) -> Batch:
    length = max(len(s) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.int64)
    mask = torch.zeros((len(samples), length), dtype=torch.int64)
    for row, s in enumerate(samples):
        ids[row, :len(s)] = torch.tensor(s, dtype=torch.int64)
        mask[row, :len(s)] = 1
    return Batch(ids, mask, label)


def collect(info: CheckpointInfo, family: Family, classes: Sequence[TokenizedClass], *, device: torch.device,
            dtype: torch.dtype, batch_tokens: int = 4096, pad_id: int = 0, keep_hidden: bool = False,
            progress: Callable[[str], None] | None = None) -> Collected:
    """Stream the checkpoint's decoder over the calibration classes and measure every MoE layer's experts."""
    spec = family.collect()
    if spec is None:
        raise InputError(f"the {family.family} family has no contribution collector (no `collect` in its layout)",
                         file=f"release/families/{family.family}.toml", field="collect")
    batches = make_batches(classes, batch_tokens=batch_tokens, pad_id=pad_id)
    stream = LayerStream(info, device=device, dtype=dtype)
    try:
        start = time.perf_counter()
        stream.record(batches)
        activation_bytes = stream.activation_bytes()
        masks = [b.attention_mask.reshape(-1).bool().to(device) for b in batches]
        counts: dict[int, torch.Tensor] = {}
        sums: dict[int, torch.Tensor] = {}
        moe = set(info.moe_layers)
        for layer in range(stream.num_layers):
            probe = None
            if layer in moe:
                experts = stream.text.layers[layer].get_submodule(spec.experts)
                probe = ExpertProbe(experts, info.num_experts, len(classes))

            def before(b: int, probe: ExpertProbe | None = probe) -> None:
                if probe is not None:
                    probe.valid, probe.label = masks[b], batches[b].label

            t = time.perf_counter()
            try:
                stream.run_layer(layer, before)
            finally:
                if probe is not None:
                    probe.close()
            if probe is not None:
                counts[layer], sums[layer] = probe.counts, probe.sums
            if progress:
                progress(f"layer {layer + 1}/{stream.num_layers}: {time.perf_counter() - t:.1f} s")
        seconds = time.perf_counter() - start
        class_tokens = [0] * len(classes)
        for b in batches:
            class_tokens[b.label] += b.tokens
        return Collected(
            classes=[c.name for c in classes], class_tokens=class_tokens, counts=counts, sums=sums, seconds=seconds,
            layer_bytes=max(stream.layer_bytes(i) for i in range(stream.num_layers)),
            activation_bytes=activation_bytes,
            final_hidden=[h.detach().cpu() for h in stream.hidden] if keep_hidden else None,
        )
    finally:
        stream.close()
