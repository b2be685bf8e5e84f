"""Check-time rules for GGUF recipes (`release check`), computed before any conversion.

`recipe_problems(release)` → InputError material: a tier needing an importance matrix without one, an
unknown type in a recipe, an override regex matching no tensor of the GGUF this base converts to (or only
tensors llama.cpp never quantizes, or only tensors an earlier override already took — first match wins,
G7), an imatrix file that is not one, a note that states types. `recipe_warnings(release)` → silent
fallbacks a recipe will hit (G4).

Notes (`[gguf.notes]`, a recipe's `note`) say what a tier is for. What a file stores is not theirs to say:
the GGUF card lists it tensor by tensor, read from the built file (row-width fallbacks and the ftype's
mixture included), and a hand-written "experts at Q4_K" beside it would contradict it as soon as
llama.cpp stores something else (G4). So a note naming a ggml type or a bit width is refused; a tier is
named as "the Q6_K tier".
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import Problem
from . import tiers as T
from .names import ExpectedTensor, UnreadableConfig, expected_tensors

if TYPE_CHECKING:
    from ..spec.load import Release

CALIBRATION_SUFFIXES = (".txt", ".text", ".md")

# A ggml type name standing alone (Q4_K, q8_0, IQ4_XS — not the tier names Q4_K_M, Q6_K_L), unless it names
# a tier ("the Q6_K tier"), and bit widths ("4–5 bits", "8-bit").
_TYPE_IN_NOTE = re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(sorted(T.GGML_TYPES, key=len, reverse=True))
                           + r")(?![A-Za-z0-9_])(?!\s+tier)", re.IGNORECASE)
_BITS_IN_NOTE = re.compile(r"\d+(?:\.\d+)?(?:\s*[–-]\s*\d+(?:\.\d+)?)?[\s-]*bits?\b", re.IGNORECASE)


def imatrix_is_calibration(path: str) -> bool:
    return path.lower().endswith(CALIBRATION_SUFFIXES)


def release_tensors(release: Release) -> list[ExpectedTensor] | None:
    """The GGUF's tensors, or None for an unknown family or a config they cannot be read from."""
    kept = release.drop_map.kept_count if release.drop_map.kept else None
    try:
        return expected_tensors(release.base_config, num_experts=kept)
    except UnreadableConfig:
        return None


def tier_recipe(release: Release, tier: str) -> T.TierRecipe:
    g = release.definition.gguf
    assert g is not None
    if tier in g.recipes:
        r = g.recipes[tier]
        return T.TierRecipe(tier, r.base, r.embed or None, r.output or None,
                            tuple((str(p), str(t).lower()) for p, t in r.overrides), r.note)
    std = T.standard_recipe(tier)
    if std is None:
        raise KeyError(tier)
    return std


def recipe_problems(release: Release) -> list[Problem]:
    d = release.definition
    g = d.gguf
    if g is None:
        return []
    file = release.display("release.toml")
    p: list[Problem] = []
    has_imatrix = bool(g.imatrix)
    tensors = release_tensors(release)
    try:
        expected_tensors(release.base_config)
    except UnreadableConfig as exc:
        p.append(Problem(release.display(d.base.config), exc.key, f"{exc.detail}: needed to plan the GGUF's tensors"))

    for i, tier in enumerate(g.tiers):
        if tier in g.recipes:
            continue
        std = T.standard_recipe(tier)
        if std is None:
            p.append(Problem(file, f"gguf.tiers[{i}]", f"unknown tier {tier!r}"))
        elif std.needs_imatrix and not has_imatrix:
            p.append(Problem(file, f"gguf.tiers[{i}]", f"{tier} needs an importance matrix (llama.cpp refuses "
                                                      "it without one): set [gguf] imatrix"))

    for name, r in g.recipes.items():
        field = f"gguf.recipes.{name}"
        if r.base not in T.FTYPES:
            p.append(Problem(file, f"{field}.base", f"unknown llama.cpp file type {r.base!r} "
                                                    f"(known: {', '.join(T.FTYPES)})"))
        for key in ("embed", "output"):
            t = getattr(r, key)
            if t and t.lower() not in T.GGML_TYPES:
                p.append(Problem(file, f"{field}.{key}", f"unknown ggml type {t!r} "
                                                         f"(known: {', '.join(T.GGML_TYPES)})"))
        needs = r.base in T.FTYPES_NEEDING_IMATRIX
        compiled: list[re.Pattern[str] | None] = []
        for j, (pattern, t) in enumerate(r.overrides):
            if str(t).lower() not in T.GGML_TYPES:
                p.append(Problem(file, f"{field}.overrides[{j}]", f"unknown ggml type {t!r} "
                                                                  f"(known: {', '.join(T.GGML_TYPES)})"))
            needs = needs or str(t).lower() in T.TYPES_NEEDING_IMATRIX
            try:
                compiled.append(re.compile(pattern))
            except re.error as exc:
                p.append(Problem(file, f"{field}.overrides[{j}]", f"invalid regex {pattern!r}: {exc}"))
                compiled.append(None)
        if needs and not has_imatrix:
            p.append(Problem(file, field, f"{name} needs an importance matrix (IQ1/IQ2/IQ3_XXS types): "
                                          "set [gguf] imatrix"))
        if tensors is not None:
            p += _regex_problems(file, field, r.overrides, compiled, tensors)

    notes = [(f"gguf.notes.{tier}", note) for tier, note in g.notes.items()]
    notes += [(f"gguf.recipes.{name}.note", r.note) for name, r in g.recipes.items()]
    p += [Problem(file, field, problem) for field, note in notes if (problem := note_problem(note))]

    if g.imatrix and not imatrix_is_calibration(g.imatrix):
        path = release.path(g.imatrix)
        if path.is_file():
            from .imatrix import load_imatrix  # lazy: numpy at start-up

            try:
                load_imatrix(path)
            except Exception as exc:  # InputError, or the reader's own errors on junk
                p.append(Problem(file, "gguf.imatrix", f"{g.imatrix}: not a usable imatrix GGUF: {exc}"))
    return p


