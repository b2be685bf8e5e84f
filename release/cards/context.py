"""Everything a card shows, computed once: deltas, capacity removed, parameters, sizes, bits per weight,
links. Templates only format and word these values; they never compute a figure themselves.

Sizes come from built artifacts when present and from the planned estimates otherwise; an estimate
carries `estimated=True` so templates can mark it ("≈").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from ..dropmap import summary
from ..estimate import census
from ..gguf.tiers import gguf_filename, large_variant_base
from ..manifest import Artifact, ArtifactRegistry
from ..ollama.layers import param_text
from ..quality.chart import CHART_FILE, Point, svg_chart
from ..quality.facts import quality_removed
from ..spec.load import Release
from .licenses import license_terms
from .measured import label as measured_label
from .measured import measured_on, per_quant_kind
from .stored import stored_table
from .urls import HUB, OLLAMA, hub_resolve_url, hub_tree_url, hub_url

# NVFP4A16: 4-bit values plus one FP8 scale per 16 weights (docs/nvfp4.md); embeddings stay BF16.
NVFP4_BPW = 4.5


OLLAMA_REGISTRY_HOSTS = ("registry.ollama.ai", "ollama.com")


def ollama_host(registry: str) -> str:
    """'' for ollama.com's registry, else the registry's host[:port] (it prefixes model names)."""
    host = urlparse(registry).netloc
    return "" if host in OLLAMA_REGISTRY_HOSTS else host


def ollama_name(model: str, registry: str = "") -> str:
    """How `ollama run`/`pull` names the model: with the registry host unless it is ollama.com."""
    host = ollama_host(registry) if registry else ""
    return f"{host}/{model}" if host else model


def ollama_url(model: str, tag: str = "", registry: str = "") -> str:
    """The page a browser can open for a model or tag: ollama.com's, or "" for another OCI registry —
    its only URLs are API endpoints (a manifest answers 400 without an Accept header), so a card shows
    the pull command there instead of a link."""
    if registry and ollama_host(registry):
        return ""
    return f"{OLLAMA}/{model}:{tag}" if tag else f"{OLLAMA}/{model}"


@dataclass
class Size:
    """Bytes of an artifact or file; `estimated` when no builder has measured it yet."""

    bytes: int | None
    estimated: bool

    @property
    def gb(self) -> float | None:
        return None if self.bytes is None else self.bytes / 1e9

    def __bool__(self) -> bool:
        return self.bytes is not None


def artifact_size(a: Artifact | None) -> Size:
    if a is None:
        return Size(None, True)
    if a.status != "planned" and a.size:
        return Size(a.size, False)
    if a.size and all(f.size is not None for f in a.files):
        return Size(a.size, False)
    size = a.facts.get("size")
    return Size(int(size) if size else None, bool(a.facts.get("estimated", True)))


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


@dataclass
class Row:
    name: str
    n: int | None
    metric: str
    reference: float
    variant: float
    delta: float
    higher_is_better: bool

    @property
    def verdict(self) -> str:
        """parity | better | worse, from the variant's point of view."""
        if abs(self.delta) < 1e-9:
            return "parity"
        return "better" if (self.delta > 0) == self.higher_is_better else "worse"


@dataclass
class QuantRow:
    tier: str
    file: str
    url: str
    ftype: str
    size: Size
    bpw: float | None
    bpw_estimated: bool
    note: str
    recommended: bool
    baseline: bool
    custom: bool  # a CD-* recipe of this release
    split: bool = False  # published as gguf-split shards in a folder named `file`
    ollama_tags: list[str] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)
    quality: dict[str, Any] | None = None  # facts.quality: measured against the baseline (None: not yet)


def _delta(reference: float, variant: float) -> float:
    # Scores carry two decimals; rounding here keeps 91.46 − 92.07 from printing as −0.6099999.
    return round(variant - reference, 6)


