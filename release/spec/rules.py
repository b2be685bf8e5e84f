"""Rules of a release definition beyond its types: names the Hub and Ollama accept, tiers llama.cpp
knows, a license that says one thing, per-quant scores of tiers the release has."""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import urlparse

from ..errors import Problem
from ..gguf import tiers as gguf_tiers
from ..gittag import tagger_problem
from ..suggest import did_you_mean
from .definition import ReleaseDefinition
from .licenses import license_problems
from .names import (
    hub_repo_problem,
    ollama_model_problem,
    ollama_tag_problem,
    quantized_by_problem,
    release_name_problem,
    revision_problem,
)
from .scores import Scores

# Modelfile PARAMETER keys ollama accepts (api.Options) and their value kinds.
OLLAMA_PARAMETERS: dict[str, type | tuple[type, ...]] = {
    "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "num_thread": int,
    "num_keep": int, "num_predict": int, "top_k": int, "repeat_last_n": int, "seed": int,
    "top_p": (int, float), "min_p": (int, float), "typical_p": (int, float), "temperature": (int, float),
    "repeat_penalty": (int, float), "presence_penalty": (int, float), "frequency_penalty": (int, float),
    "use_mmap": bool, "numa": bool, "stop": list,
}


def per_quant_problems(scores: Scores, definition: ReleaseDefinition, file: str) -> list[Problem]:
    """Per-quant scores of tiers this release does not have."""
    if scores.per_quant is None or definition.gguf is None:
        return []
    g = definition.gguf
    known = set(g.tiers) | {g.baseline} | set(g.removed) | {"NVFP4A16", "BF16"}
    return [Problem(file, f"per_quant.scores.{tier}", f"unknown tier {tier!r} (not in [gguf] tiers, removed or "
                                                      "baseline)")
            for tier in scores.per_quant.scores if tier not in known]




def definition_problems(d: ReleaseDefinition, pipeline_dir: Path, file: str,
                        warnings: list[str]) -> list[Problem]:
    """Rules beyond types: names the Hub/Ollama accept, tiers llama.cpp knows, a license that says one
    thing. (Files the definition names: `definition_paths`.)"""
    p: list[Problem] = []

    def add(field: str, message: str | None) -> None:
        if message:
            p.append(Problem(file, field, message))

    add("release.name", release_name_problem(d.release.name))
    for section in ("gguf", "nvfp4"):
        if getattr(d, section) is not None and d.bf16 is None:
            add(section, "is made from the pruned BF16 checkpoint, which a release publishes: add a [bf16] section "
                         "with its repo")
    add("release.git_tagger", tagger_problem(d.release.git_tagger))
    if "quantized_by" in d.release.model_fields_set:
        add("release.quantized_by", quantized_by_problem(d.release.quantized_by))
    add("base.revision", revision_problem(d.base.revision))
    add("base.repo", hub_repo_problem(d.base.repo))
    p += license_problems(d.release.license, d.release.license_link, file)
    for i, sib in enumerate(d.release.siblings):
        if sib in (".", "..") or "/" in sib or "\\" in sib:
            add(f"release.siblings[{i}]", f"{sib!r}: name a release folder beside this one (no '/' or '..')")
    if d.base.generator and not d.base.path:
        add("base.path", "a generated base needs a path to generate into")

    repos: dict[str, str] = {}
    for section_name, section in d.sections().items():
        repo = getattr(section, "repo", None)
        if repo is None:
            continue
        field = f"{section_name}.repo"
        add(field, hub_repo_problem(repo))
        if repo in repos:
            add(field, f"{repo!r} is also the target of [{repos[repo]}]")
        repos[repo] = section_name
        if "/" in repo and repo.split("/")[0] != d.release.owner:
            warnings.append(f"{file}: {field}: {repo!r} is outside the release owner {d.release.owner!r}")

    if d.gguf is not None:
        p += _gguf_problems(d, file)
    if d.ollama is not None:
        p += _ollama_problems(d, file)
    if d.quality is not None and d.quality.max_tokens < d.quality.context:
        add("quality.max_tokens", f"{d.quality.max_tokens} is less than one window (quality.context = "
                                  f"{d.quality.context}): nothing would be measured")
    qs = d.cards.quick_start
    if qs.gguf_tier and (d.gguf is None or qs.gguf_tier not in d.gguf.tiers):
        add("cards.quick_start.gguf_tier", f"{qs.gguf_tier!r} is not a tier of [gguf]")
    for i, tag in enumerate(qs.ollama_tags):
        if d.ollama is None or tag not in d.ollama.tags:
            add(f"cards.quick_start.ollama_tags[{i}]", f"{tag!r} is not a tag of [ollama]")
    return p