def note_problem(note: str) -> str | None:
    """Why a tier's note may not say what it says (None: it may)."""
    claim = _TYPE_IN_NOTE.search(note) or _BITS_IN_NOTE.search(note)
    if claim is None:
        return None
    return (f"the note states types ({claim.group(0)!r}); what each file stores is read from the built file and "
            "listed on the GGUF card, so a note says only what the tier is for (name a tier as \"the Q6_K tier\")")


def _regex_problems(file: str, field: str, overrides: list, compiled: list[re.Pattern[str] | None],
                    tensors: list[ExpectedTensor]) -> list[Problem]:
    p: list[Problem] = []
    taken: set[str] = set()
    for j, rx in enumerate(compiled):
        if rx is None:
            continue
        pattern = overrides[j][0]
        # llama.cpp: std::regex_search on the full name, first matching override wins (G7).
        hits = [t for t in tensors if rx.search(t.name)]
        quant = [t for t in hits if t.quantizable]
        fresh = [t for t in quant if t.name not in taken]
        where = f"{field}.overrides[{j}]"
        if not hits:
            p.append(Problem(file, where, f"regex {pattern!r} matches no tensor of this model's GGUF "
                                          f"(e.g. {_examples(tensors)})"))
        elif not quant:
            p.append(Problem(file, where, f"regex {pattern!r} matches only tensors llama.cpp keeps unquantized "
                                          f"({', '.join(t.name for t in hits[:3])})"))
        elif not fresh:
            p.append(Problem(file, where, f"regex {pattern!r} is shadowed: every tensor it matches is taken by an "
                                          "earlier override (the first match wins)"))
        taken.update(t.name for t in quant)
    return p


def _examples(tensors: list[ExpectedTensor]) -> str:
    names = sorted({re.sub(r"^blk\.\d+\.", "blk.N.", t.name) for t in tensors if t.quantizable})
    return ", ".join(names[:8])


def requested_types(recipe: T.TierRecipe, tensors: list[ExpectedTensor]) -> dict[str, str]:
    """Tensor → type the recipe asks for explicitly (overrides, embed, output) — not the ftype mixture."""
    out: dict[str, str] = {}
    compiled = [(re.compile(pt), t.lower()) for pt, t in recipe.overrides]
    for t in tensors:
        if not t.quantizable:
            continue
        if t.name == "token_embd.weight" and recipe.embed_type:
            out[t.name] = recipe.embed_type.lower()
            continue
        if t.name == "output.weight" and recipe.output_type:
            out[t.name] = recipe.output_type.lower()
            continue
        for rx, typ in compiled:
            if rx.search(t.name):
                out[t.name] = typ
                break
    return out


def recipe_warnings(release: Release) -> list[str]:
    """Requested types llama.cpp will silently replace because of row widths (G4), per tier."""
    g = release.definition.gguf
    tensors = release_tensors(release) if g else None
    if g is None or tensors is None:
        return []
    file = release.display("release.toml")
    by_name = {t.name: t for t in tensors}
    out: list[str] = []
    for tier in g.tiers:
        try:
            recipe = tier_recipe(release, tier)
        except KeyError:
            continue
        swaps: dict[tuple[str, str], set[str]] = {}
        for name, typ in requested_types(recipe, tensors).items():
            actual = T.fallback_type(typ, by_name[name].ne0)
            if actual != typ:
                swaps.setdefault((typ, actual), set()).add(re.sub(r"^blk\.\d+\.", "", name))
        for (want, got), names in sorted(swaps.items()):
            out.append(f"{file}: gguf.recipes.{tier}: {want} on {', '.join(sorted(names))} falls back to {got} "
                       "(row width not a multiple of 256)")
    return out