def _params_h(n: int | None) -> str:
    if not n:
        return "—"
    if n >= 1e9:
        return f"{n / 1e9:.1f}B"
    if n >= 1e6:
        return f"{n / 1e6:.1f}M"
    return f"{n / 1e3:.1f}K"


def context_length(release: Release) -> int | None:
    """The model's context in tokens: `max_position_embeddings` of its text config (pruning experts
    leaves it alone; llama.cpp writes the same value as the GGUF's context_length)."""
    value = release.family.text_config(release.base_config).get("max_position_embeddings")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# Ollama's own default context by GPU memory (docs/context-length.mdx: "< 24 GiB VRAM: 4k, 24-48 GiB: 32k,
# >= 48 GiB: 256k"; the values are those of server/routes.go in github.com/ollama/ollama). A `num_ctx`
# baked into a tag replaces them, and only a request's own options override it again (not
# OLLAMA_CONTEXT_LENGTH, which merely sets the server default).
OLLAMA_DEFAULT_CONTEXTS = ((24, 4096), (48, 32768), (None, 262144))


def num_ctx_advice(num_ctx: int, context: int | None) -> dict[str, Any]:
    """What a card can truthfully say about a baked `num_ctx`: the largest Ollama default below it (to
    lower it to when the model does not fit), or the model's context when the baked value is below it
    and no default is smaller (so raising it is the only sensible advice)."""
    defaults = [ctx for _, ctx in OLLAMA_DEFAULT_CONTEXTS]
    lower = max((d for d in defaults if d < num_ctx), default=None)
    return {
        "value": num_ctx,
        "lower_to": lower,
        "raise_to": context if lower is None and context is not None and num_ctx < context else None,
        "capped_at": context if context is not None and num_ctx > context else None,
        "defaults": [{"below_gib": gib, "tokens": ctx} for gib, ctx in OLLAMA_DEFAULT_CONTEXTS],
    }


def release_summary(release: Release, artifacts: ArtifactRegistry | None = None) -> dict[str, Any]:
    """The facts of a release needed on its own cards and on its siblings' cards.

    Parameter counts are estimates from the config until the BF16 checkpoint is built; then they are
    the pruner's counts of the tensors it read and wrote.
    """
    d = release.definition
    dm = release.drop_map
    c = census(release)
    bf16 = artifacts.get("bf16") if artifacts is not None else None
    measured = bf16 is not None and bf16.status != "planned" and bool(bf16.facts.get("parameters"))
    params_before = int(bf16.facts.get("parameters_before") or c.base_total or 0) if measured else c.base_total
    params_after = int(bf16.facts["parameters"]) if measured else c.pruned_total
    params_removed = (params_before - params_after) if measured and params_before else c.removed
    experts_before = dm.num_experts
    kept = dm.kept_count
    dropped = experts_before - kept
    try:
        top_k = release.family.top_k(release.base_config)
    except KeyError:
        top_k = None
    rows = [Row(b.name, b.n, b.metric, float(b.reference), float(b.variant),
                _delta(float(b.reference), float(b.variant)), b.higher_is_better)
            for b in release.scores.benchmarks]
    repos = {k: s.repo for k, s in d.hub_sections().items()}
    home = repos.get("bf16") or repos.get("gguf") or repos.get("nvfp4")
    return {
        "name": release.name,
        "title": d.release.title,
        "summary": d.release.summary,
        "label": d.prune.label,
        "when_to_use": d.cards.when_to_use,
        "experts_before": experts_before,
        "experts_kept": kept,
        "experts_dropped": dropped,
        "capacity_removed_pct": 100.0 * dropped / experts_before if experts_before else 0.0,
        "moe_layers": len(dm.kept),
        "top_k": top_k,
        "context_length": context_length(release),
        "params_before": params_before,
        "params_after": params_after,
        "params_before_h": _params_h(params_before),
        "params_after_h": _params_h(params_after),
        "params_removed": params_removed,
        "params_removed_h": _params_h(params_removed),
        "params_estimated": not measured,
        "repos": repos,
        "home_url": hub_url(home) if home else "",
        "repo_urls": {k: hub_url(r) for k, r in repos.items()},
        "ollama_model": d.ollama.model if d.ollama else "",
        "ollama_url": ollama_url(d.ollama.model, registry=d.ollama.registry) if d.ollama else "",
        "benchmarks": rows,
        "harness": release.scores.harness.model_dump(),
        "measured": measured_label(release, release.scores.harness),
    }