def imatrix_need(ftype: str, types: list[str], *, edge_types: tuple[str, ...] = ()) -> str | None:
    """Why a tier of `ftype` with override `types` (and embedding/output `edge_types`) needs an
    importance matrix, or None.

    llama.cpp's quantizer refuses IQ1_*, IQ2_*, IQ3_XXS and Q2_K_S tensors without one (it exempts the
    embedding and output). The other i-quants (IQ3_S, IQ3_M, IQ4_NL, IQ4_XS) quantize without one, but
    their grids are searched with importance weights; a release here never ships an IQ tier made
    without them, as the README promises.
    """
    if ftype in gguf_tiers.FTYPES_NEEDING_IMATRIX or any(t in gguf_tiers.TYPES_NEEDING_IMATRIX for t in types):
        return "llama.cpp refuses it without one"
    iq = [t for t in (gguf_tiers.FTYPE_MAIN_TYPE.get(ftype, ""), *types, *edge_types) if t.startswith("iq")]
    if iq:
        return f"{iq[0].upper()} is an i-quant, made with importance weights"
    return None


def _gguf_problems(d: ReleaseDefinition, file: str) -> list[Problem]:
    g = d.gguf
    assert g is not None
    p: list[Problem] = []

    def add(field: str, message: str) -> None:
        p.append(Problem(file, field, message))

    if re.search(r"[^A-Za-z0-9._-]", g.prefix):
        add("gguf.prefix", f"{g.prefix!r}: use letters, digits, '.', '_' or '-' in file names")
    seen: set[str] = set()
    has_imatrix = bool(g.imatrix)
    for i, tier in enumerate(g.tiers):
        field = f"gguf.tiers[{i}]"
        if tier in seen:
            add(field, f"duplicate tier {tier!r}")
        seen.add(tier)
        recipe = gguf_tiers.standard_recipe(tier)
        if recipe is None and tier not in g.recipes:
            add(field, f"{tier!r} is neither a llama.cpp type ({', '.join(gguf_tiers.STANDARD_TIERS)}), "
                       "an _L/_XL variant, nor a recipe in [gguf.recipes]"
                       + did_you_mean(tier, [*gguf_tiers.STANDARD_TIERS, *g.recipes]))
            continue
        if recipe is not None and tier in g.recipes:
            add(f"gguf.recipes.{tier}", f"{tier!r} is a standard tier name; give the recipe its own name")
        why = imatrix_need(recipe.ftype, [t for _, t in recipe.overrides]) if recipe is not None else None
        if why and not has_imatrix:
            add(field, f"{tier} needs an importance matrix ({why}): set [gguf] imatrix")
    for name, recipe in g.recipes.items():
        field = f"gguf.recipes.{name}"
        std = gguf_tiers.confusable_with(name)
        if std:
            add(field, f"file {gguf_tiers.gguf_filename(g.prefix, name)} would be picked by llama.cpp "
                       f"`-hf repo:{std}` and Ollama `hf.co/repo:{std}`; choose a name without "
                       f"'{std}' followed by '-' or '.' (e.g. CD-{std.split('_')[0]})")
        if name not in g.tiers:
            add(field, f"recipe {name!r} is not listed in gguf.tiers")
        if recipe.base not in gguf_tiers.FTYPES:
            add(f"{field}.base", f"unknown llama.cpp file type {recipe.base!r}")
        for key in ("embed", "output"):
            t = getattr(recipe, key)
            if t and t not in gguf_tiers.GGML_TYPES:
                add(f"{field}.{key}", f"unknown ggml type {t!r} (known: {', '.join(gguf_tiers.GGML_TYPES)})")
        for j, (pattern, t) in enumerate(recipe.overrides):
            try:
                re.compile(pattern)
            except re.error as exc:
                add(f"{field}.overrides[{j}]", f"invalid regex {pattern!r}: {exc}")
            if t not in gguf_tiers.GGML_TYPES:
                add(f"{field}.overrides[{j}]", f"unknown ggml type {t!r}")
        why = imatrix_need(recipe.base, [str(t).lower() for _, t in recipe.overrides],
                           edge_types=tuple(t.lower() for t in (recipe.embed, recipe.output) if t))
        if why and not has_imatrix:
            add(field, f"{name} needs an importance matrix ({why}): set [gguf] imatrix")
    for i, tier in enumerate(g.recommended):
        if tier not in g.tiers:
            add(f"gguf.recommended[{i}]", f"{tier!r} is not in gguf.tiers{did_you_mean(tier, g.tiers)}")
    for tier in g.notes:
        if tier not in g.tiers and tier != g.baseline:
            add(f"gguf.notes.{tier}", f"{tier!r} is not in gguf.tiers{did_you_mean(tier, g.tiers)}")
    return p


