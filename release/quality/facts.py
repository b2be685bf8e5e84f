"""Where quality figures live: on the artifact they measure, as `facts.quality`.

A `quality:<X>` artifact holds the figures of what it measures (its recipe's `measures`) together with
the files it measured (path, sha256). `apply_quality` is the one place that copies them onto the measured
artifact; it is called wherever artifacts enter the registry (a build or a restore in pipeline, `release
cards`/`preview` restoring what is built, a job or `--finish` adopting staged records), so facts.quality
always says what the measured artifact's files are worth — and nothing when they were not measured.

`thresholds_crossed` turns the definition's thresholds into the tiers they withhold (listed as removed, with
the measured reason: `quality_removed`), and `withheld_in_use` into what still uses one of them — the quick
start, an Ollama tag — which the cards cannot link: `release cards`, a publish and
`check` (from the figures recorded in DIST/<name>) refuse it, naming the tier, the threshold and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Problem
from ..manifest import Artifact, ArtifactRegistry

if TYPE_CHECKING:
    from ..spec.load import Release

FIGURES = ("reference", "kld_mean", "kld_p99", "top1_agreement", "ppl", "ppl_reference", "tokens", "text_sha256")
BUILT = ("built", "published")


def measured_files(a: Artifact) -> list[list[str | None]]:
    """What a measurement is of: the measured artifact's files (path, sha256), JSON-shaped."""
    return [[f.path, f.sha256] for f in a.files]


def apply_quality(artifacts: ArtifactRegistry) -> None:
    """Copy each measured quality artifact's figures onto the artifact it measures, when that artifact's
    files are the ones measured; drop figures that no current measurement backs."""
    current: dict[str, dict[str, Any]] = {}
    targets: set[str] = set()
    for q in artifacts.of_kind("quality"):
        target = q.recipe.get("measures")
        if not target or target not in artifacts:
            continue
        targets.add(target)
        figures = q.facts.get("quality")
        if q.status in BUILT and figures and q.facts.get("measured") == measured_files(artifacts[target]):
            current[target] = figures
    for target in targets:
        a = artifacts[target]
        if target in current:
            a.facts["quality"] = dict(current[target])
        else:
            a.facts.pop("quality", None)


def figure_problems(artifacts: ArtifactRegistry, q: Artifact) -> list[str]:
    """What is wrong with a built quality artifact's figures (the verify gate)."""
    import math

    target = q.recipe.get("measures")
    if not target:
        return []  # the reference: its files are checked by their hashes
    fig = q.facts.get("quality")
    if not isinstance(fig, dict) or set(fig) != set(FIGURES):
        return [f"figures missing or incomplete ({sorted(fig) if isinstance(fig, dict) else fig!r})"]
    problems = [f"{k} = {fig[k]!r} is not a finite number ≥ 0" for k in FIGURES[1:-1]
                if not isinstance(fig[k], int | float) or not math.isfinite(fig[k]) or fig[k] < 0]
    if not problems and not 0 <= fig["top1_agreement"] <= 1:
        problems.append(f"top1_agreement = {fig['top1_agreement']!r} is not within 0–1")
    if target in artifacts and q.facts.get("measured") != measured_files(artifacts[target]):
        problems.append(f"measured other files than {target} holds now (rebuild it: --from quality)")
    return problems


@dataclass(frozen=True)
class Crossing:
    """A measured figure on the wrong side of a [quality] threshold."""

    setting: str  # "max_kld" or "min_top1"
    limit: float
    measured: float

    def describe(self) -> str:
        if self.setting == "max_kld":
            return f"KLD {self.measured:.4g} > {self.limit:g}"
        return f"top-1 {100 * self.measured:.1f}% < {100 * self.limit:g}%"

    @property
    def remedy(self) -> str:
        return "raise max_kld" if self.setting == "max_kld" else "lower min_top1"