def _gguf_ftype(a: Artifact, tier: str) -> str:
    ftype = a.recipe.get("ftype") or large_variant_base(tier) or tier
    return str(ftype)


def quant_rows(release: Release, artifacts: ArtifactRegistry, params: int | None,
               removed: dict[str, str] | None = None) -> list[QuantRow]:
    """The tier table: the published baseline and every tier, except those `removed` (by [quality])."""
    g = release.definition.gguf
    if g is None:
        return []
    o = release.definition.ollama
    tags_by_tier: dict[str, list[str]] = {}
    if o:
        for tag, tier in o.tags.items():
            tags_by_tier.setdefault(tier, []).append(tag)
    pq = release.scores.per_quant.scores if release.scores.per_quant else {}
    order = ([g.baseline] if g.publish_baseline else []) + list(g.tiers)
    rows: list[QuantRow] = []
    for tier in order:
        a = artifacts.get(f"gguf:{tier}")
        if a is None or tier in (removed or {}):
            continue
        size = artifact_size(a)
        files = [f.path for f in a.files] or [gguf_filename(g.prefix, tier)]
        split = len(files) > 1
        file = files[0].split("/")[0] if split else files[0]
        url = hub_tree_url(g.repo, file) if split else hub_url(g.repo, file)
        bpw = a.facts.get("bpw")
        bpw_estimated = False
        if bpw is None and size.bytes and params:
            bpw = size.bytes * 8 / params
            bpw_estimated = True
        baseline = bool(a.recipe.get("baseline"))
        note = g.notes.get(tier) or a.facts.get("note") or a.recipe.get("note") or ""
        rows.append(QuantRow(
            tier=tier, file=file, url=url, ftype=_gguf_ftype(a, tier), size=size,
            bpw=float(bpw) if bpw is not None else None, bpw_estimated=bpw_estimated or size.estimated,
            note=note, recommended=tier in g.recommended, baseline=baseline, custom=tier in g.recipes,
            ollama_tags=tags_by_tier.get(tier, []), scores=dict(pq.get(tier, {})), split=split,
            quality=a.facts.get("quality") if a.status != "planned" else None))
    return rows


def quality_points(release: Release, artifacts: ArtifactRegistry) -> list[Point]:
    """Every measured GGUF tier as a point of the chart (removed ones included, marked)."""
    g = release.definition.gguf
    if g is None:
        return []
    removed = quality_removed(release, artifacts)
    points = []
    for tier in g.tiers:
        a = artifacts.get(f"gguf:{tier}")
        fig = a.facts.get("quality") if a is not None and a.status != "planned" else None
        size = artifact_size(a)
        if fig and size.bytes:
            points.append(Point(tier, size.bytes, float(fig["kld_mean"]), tier in g.recommended, tier in removed))
    return points


def _selection(release: Release, artifacts: ArtifactRegistry) -> dict[str, Any] | None:
    """How the experts were chosen, as the recorded scores say (None: only the definition's text)."""
    selection = summary.selection_of(release, artifacts)
    if selection is None or release.definition.bf16 is None:
        return None
    return {**summary.describe(selection), "reap_url": summary.REAP_URL,
            "chart_url": hub_resolve_url(release.definition.bf16.repo, summary.CHART_FILE)}


