"""Where quality figures live: on the artifact they measure, as `facts.quality`.

A `quality:<X>` artifact holds the figures of what it measures (its recipe's `measures`) together with
the files it measured (path, sha256). `apply_quality` is the one place that copies them onto the measured
artifact; it is called wherever artifacts enter the registry (a build or a restore in pipeline, `release
cards`/`preview` restoring what is built, a job or `--finish` adopting staged records), so facts.quality
always says what the measured artifact's files are worth — and nothing when they were not measured.

`quality_removed` turns the definition's thresholds into tiers listed as removed, with the measured reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

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


def quality_removed(release: Release, artifacts: ArtifactRegistry) -> dict[str, str]:
    """GGUF tiers whose measured figures cross the definition's thresholds → the measured reason."""
    q = release.quality
    g = release.definition.gguf
    if q is None or g is None or (q.max_kld is None and q.min_top1 is None):
        return {}
    out: dict[str, str] = {}
    for tier in g.tiers:
        a = artifacts.get(f"gguf:{tier}")
        fig = a.facts.get("quality") if a is not None else None
        if not fig:
            continue
        why = []
        if q.max_kld is not None and fig["kld_mean"] > q.max_kld:
            why.append(f"KL divergence {fig['kld_mean']:.4g} nats/token is above max_kld {q.max_kld:g}")
        if q.min_top1 is not None and fig["top1_agreement"] < q.min_top1:
            why.append(f"top-1 agreement {100 * fig['top1_agreement']:.1f}% is below min_top1 "
                       f"{100 * q.min_top1:g}%")
        if why:
            out[tier] = f"measured against {fig['reference']} on {fig['tokens']} tokens: " + "; ".join(why)
    return out


def withheld(release: Release, artifacts: ArtifactRegistry, a: Artifact) -> bool:
    """A tier the thresholds removed: built, measured, and not published."""
    return a.kind == "gguf" and a.id.split(":", 1)[1] in quality_removed(release, artifacts)


def removed_conflicts(release: Release, artifacts: ArtifactRegistry) -> list[str]:
    """What still points at a tier the thresholds removed (a publish refuses these)."""
    removed = quality_removed(release, artifacts)
    if not removed:
        return []
    d = release.definition
    out = []
    for tag, tier in (d.ollama.tags.items() if d.ollama else []):
        if tier in removed:
            out.append(f"Ollama tag {tag} is made from {tier}, which [quality] removes ({removed[tier]})")
    quick = d.cards.quick_start.gguf_tier
    if quick in removed:
        out.append(f"cards.quick_start.gguf_tier {quick} is removed by [quality] ({removed[quick]})")
    return out