def thresholds_crossed(release: Release, artifacts: ArtifactRegistry) -> dict[str, list[Crossing]]:
    """GGUF tiers whose measured figures cross the definition's thresholds → what they cross."""
    q = release.quality
    g = release.definition.gguf
    if q is None or g is None or (q.max_kld is None and q.min_top1 is None):
        return {}
    out: dict[str, list[Crossing]] = {}
    for tier in g.tiers:
        a = artifacts.get(f"gguf:{tier}")
        fig = a.facts.get("quality") if a is not None else None
        if not fig:
            continue
        crossed = []
        if q.max_kld is not None and fig["kld_mean"] > q.max_kld:
            crossed.append(Crossing("max_kld", q.max_kld, fig["kld_mean"]))
        if q.min_top1 is not None and fig["top1_agreement"] < q.min_top1:
            crossed.append(Crossing("min_top1", q.min_top1, fig["top1_agreement"]))
        if crossed:
            out[tier] = crossed
    return out


def quality_removed(release: Release, artifacts: ArtifactRegistry) -> dict[str, str]:
    """GGUF tiers whose measured figures cross the definition's thresholds → the measured reason."""
    out: dict[str, str] = {}
    for tier, crossed in thresholds_crossed(release, artifacts).items():
        fig = artifacts[f"gguf:{tier}"].facts["quality"]
        why = [f"KL divergence {c.measured:.4g} nats/token is above max_kld {c.limit:g}" if c.setting == "max_kld"
               else f"top-1 agreement {100 * c.measured:.1f}% is below min_top1 {100 * c.limit:g}%" for c in crossed]
        out[tier] = f"measured against {fig['reference']} on {fig['tokens']} tokens: " + "; ".join(why)
    return out


def withheld(release: Release, artifacts: ArtifactRegistry, a: Artifact) -> bool:
    """A tier the thresholds removed: built, measured, and not published."""
    return a.kind == "gguf" and a.id.split(":", 1)[1] in quality_removed(release, artifacts)


def withheld_in_use(release: Release, artifacts: ArtifactRegistry) -> list[Problem]:
    """What still uses a tier the thresholds withhold — the quick start, an Ollama tag — one problem per use,
    naming the threshold, the measurement and what to change. The cards cannot link a tier that is not
    published, so `release cards`, a publish and `check` (with built figures) refuse. (A recommended tier
    that is withheld is only listed as removed: nothing links it.)"""
    crossed = thresholds_crossed(release, artifacts)
    if not crossed:
        return []
    d = release.definition
    uses: list[tuple[str, str, str]] = []  # (field, how the definition uses it, tier)
    if d.cards.quick_start.gguf_tier in crossed:
        uses.append(("cards.quick_start.gguf_tier", "[cards] quick_start", d.cards.quick_start.gguf_tier))
    for tag, tier in (d.ollama.tags.items() if d.ollama else []):
        if tier in crossed:
            uses.append((f"ollama.tags.{tag}", f"Ollama tag {tag} ([ollama] tags.{tag})", tier))
    problems = []
    for field, user, tier in uses:
        settings = " and ".join(f"{c.setting} = {c.limit:g}" for c in crossed[tier])
        verb = "withhold" if len(crossed[tier]) > 1 else "withholds"
        measured = "; ".join(c.describe() for c in crossed[tier])
        remedy = " or ".join(dict.fromkeys(c.remedy for c in crossed[tier]))
        problems.append(Problem(release.display("release.toml"), field,
                                f"[quality] {settings} {verb} gguf:{tier} ({measured}), which {user} uses: "
                                f"{remedy}, or pick another tier"))
    return problems


def removed_conflicts(release: Release, artifacts: ArtifactRegistry) -> list[str]:
    """What still points at a tier the thresholds removed (a publish refuses these), as messages."""
    return [str(p) for p in withheld_in_use(release, artifacts)]


def recorded_withheld_in_use(release: Release, dist_release: Path, planned: ArtifactRegistry) -> list[Problem]:
    """`withheld_in_use` from what `dist_release/state.json` records as built and measured over the
    release's plan `planned` (read only: no file is hashed or written). Nothing recorded, or a record this
    tool cannot read: nothing to say."""

    path = dist_release / "state.json"
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return []
    records = data.get("artifacts") if isinstance(data, dict) else None
    if not isinstance(records, dict):
        return []
    artifacts = planned
    for aid, rec in records.items():
        if aid in artifacts and isinstance(rec, dict):
            try:
                artifacts.add(Artifact.from_json(rec["artifact"]))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
    apply_quality(artifacts)
    return withheld_in_use(release, artifacts)