def quality_chart(release: Release, artifacts: ArtifactRegistry) -> str:
    """The SVG the GGUF repo ships beside its card, from artifact facts alone."""
    points = quality_points(release, artifacts)
    g = release.definition.gguf
    q = release.quality
    assert g is not None and q is not None
    fig = _first_figures(release, artifacts)
    measured = (f"{fig['tokens']} tokens of {q.text} against the {g.baseline} conversion" if fig
                else f"on {q.text} against the {g.baseline} conversion")
    title = f"{release.definition.release.title}: KL divergence against file size"
    return svg_chart(points, title=title, subtitle=f"{len(points)} of {len(g.tiers)} tiers measured, {measured}")


def _first_figures(release: Release, artifacts: ArtifactRegistry) -> dict[str, Any] | None:
    g = release.definition.gguf
    for tier in g.tiers if g else []:
        a = artifacts.get(f"gguf:{tier}")
        if a is not None and a.status != "planned" and a.facts.get("quality"):
            return a.facts["quality"]
    return None


def _quality_summary(release: Release, artifacts: ArtifactRegistry, quants: list[QuantRow]) -> dict[str, Any] | None:
    """What the GGUF card says about its measurements (None when the release measures nothing)."""
    q = release.quality
    g = release.definition.gguf
    if q is None or g is None:
        return None
    fig = _first_figures(release, artifacts)
    points = quality_points(release, artifacts)
    return {"text": q.text, "tokens": fig["tokens"] if fig else None,
            "text_sha256": fig["text_sha256"] if fig else "", "reference": g.baseline,
            "measured": len(points), "tiers": len(g.tiers), "any_planned": any(
                r.quality is None for r in quants if not r.baseline),
            "chart": {"file": CHART_FILE, "url": hub_resolve_url(g.repo, CHART_FILE)} if points else None,
            "max_kld": q.max_kld, "min_top1": q.min_top1}


def _nvfp4_size(release: Release, artifacts: ArtifactRegistry) -> Size:
    size = artifact_size(artifacts.get("nvfp4"))
    if size:
        return size
    c = census(release)
    if c.pruned_total is None:
        return Size(None, True)
    # Until the builder reports one: quantized linears at NVFP4_BPW, embeddings kept BF16.
    return Size(int((c.pruned_total - c.embedding) * NVFP4_BPW / 8 + c.embedding * 2), True)


