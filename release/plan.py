"""The planned artifacts of a release, derived from its definition alone (nothing built yet).

Builders later replace each planned artifact with the built one (same id) carrying real files,
sizes and hashes. Ids: `bf16`, `gguf:<TIER>` (baseline and every tier), `gguf:imatrix`,
`gguf:ollama-files`, `nvfp4`, `quality:<reference|TIER|nvfp4>`, `ollama:<tag>`,
`card:<bf16|gguf|nvfp4|ollama>`.
"""

from __future__ import annotations

from pathlib import Path

from .dropmap.summary import CHART_FILE as SELECTION_CHART
from .dropmap.summary import has_selection
from .errors import Problem
from .estimate import bf16_size, census, gguf_size, tier_size
from .gguf import GGUF_WORK
from .gguf.tiers import gguf_filename, standard_recipe
from .manifest import Artifact, ArtifactRegistry, Destination, FileEntry
from .quality import QUALITY_WORK
from .quality.chart import CHART_FILE
from .quality.facts import recorded_withheld_in_use as withheld_in_records
from .spec.expert_scores import scores_path_for
from .spec.load import Release
from .steps import derives_drop_map, wire


def gguf_recipe(release: Release, tier: str) -> dict:
    g = release.definition.gguf
    assert g is not None
    if tier in g.recipes:
        r = g.recipes[tier]
        return {"ftype": r.base, "embed_type": r.embed or None, "output_type": r.output or None,
                "overrides": [list(o) for o in r.overrides], "note": r.note}
    std = standard_recipe(tier)
    assert std is not None, tier  # validated at load
    return {"ftype": std.ftype, "embed_type": std.embed_type, "output_type": std.output_type,
            "overrides": [], "note": std.note}


def plan_artifacts(release: Release, *, estimates: bool = True) -> ArtifactRegistry:
    """Every artifact the definition asks for; `estimates=False` skips size estimates (fast path)."""
    d = release.definition
    reg = ArtifactRegistry()
    c = census(release)

    def hub(repo: str, path: str = "") -> Destination:
        return Destination(kind="hub", repo=repo, path_in_repo=path)

    if derives_drop_map(release):
        # Published beside the weights it chose (with the scores it was derived from) when there is a
        # BF16 repo; otherwise made, staged between machines, and kept locally.
        name = Path(d.prune.drop_map).name
        reg.add(Artifact(id="dropmap", kind="dropmap", root="dropmap",
                         destination=hub(d.bf16.repo, "pruning") if d.bf16 else None,
                         files=[FileEntry(name), FileEntry(scores_path_for(name))],
                         recipe={"recipe": d.dropmap.recipe if d.dropmap else "",
                                 "experts_kept": d.prune.experts_kept}))
    if d.bf16:
        reg.add(Artifact(id="bf16", kind="bf16", root="bf16", destination=hub(d.bf16.repo),
                         recipe={"drop_map_sha256": release.drop_map.sha256,
                                 "experts_kept": release.drop_map.kept_count},
                         facts={"size": bf16_size(c), "estimated": True, "parameters": c.pruned_total}))
    if d.gguf:
        g = d.gguf
        # The baseline conversion is an artifact even when it is not published: every tier and the
        # imatrix are made from it (an unpublished one stays in the work folder and travels only as
        # a staged input between machines).
        reg.add(Artifact(
            id=f"gguf:{g.baseline}", kind="gguf", root="gguf" if g.publish_baseline else GGUF_WORK,
            destination=hub(g.repo) if g.publish_baseline else None,
            files=[FileEntry(gguf_filename(g.prefix, g.baseline))],
            recipe={"ftype": g.baseline, "baseline": True, "note": "unquantized conversion"},
            facts={"size": gguf_size(c, g.baseline), "estimated": True}))
        for tier in g.tiers:
            recipe = gguf_recipe(release, tier)
            reg.add(Artifact(
                id=f"gguf:{tier}", kind="gguf", root="gguf", destination=hub(g.repo),
                files=[FileEntry(gguf_filename(g.prefix, tier))], recipe=recipe,
                facts={"size": tier_size(c, tier, recipe), "estimated": True,
                       "recommended": tier in g.recommended, "note": g.notes.get(tier, recipe["note"])}))
        if g.imatrix:
            reg.add(Artifact(id="gguf:imatrix", kind="gguf", root="gguf", destination=hub(g.repo),
                             files=[FileEntry(f"{g.prefix}-imatrix.gguf")],
                             recipe={"source": g.imatrix, "chunks": g.imatrix_chunks}))
        if d.ollama:
            reg.add(Artifact(id="gguf:ollama-files", kind="gguf", root="gguf", destination=hub(g.repo),
                             files=[FileEntry("template"), FileEntry("params")],
                             recipe={"for": "ollama run hf.co/<repo>:<tier>"}))
    if d.nvfp4:
        reg.add(Artifact(id="nvfp4", kind="nvfp4", root="nvfp4", destination=hub(d.nvfp4.repo),
                         recipe={"format": d.nvfp4.format, "ignore": list(d.nvfp4.ignore),
                                 "quantize_attention": d.nvfp4.quantize_attention,
                                 "quantize_dense_mlp": d.nvfp4.quantize_dense_mlp},
                         facts={"size": _nvfp4_estimate(release) if estimates else None, "estimated": True}))
    if release.quality is not None:
        _plan_quality(release, reg)
    if d.ollama:
        o = d.ollama
        for tag, tier in o.tags.items():
            aliases = ["latest"] if tag == o.latest else []
            size = reg.get(f"gguf:{tier}").facts.get("size") if f"gguf:{tier}" in reg else None
            reg.add(Artifact(
                id=f"ollama:{tag}", kind="ollama", root="ollama",
                destination=Destination(kind="ollama", registry=o.registry, name=o.model, tag=tag),
                recipe={"gguf": f"gguf:{tier}", "aliases": aliases},
                facts={"size": size, "estimated": True}))
    for kind in ("bf16", "gguf", "nvfp4"):
        section = getattr(d, kind)
        if section:
            files = [FileEntry("README.md")]
            if kind == "gguf" and release.quality is not None:
                files.append(FileEntry(CHART_FILE))
            if kind == "bf16" and has_selection(release):
                files.append(FileEntry(SELECTION_CHART))
            reg.add(Artifact(id=f"card:{kind}", kind="card", root=f"cards/{kind}",
                             files=files, destination=hub(section.repo, ""),
                             recipe={"template": f"{kind}.md.j2"}))
    if d.ollama:
        reg.add(Artifact(id="card:ollama", kind="card", root="cards/ollama", files=[FileEntry("README.md")],
                         recipe={"template": "ollama.md.j2", "note": "pasted on ollama.com (no push API)"}))
    wire(release, reg)
    return reg


