"""Rendering: Jinja templates in `cards/` (StrictUndefined) + Hub YAML metadata from huggingface_hub's
ModelCardData, checked with the same library before anything is written.

Every card is rendered to a string and checked (metadata, links) first; files are written only when
all cards pass, each under a temporary name and renamed when complete.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import jinja2
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..dropmap import summary
from ..errors import InputError, Problem
from ..fsutil import sha256_bytes, staging_dir
from ..gguf.metadata import converted_from
from ..manifest import Artifact, ArtifactRegistry, Destination, FileEntry
from ..quality.chart import CHART_FILE
from ..spec.load import PROJECT_ROOT, Release
from .context import Size, build_context, quality_chart, quality_points, slug
from .links import check_links
from .measured import measured_on

TEMPLATES_DIR = PROJECT_ROOT / "cards"
RELATIONS = ("adapter", "merge", "quantized", "finetune")


# ---- formatting filters: how numbers look is decided here once, wording stays in templates ----------

def _num(value: float | int | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}"


def _delta(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "—"
    text = f"{abs(value):.{digits}f}"
    if float(text) == 0:
        return text
    return ("+" if value > 0 else "−") + text  # U+2212: a real minus sign, as in print


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}%"


def _gb(size: Size | None, digits: int = 2) -> str:
    """Decimal units (1 GB = 10^9 bytes), marked ≈ when estimated."""
    if size is None or size.bytes is None:
        return "—"
    mark = "≈" if size.estimated else ""
    # Below 0.1 GB (demo and test models) "0.00 GB" says nothing; switch to decimal MB / kB.
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size.bytes >= scale / 10 or unit == "kB":
            return f"{mark}{size.bytes / scale:.{digits}f} {unit}"
    raise AssertionError("unreachable")


def _cell(text: Any) -> str:
    """Safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _kld(value: float | None) -> str:
    """A KL divergence in nats/token to four significant digits, never in exponent notation."""
    if value is None:
        return "—"
    if value <= 0:
        return "0"
    return f"{value:.{max(0, 3 - math.floor(math.log10(value)))}f}"


def _share(value: float | None, digits: int = 1) -> str:
    """A fraction 0–1 as a percentage."""
    return "—" if value is None else f"{100 * value:.{digits}f}%"


def _vram(gb: float | None) -> str:
    return "—" if gb is None else (f"{gb:.0f} GB" if float(gb).is_integer() else f"{gb:.1f} GB")