def build_context(release: Release, artifacts: ArtifactRegistry, provenance: dict[str, Any]) -> dict[str, Any]:
    """The context every card template is rendered with (the same for every card of a release)."""
    d = release.definition
    me = release_summary(release, artifacts)
    g = d.gguf
    o = d.ollama
    removed_by_quality = quality_removed(release, artifacts)
    quants = quant_rows(release, artifacts, me["params_after"], removed_by_quality)
    by_tier = {q.tier: q for q in quants}

    formats: list[dict[str, Any]] = []
    if d.bf16:
        formats.append({"kind": "bf16", "repo": d.bf16.repo, "url": hub_url(d.bf16.repo),
                        "size": artifact_size(artifacts.get("bf16"))})
    if g:
        formats.append({"kind": "gguf", "repo": g.repo, "url": hub_url(g.repo), "size": None,
                        "tiers": len(g.tiers), "custom": [t for t in g.tiers if t in g.recipes]})
    if d.nvfp4:
        formats.append({"kind": "nvfp4", "repo": d.nvfp4.repo, "url": hub_url(d.nvfp4.repo),
                        "size": _nvfp4_size(release, artifacts)})
    if o:
        formats.append({"kind": "ollama", "repo": ollama_name(o.model, o.registry),
                        "url": ollama_url(o.model, registry=o.registry), "size": None,
                        "tags": list(o.tags)})

    pq_scores = release.scores.per_quant.scores if release.scores.per_quant else {}
    ollama_tags: list[dict[str, Any]] = []
    if o:
        for tag, tier in o.tags.items():
            a = artifacts.get(f"ollama:{tag}")
            size = artifact_size(a)
            if not size and tier in by_tier:
                size = by_tier[tier].size
            facts = a.facts if a else {}
            measured = artifacts.get(f"gguf:{tier}")
            digest = facts.get("manifest_digest") or facts.get("digest") or ""
            ollama_tags.append({
                "tag": tag, "tier": tier, "ref": f"{ollama_name(o.model, o.registry)}:{tag}",
                "url": ollama_url(o.model, tag, o.registry),
                "size": size, "vram_gb": o.vram_gb.get(tag), "latest": tag == o.latest,
                "digest": digest.removeprefix("sha256:")[:12],
                "file_type": facts.get("file_type") or (by_tier[tier].ftype if tier in by_tier else tier),
                "model_type": facts.get("model_type") or me["params_after_h"],
                "model_type_estimated": not facts.get("model_type"),
                "recommended": g is not None and tier in g.recommended,
                "quality": measured.facts.get("quality") if measured is not None and measured.status != "planned"
                else None,
                "note": by_tier[tier].note if tier in by_tier else "",
                "scores": dict(pq_scores.get(tier, {}))})
    qs = d.cards.quick_start
    gguf_tier = qs.gguf_tier or (g.recommended[0] if g and g.recommended else (g.tiers[0] if g and g.tiers else ""))
    quick_tags = [t for t in ollama_tags if t["tag"] in qs.ollama_tags]
    quick_tags.sort(key=lambda t: qs.ollama_tags.index(t["tag"]))
    if not quick_tags and o:
        quick_tags = [t for t in ollama_tags if t["tag"] == o.latest]

    pq_benchmarks = list(release.scores.per_quant.benchmarks) if release.scores.per_quant else []
    scored_on = measured_on(release)
    per_quant = []
    if release.scores.per_quant:
        pq = release.scores.per_quant.scores
        tier_order = [q.tier for q in quants]
        extra = [t for t in pq if t not in tier_order]
        for tier in [t for t in tier_order if t in pq] + extra:
            q = by_tier.get(tier)
            ref = {b: release.scores.benchmark(b) for b in pq_benchmarks}
            per_quant.append({
                "tier": tier, "kind": per_quant_kind(tier), "size": q.size if q else (
                    _nvfp4_size(release, artifacts) if tier == "NVFP4A16" else Size(None, True)),
                "file": q.file if q else "", "url": q.url if q else "",
                "scores": {b: pq[tier].get(b) for b in pq_benchmarks},
                "deltas": {b: (_delta(float(ref[b].reference), float(pq[tier][b]))
                               if b in pq[tier] and ref[b] is not None else None) for b in pq_benchmarks}})
    removed = []
    for r in release.scores.removed_tiers:
        removed.append({"tier": r.tier, "file": gguf_filename(g.prefix, r.tier) if g else r.tier,
                        "size": Size(int(r.size_gb * 1e9), False) if r.size_gb is not None else Size(None, True),
                        "scores": {b: r.scores.get(b) for b in (pq_benchmarks or list(r.scores))},
                        "reason": r.reason})
    for tier, reason in removed_by_quality.items():
        a = artifacts[f"gguf:{tier}"]
        pq_tier = release.scores.per_quant.scores.get(tier, {}) if release.scores.per_quant else {}
        removed.append({"tier": tier, "file": (a.files[0].path.split("/")[0] if a.files else
                                               gguf_filename(g.prefix, tier) if g else tier),
                        "size": artifact_size(a), "scores": {b: pq_tier.get(b) for b in pq_benchmarks},
                        "reason": reason})
    listed = {r["tier"] for r in removed}
    for tier in (g.removed if g else []):
        if tier not in listed:  # named in [gguf] removed, with no measurement in scores.json
            removed.append({"tier": tier, "file": gguf_filename(g.prefix, tier), "size": Size(None, True),
                            "scores": {b: None for b in pq_benchmarks}, "reason": ""})
    removed_benchmarks = pq_benchmarks or sorted({b for r in release.scores.removed_tiers for b in r.scores})

    siblings = []
    for sib in release.siblings:
        s = release_summary(sib)
        shared = {b.name: b for b in s["benchmarks"]}
        s["shared_scores"] = {row.name: shared[row.name].variant for row in me["benchmarks"] if row.name in shared}
        siblings.append(s)

    parameters = []
    num_ctx = None
    if o:

        for key, value in o.parameters.items():
            for text in param_text(value):
                parameters.append({"key": key, "value": text})
        value = o.parameters.get("num_ctx")
        if isinstance(value, int) and not isinstance(value, bool):
            num_ctx = num_ctx_advice(value, me["context_length"])
    template_text = _read(release, o.template) if o else ""
    license_text = _read(release, o.license) if o else ""

    dm = release.drop_map
    per_layer = [{"layer": layer, "kept": len(dm.kept[layer]), "dropped": list(dm.dropped(layer))}
                 for layer in dm.layers]

    imatrix = artifacts.get("gguf:imatrix")
    ollama_files = artifacts.get("gguf:ollama-files")
    return {
        "release": {**d.release.model_dump(), "highlights": list(d.cards.highlights)},
        "license": license_terms(d.release),
        "base": {**d.base.model_dump(), "url": hub_url(d.base.repo),
                 "revision_url": f"{HUB}/{d.base.repo}/tree/{d.base.revision}"},
        "prune": {**d.prune.model_dump(), "per_layer": per_layer, "drop_map_sha256": dm.sha256,
                  "family": release.family.family, "selection": _selection(release, artifacts)},
        "me": me,
        "scores": {"harness": release.scores.harness.model_dump(), "rows": me["benchmarks"],
                   # which artifact the rows were measured on; the Ollama tags count as it when it is their tier
                   "measured": {**scored_on.as_dict(), "ollama_here": scored_on.kind == "gguf" and any(
                       t["tier"] == scored_on.tier for t in ollama_tags)},
                   "at_parity": sum(1 for r in me["benchmarks"] if r.verdict == "parity"),
                   "worse": sum(1 for r in me["benchmarks"] if r.verdict == "worse"),
                   "largest_drop": min((r for r in me["benchmarks"] if r.verdict == "worse"),
                                       key=lambda r: -abs(r.delta), default=None),
                   "better": sum(1 for r in me["benchmarks"] if r.verdict == "better"),
                   "per_quant_benchmarks": pq_benchmarks, "per_quant": per_quant,
                   "removed": removed, "removed_benchmarks": removed_benchmarks},
        "repos": {f["kind"]: f for f in formats},
        "formats": formats,
        "gguf": None if g is None else {
            "repo": g.repo, "url": hub_url(g.repo), "prefix": g.prefix, "baseline": g.baseline,
            "quants": quants, "recommended": list(g.recommended),
            "any_estimated": any(q.size.estimated or q.bpw_estimated for q in quants),
            "recipes": {name: {**r.model_dump(), "overrides": [list(x) for x in r.overrides]}
                        for name, r in g.recipes.items()},
            "imatrix": None if imatrix is None else _imatrix(imatrix, g.repo, g.imatrix),
            "ollama_files": [] if ollama_files is None else [
                {"file": f.path, "url": hub_url(g.repo, f.path)} for f in ollama_files.files],
            "quick_tier": gguf_tier,
            "quick_file": (f"{by_tier[gguf_tier].file}/*" if by_tier[gguf_tier].split else by_tier[gguf_tier].file)
            if gguf_tier in by_tier else "",
            "split_size_gb": g.split_size_gb,
            # Measured facts of built tiers: the quantizer used, what each file stores (planned types until
            # built), and the recipe overrides llama.cpp stored in another type.
            "llama_cpp": next((a.recipe["llama_cpp"] for a in artifacts.of_kind("gguf")
                               if a.status != "planned" and a.recipe.get("llama_cpp")), ""),
            "stored": stored_table(release, artifacts, [q.tier for q in quants]),
            "fallbacks": [{"tier": a.id.split(":", 1)[1], "warnings": list(a.facts["warnings"])}
                          for a in artifacts.of_kind("gguf") if a.status != "planned" and a.facts.get("warnings")],
            "removed": list(g.removed),
            "quality": _quality_summary(release, artifacts, quants),
        },
        "nvfp4": None if d.nvfp4 is None else {
            **d.nvfp4.model_dump(), "url": hub_url(d.nvfp4.repo), "size": _nvfp4_size(release, artifacts),
            **_parallel_sizes(release), "quality": _measured(artifacts.get("nvfp4")),
            "measures_quality": release.quality is not None and "quality:nvfp4" in artifacts},
        "bf16": None if d.bf16 is None else {
            "repo": d.bf16.repo, "url": hub_url(d.bf16.repo), "size": artifact_size(artifacts.get("bf16"))},
        "ollama": None if o is None else {
            "model": o.model, "name": ollama_name(o.model, o.registry), "url": ollama_url(o.model, registry=o.registry),
            "latest": o.latest, "tags": ollama_tags,
            "quick_tags": quick_tags, "parameters": parameters, "renderer": o.renderer, "parser": o.parser,
            "template_file": o.template, "template_text": template_text, "license_file": o.license,
            "license_text": license_text, "hf_route": g is not None, "num_ctx": num_ctx,
            # per-quant benchmarks any tag's tier was scored on (the tags table shows them)
            "score_benchmarks": [b for b in pq_benchmarks if any(b in t["scores"] for t in ollama_tags)]},
        "siblings": siblings,
        "extra": dict(d.cards.extra),
        "provenance": normalise_provenance(release, provenance),
    }


