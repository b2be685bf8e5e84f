"""Which artifact of a release its benchmark scores were measured on, so each card can say it.

scores.json's `harness.artifact` names what was evaluated ("NVFP4A16", a GGUF tier such as "Q6_K", "BF16")
and `harness.engine` what ran it. The card of that artifact presents the scores as its own (and carries
them in the Hub's model-index); every other card shows them as measured elsewhere, with a link. Per-quant
scores belong to the artifact named by their key: "NVFP4A16" and "BF16" to those repos, a tier to the GGUF.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..gguf.tiers import gguf_filename
from ..spec.load import Release
from ..spec.scores import Harness
from .urls import hub_url

PER_QUANT_KINDS = {"NVFP4A16": "nvfp4", "BF16": "bf16"}  # per_quant keys that are not GGUF tiers
_NVFP4_NAMES = ("NVFP4", "NVFP4A16")
_BF16_NAMES = ("BF16", "SAFETENSORS")
_GGUF_ENGINES = ("llama.cpp", "llama-cpp", "ollama", "lm studio")


@dataclass(frozen=True)
class MeasuredOn:
    """The artifact the benchmark rows were measured on, as far as scores.json says."""

    artifact: str  # as written in harness.artifact ("" when not given)
    engine: str
    kind: str | None  # the card kind it is (bf16 | gguf | nvfp4), None when not an artifact of this release
    tier: str | None  # the GGUF tier, when kind is gguf
    name: str  # how a card names it: "the NVFP4A16 checkpoint", "the Q6_K GGUF"
    url: str  # where it is ("" when unknown)

    def as_dict(self) -> dict[str, Any]:
        return {"artifact": self.artifact, "engine": self.engine, "kind": self.kind, "tier": self.tier,
                "name": self.name, "url": self.url}


def _gguf_tier(release: Release, artifact: str, engine: str) -> str | None:
    g = release.definition.gguf
    if g is None:
        return None
    name = artifact.removeprefix("gguf:").removeprefix("GGUF:")
    known = {t.upper(): t for t in [*g.tiers, *g.removed]}
    if engine.lower() in _GGUF_ENGINES or artifact.lower().startswith("gguf:"):
        known[g.baseline.upper()] = g.baseline  # "BF16" run by llama.cpp is the GGUF baseline
    return known.get(name.upper())


def measured_on(release: Release, harness: Harness | None = None) -> MeasuredOn:
    """Where `harness` (this release's own by default) says its scores were measured."""

    h = harness or release.scores.harness
    d = release.definition
    artifact, engine = h.artifact.strip(), h.engine.strip()
    tier = _gguf_tier(release, artifact, engine) if artifact else None
    if tier is not None and d.gguf is not None:
        return MeasuredOn(artifact, engine, "gguf", tier, f"the {tier} GGUF",
                          hub_url(d.gguf.repo, gguf_filename(d.gguf.prefix, tier)))
    upper = artifact.upper()
    if d.nvfp4 is not None and upper.startswith(_NVFP4_NAMES):
        return MeasuredOn(artifact, engine, "nvfp4", None, f"the {artifact} checkpoint", hub_url(d.nvfp4.repo))
    if d.bf16 is not None and upper in _BF16_NAMES:
        return MeasuredOn(artifact, engine, "bf16", None, "the BF16 checkpoint", hub_url(d.bf16.repo))
    return MeasuredOn(artifact, engine, None, None, artifact, "")


def label(release: Release, harness: Harness) -> str:
    """One short phrase for comparison tables: "NVFP4A16 with vLLM", "Q6_K", "llama.cpp"."""
    m = measured_on(release, harness)
    if m.artifact and m.engine:
        return f"{m.artifact} with {m.engine}"
    return m.artifact or m.engine or "see its card"


def per_quant_kind(tier: str) -> str:
    """The card a per-quant score belongs on."""
    return PER_QUANT_KINDS.get(tier, "gguf")