@functools.lru_cache(maxsize=8)
def environment(templates_dir: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """One environment per templates folder: compiled templates are cached and recompiled when a
    template file changes (auto_reload), so a long-lived process still sees edits."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Markdown, not HTML
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(num=_num, delta=_delta, pct=_pct, gb=_gb, cell=_cell, vram=_vram, slug=slug, kld=_kld,
                       share=_share)
    return env


# ---- Hub metadata ----------------------------------------------------------------------------------

def dataset_id(name: str) -> str:
    """A model-index dataset type from a benchmark name; "+" is kept as "plus" so HumanEval and
    HumanEval+ stay two datasets (the Hub groups results by dataset type)."""
    return slug(name.replace("+", " plus "))


# Benchmarks scored by a harness are text tasks, whatever the model's own pipeline tag is.
EVAL_TASK = "text-generation"
# Pipeline tags whose input is more than text: a GGUF repo of this tool holds the text model only (the
# converter is not asked for a vision projector), so its card says text-generation instead.
NON_TEXT_INPUT_TASKS = {"image-text-to-text", "image-to-text", "visual-question-answering", "video-text-to-text",
                        "audio-text-to-text", "any-to-any", "document-question-answering"}


def eval_results(release: Release) -> list[EvalResult]:
    """The benchmark rows as model-index results (hub-docs modelcard.md): task type, dataset type (the Hub
    dataset id when scores.json gives one) and name, metric type, name and value."""
    out = []
    for b in release.scores.benchmarks:
        ds = b.dataset
        out.append(EvalResult(
            task_type=EVAL_TASK, dataset_type=ds.id if ds else dataset_id(b.name), dataset_name=b.name,
            dataset_config=(ds.config or None) if ds else None, dataset_split=(ds.split or None) if ds else None,
            dataset_revision=(ds.revision or None) if ds else None,
            metric_type=slug(b.metric) if b.metric else "score", metric_name=b.metric or "score",
            metric_value=float(b.variant)))
    return out


def pipeline_tag(release: Release, kind: str) -> str:
    tag = release.definition.release.pipeline_tag
    return "text-generation" if kind == "gguf" and tag in NON_TEXT_INPUT_TASKS else tag


def card_data(release: Release, kind: str) -> ModelCardData | None:
    """Hub metadata of one card: relation to the base (model tree), who quantized it, tags, license, eval
    results (only on the card of the artifact they were measured on)."""
    if kind == "ollama":
        return None
    d = release.definition
    r = d.release
    tags = list(r.tags)
    extra_tags = {"bf16": ["safetensors"], "gguf": ["gguf", "quantized", "imatrix" if d.gguf and d.gguf.imatrix
                                                              else "", "llama.cpp"],
                  "nvfp4": ["nvfp4", "compressed-tensors", "quantized", "vllm"]}[kind]
    tags += [t for t in extra_tags if t and t not in tags]
    kwargs: dict[str, Any] = {}
    if kind == "bf16":
        # No "pruned" relation exists; a pruned checkpoint is a derived model of the base (docs/hf-hub.md).
        base, relation = d.base.repo, "finetune"
        kwargs["library_name"] = "transformers"
    else:
        base = converted_from(release)  # what general.base_model of every GGUF names too
        relation = "quantized"
        kwargs["quantized_by"] = r.quantized_by or r.owner  # free-form; GGUF and NVFP4 repos carry it
    if r.license_name:
        kwargs["license_name"] = r.license_name
    if r.license_link:
        kwargs["license_link"] = r.license_link
    # The Hub shows model-index results as this repo's own: only the card of the artifact they were
    # measured on carries them (release/cards/measured.py); the others link there from their text.
    if measured_on(release).kind == kind:
        kwargs.update(eval_results=eval_results(release), model_name=getattr(d, kind).repo)  # name: the model id
    return ModelCardData(license=r.license, base_model=base, base_model_relation=relation,
                         pipeline_tag=pipeline_tag(release, kind), tags=tags, **kwargs)


def check_metadata(card_name: str, text: str, expected: ModelCardData) -> list[Problem]:
    """Parse the rendered card back with huggingface_hub (strict) and compare with what we meant."""
    try:
        card = ModelCard(text, ignore_metadata_errors=False)
    except Exception as exc:  # huggingface_hub raises ValueError/yaml errors of several types
        return [Problem(card_name, "metadata", f"huggingface_hub cannot parse the card metadata: {exc}")]
    data = card.data
    got = data.to_dict()
    want = expected.to_dict()
    problems = []
    for key in ("license", "base_model", "base_model_relation", "pipeline_tag", "tags", "quantized_by"):
        if got.get(key) != want.get(key):
            problems.append(Problem(card_name, f"metadata.{key}", f"{got.get(key)!r} != {want.get(key)!r}"))
    if got.get("license") == "other" and not (got.get("license_name") and got.get("license_link")):
        # The Hub shows "other" as an unnamed license unless both are given.
        problems.append(Problem(card_name, "metadata.license",
                                "license 'other' needs release.license_name and release.license_link"))
    if got.get("base_model_relation") not in RELATIONS:
        problems.append(Problem(card_name, "metadata.base_model_relation",
                                f"must be one of {', '.join(RELATIONS)}"))
    results = data.eval_results or []
    if len(results) != len(expected.eval_results or []):
        problems.append(Problem(card_name, "metadata.model-index",
                                f"{len(results)} eval results parsed, {len(expected.eval_results or [])} expected"))
    got_set = {(r.dataset_type, r.dataset_name, r.metric_value) for r in results}
    for want_r in expected.eval_results or []:
        if (want_r.dataset_type, want_r.dataset_name, want_r.metric_value) not in got_set:
            problems.append(Problem(card_name, f"metadata.model-index.{want_r.dataset_name}",
                                    "eval result does not round-trip through huggingface_hub's model-index parser"))
    return problems


# ---- rendering -------------------------------------------------------------------------------------

def card_kinds(release: Release) -> list[str]:
    return list(release.definition.sections())


def render_card_texts(release: Release, artifacts: ArtifactRegistry, *, provenance: dict[str, Any],
                      templates_dir: Path = TEMPLATES_DIR) -> dict[str, str]:
    """{kind: Markdown} for every card of the release, checked (metadata and links); nothing written."""
    ctx = build_context(release, artifacts, provenance)
    env = environment(templates_dir)
    texts: dict[str, str] = {}
    problems: list[Problem] = []
    for kind in card_kinds(release):
        data = card_data(release, kind)
        template_name = f"{kind}.md.j2"
        try:
            template = env.get_template(template_name)
            text = template.render(**ctx, kind=kind, card_data=data.to_yaml() if data else "")
        except jinja2.TemplateError as exc:
            where = f"cards/{getattr(exc, 'name', None) or template_name}"
            line = getattr(exc, "lineno", None)
            raise InputError(f"template error: {exc.message or exc}", file=where,
                             field=f"line {line}" if line else "") from exc
        text = text.rstrip("\n") + "\n"
        if data is not None:
            problems += check_metadata(f"card:{kind}", text, data)
        texts[kind] = text
    if problems:
        raise InputError(problems)
    check_links(release, artifacts, {f"card:{k}": t for k, t in texts.items()})
    return texts


def card_files(release: Release, artifacts: ArtifactRegistry) -> dict[str, dict[str, bytes]]:
    """Files a card's repo ships beside its README: the GGUF repo's quality chart, once a tier is measured
    (the card embeds it from then on), and the BF16 repo's chart of the expert selection, when measured
    scores record it."""
    files: dict[str, dict[str, bytes]] = {}
    if release.definition.gguf is not None and release.quality is not None and quality_points(release, artifacts):
        files["gguf"] = {CHART_FILE: quality_chart(release, artifacts).encode("utf-8")}
    selection = summary.selection_of(release, artifacts) if release.definition.bf16 is not None else None
    if selection is not None:
        title = f"{release.definition.prune.label}: what the kept experts carry"
        files["bf16"] = {summary.CHART_FILE: summary.chart_svg(selection, title).encode("utf-8")}
    return files


def render_cards(release: Release, artifacts: ArtifactRegistry, out_dir: Path, *, provenance: dict[str, Any],
                 templates_dir: Path = TEMPLATES_DIR) -> list[Artifact]:
    """Render, check and write every card to `out_dir/<kind>/README.md` (out_dir = dist/<name>/cards,
    replaced as a whole when every card is written).

    Returns the built `card:<kind>` artifacts (also added to `artifacts`). Raises InputError (template,
    metadata) or CardLinkError before writing anything.
    """
    texts = render_card_texts(release, artifacts, provenance=provenance, templates_dir=templates_dir)
    extra = card_files(release, artifacts)
    d = release.definition
    built: list[Artifact] = []
    # All cards or none: they cross-link, so a half-updated set would disagree with itself.
    with staging_dir(out_dir) as tmp:
        for kind, text in texts.items():
            (tmp / kind).mkdir()
            (tmp / kind / "README.md").write_text(text, encoding="utf-8")
            for name, content in extra.get(kind, {}).items():
                (tmp / kind / name).write_bytes(content)
    for kind, text in texts.items():
        data = text.encode("utf-8")
        files = [FileEntry("README.md", len(data), sha256_bytes(data))]
        files += [FileEntry(name, len(content), sha256_bytes(content)) for name, content in extra.get(kind, {}).items()]
        planned = artifacts.get(f"card:{kind}")
        if planned is not None and planned.destination is not None:
            dest: Destination | None = planned.destination
        elif kind != "ollama":
            dest = Destination(kind="hub", repo=getattr(d, kind).repo, path_in_repo="")
        else:
            dest = None
        a = Artifact(id=f"card:{kind}", kind="card", status="built", root=f"cards/{kind}", files=files,
                     recipe={"template": f"{kind}.md.j2"}, destination=dest,
                     facts={"push": kind != "ollama",
                            **({"note": "paste on ollama.com (no push API)"} if kind == "ollama" else {})})
        artifacts.add(a)
        built.append(a)
    return built