def _measured(a: Artifact | None) -> dict[str, Any] | None:
    return a.facts.get("quality") if a is not None and a.status != "planned" else None


def _imatrix(a: Artifact, repo: str, source: str) -> dict[str, Any]:
    """The importance matrix as its file records it (chunks, chunk size, datasets), once built. The
    requested chunk count is not shown: the calibration text may hold fewer chunks than were asked for."""
    path = a.files[0].path
    built = a.status != "planned"
    chunks = a.facts.get("chunks") if built else None
    datasets = a.facts.get("datasets") if built else None
    return {"file": path, "url": hub_url(repo, path), "source": source, "built": built,
            "chunks": int(chunks) if isinstance(chunks, int) else None,
            "chunk_size": a.facts.get("chunk_size") if built else None,
            "computed_from": a.facts.get("computed_from") if built else None,
            "datasets": [str(x) for x in datasets] if isinstance(datasets, list) else []}


NVFP4_GROUP = 16  # values sharing one FP8 scale


def _parallel_sizes(release: Release) -> dict[str, list[int]]:
    """Tensor-parallel sizes whose per-rank slices of every row-parallel input stay whole NVFP4 groups,
    and expert-parallel sizes that divide the kept expert count (vLLM's EPLB requires it)."""
    cfg = release.family.text_config(release.base_config)
    widths = [int(cfg[k]) for k in ("moe_intermediate_size", "intermediate_size") if isinstance(cfg.get(k), int)]
    tp = [n for n in (1, 2, 4, 8) if all(w % n == 0 and (w // n) % NVFP4_GROUP == 0 for w in widths)]
    kept = release.drop_map.kept_count
    ep = [n for n in range(2, 17) if kept % n == 0]
    return {"tp_sizes": tp, "ep_sizes": ep}


def _read(release: Release, rel: str) -> str:
    if not rel:
        return ""
    return release.path(rel).read_text(encoding="utf-8")


def normalise_provenance(release: Release, provenance: dict[str, Any]) -> dict[str, Any]:
    """The provenance block with every key present (the lead's manifest may carry more or fewer)."""
    d = release.definition
    return {
        "tool_version": provenance.get("tool_version") or "unknown",
        "pipelines_commit": provenance.get("pipelines_commit") or None,
        "pipelines_dirty": provenance.get("pipelines_dirty"),
        "base_repo": provenance.get("base_repo") or d.base.repo,
        "base_revision": provenance.get("base_revision") or d.base.revision,
        "drop_map_sha256": provenance.get("drop_map_sha256") or release.drop_map.sha256,
    }