def _plan_quality(release: Release, reg: ArtifactRegistry) -> None:
    """The reference of the GGUF tiers, one measurement per tier and one of NVFP4. None is published:
    their figures become `facts.quality` of what they measure (release/quality/facts.py)."""
    from .quality.estimate import reference_bytes

    d = release.definition
    if d.gguf and d.gguf.tiers:
        reg.add(Artifact(id="quality:reference", kind="quality", root=QUALITY_WORK,
                         files=[FileEntry("quality-reference.npy"), FileEntry("quality-reference.json")],
                         recipe={"of": f"gguf:{d.gguf.baseline}"},
                         facts={"size": reference_bytes(release), "estimated": True}))
        for tier in d.gguf.tiers:
            reg.add(Artifact(id=f"quality:{tier}", kind="quality", root=QUALITY_WORK,
                             files=[FileEntry(f"quality-{tier}.json")], recipe={"measures": f"gguf:{tier}"},
                             facts={"size": 1000, "estimated": True}))
    if d.nvfp4 and d.bf16:
        reg.add(Artifact(id="quality:nvfp4", kind="quality", root=QUALITY_WORK,
                         files=[FileEntry("quality-nvfp4.json")], recipe={"measures": "nvfp4"},
                         facts={"size": 1000, "estimated": True}))


def _nvfp4_estimate(release: Release) -> int | None:
    d = release.definition.nvfp4
    assert d is not None
    try:
        from .nvfp4 import estimate_size_from_config  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        return int(estimate_size_from_config(
            release.base_config, num_experts_kept=release.drop_map.kept_count,
            quantize_attention=d.quantize_attention, quantize_dense_mlp=d.quantize_dense_mlp, ignore=d.ignore))
    except (KeyError, TypeError, ValueError):
        return None


def recorded_withheld_in_use(release: Release, dist_release: Path) -> list[Problem]:
    """Which withheld tiers a release's recorded build (`dist_release/state.json`) uses, over a plan
    without estimates (quality/facts.py reads the records)."""
    return withheld_in_records(release, dist_release, plan_artifacts(release, estimates=False))