def _ollama_problems(d: ReleaseDefinition, file: str) -> list[Problem]:
    o = d.ollama
    assert o is not None
    p: list[Problem] = []

    def add(field: str, message: str | None) -> None:
        if message:
            p.append(Problem(file, field, message))

    url = urlparse(o.registry)
    loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
    if url.scheme not in ("http", "https") or not url.hostname:
        add("ollama.registry", f"{o.registry!r} is not an http(s) URL")
    elif url.scheme == "http" and not (loopback or o.insecure):
        add("ollama.registry", "plain http is allowed only for loopback or with insecure = true")
    oci = url.hostname not in ("registry.ollama.ai", "ollama.com")
    add("ollama.model", ollama_model_problem(o.model, oci_registry=oci))
    tiers = set(d.gguf.tiers) | {d.gguf.baseline} if d.gguf else set()
    for tag, tier in o.tags.items():
        add(f"ollama.tags.{tag}", ollama_tag_problem(tag))
        if oci and tag == "latest":
            add("ollama.tags.latest", "'latest' is pushed as an alias of ollama.latest; don't list it")
        if tier not in tiers:
            add(f"ollama.tags.{tag}", f"points to {tier!r}, which is not a tier of [gguf]{did_you_mean(tier, tiers)}")
    if o.latest not in o.tags:
        add("ollama.latest", f"{o.latest!r} is not one of ollama.tags")
    for key, value in o.parameters.items():
        kind = OLLAMA_PARAMETERS.get(key)
        if kind is None:
            add(f"ollama.parameters.{key}", f"unknown Modelfile parameter (known: {', '.join(OLLAMA_PARAMETERS)})")
        elif isinstance(value, bool) and kind is not bool:
            add(f"ollama.parameters.{key}", f"must be a number, got {value!r}")
        elif not isinstance(value, kind):
            add(f"ollama.parameters.{key}", f"wrong type {type(value).__name__} for {key}")
        elif isinstance(value, float) and not math.isfinite(value):
            add(f"ollama.parameters.{key}", f"must be a finite number, got {value!r}")
        elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            add(f"ollama.parameters.{key}", "out of range of a 64-bit integer (ollama's Go int)")
    for tag in o.vram_gb:
        if tag not in o.tags:
            add(f"ollama.vram_gb.{tag}", f"{tag!r} is not one of ollama.tags")
    return p
