"""Loading a release: resolve NAME, parse every input file, and validate them together.

`load_release` returns a `Release` only when every input is valid; otherwise it raises one
InputError carrying every problem of every file (file + field + message).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from pydantic import ValidationError

from ..errors import InputError, Problem
from ..families import Family, for_config
from ..gguf import tiers as gguf_tiers
from ..gittag import tagger_problem
from ..nvfp4.census import unsupported as nvfp4_unsupported
from ..suggest import did_you_mean
from .bounds import config_problems
from .definition import QualitySection, ReleaseDefinition
from .dropmap import DropMap, check_against_config, parse_drop_map
from .dropmap_scores import derived_map_problems
from .licenses import license_problems
from .names import (
    hub_repo_problem,
    ollama_model_problem,
    ollama_tag_problem,
    quantized_by_problem,
    release_name_problem,
    revision_problem,
)
from .paths import PathRefused, resolve_inside
from .placeholders import placeholder_warnings
from .readers import read_input_bytes, read_json_object, read_toml
from .scores import Scores, load_scores
from .validation import pydantic_problems

T = TypeVar("T")
DEFINITION_FILE = "release.toml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Modelfile PARAMETER keys ollama accepts (api.Options) and their value kinds.
OLLAMA_PARAMETERS: dict[str, type | tuple[type, ...]] = {
    "num_ctx": int, "num_batch": int, "num_gpu": int, "main_gpu": int, "num_thread": int,
    "num_keep": int, "num_predict": int, "top_k": int, "repeat_last_n": int, "seed": int,
    "top_p": (int, float), "min_p": (int, float), "typical_p": (int, float), "temperature": (int, float),
    "repeat_penalty": (int, float), "presence_penalty": (int, float), "frequency_penalty": (int, float),
    "use_mmap": bool, "numa": bool, "stop": list,
}


def resolve_pipeline_dir(name: str, *, cwd: Path | None = None) -> Path:
    """NAME is a path to a release folder, or the name of a folder under pipelines/ (of the current
    directory, else of this project).

    A NAME written as a path (with a '/', or starting with '.' or '~') is only ever that path. A bare
    NAME that is both a file or folder here and a release under pipelines/ is refused as ambiguous
    rather than silently resolved to one of them: `./demo` or `pipelines/demo` says which.
    """
    cwd = cwd or Path.cwd()
    if not name or "\0" in name:
        raise InputError("a release name or path is needed", file=name or "NAME")
    if "/" in name or name.startswith((".", "~")):
        folder = Path(name).expanduser()
        if not folder.is_absolute():
            folder = cwd / folder
        if (folder / DEFINITION_FILE).is_file():
            return folder.resolve()
        what = "no such folder" if not os.path.lexists(folder) else \
            f"not a release folder (no {DEFINITION_FILE} in it)"
        raise InputError(what, file=name)
    registered = next((c.resolve() for c in (cwd / "pipelines" / name, PROJECT_ROOT / "pipelines" / name)
                       if (c / DEFINITION_FILE).is_file()), None)
    here = cwd / name
    if os.path.lexists(here):
        try:
            same = registered is not None and here.resolve() == registered
        except (OSError, RuntimeError):  # a symlink loop here is still something here
            same = False
        if registered is not None and not same:
            raise InputError(f"ambiguous: ./{name} exists here and pipelines/{name} is a release; write "
                             f"./{name} for the folder here or {registered} for the release", file=name)
        if registered is None:
            if (here / DEFINITION_FILE).is_file():
                return here.resolve()
            raise InputError(f"./{name} is not a release folder (no {DEFINITION_FILE} in it), and there is no "
                             f"release {name!r} under pipelines/", file=name)
    if registered is not None:
        return registered
    raise InputError(f"no release {name!r}: expected a folder with {DEFINITION_FILE} under pipelines/ "
                     f"or a path to one", file=name)


@dataclass
class Release:
    """A fully validated release definition with its inputs."""

    dir: Path
    definition: ReleaseDefinition
    drop_map: DropMap
    scores: Scores
    base_config: dict[str, Any]
    family: Family
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.definition.release.name

    def path(self, rel: str) -> Path:
        """A file the definition names, resolved inside the release folder (never outside it)."""
        try:
            return resolve_inside(self.dir, rel)
        except PathRefused as exc:
            raise InputError(str(exc), file=self.display(DEFINITION_FILE)) from exc

    def display(self, rel: str) -> str:
        """How a file of this release is named in messages: `<folder>/<rel>`."""
        return f"{self.dir.name}/{rel}"

    @property
    def base_path(self) -> Path | None:
        base = self.definition.base
        if not base.path:
            return None
        try:
            return resolve_inside(self.dir, base.path, allow_outside=base.path_outside)
        except PathRefused as exc:
            raise InputError(str(exc), file=self.display(DEFINITION_FILE), field="base.path") from exc

    @property
    def quality(self) -> QualitySection | None:
        """How quantized artifacts are measured: the [quality] section, or its defaults when the release
        folder holds the default held-out text; None when the release measures nothing."""
        q = self.definition.quality
        if q is not None:
            return q
        default = QualitySection()
        try:
            return default if self.path(default.text).is_file() else None
        except InputError:  # a default text that leads out of the folder is no held-out text
            return None

    @cached_property
    def siblings(self) -> list[Release]:
        return [load_release(str(resolve_sibling(self.dir, s))) for s in self.definition.release.siblings]

    def input_files(self) -> dict[str, Path]:
        """Every input file whose content the release depends on (for hashes in the manifest)."""
        d = self.definition
        files = {
            DEFINITION_FILE: self.dir / DEFINITION_FILE,
            d.base.config: self.path(d.base.config),
            d.prune.drop_map: self.path(d.prune.drop_map),
            d.cards.scores: self.path(d.cards.scores),
        }
        if d.dropmap is not None:
            if not d.dropmap.derive:  # the scores a given map was derived from, when they are beside it
                from .expert_scores import scores_path_for

                rel = str(Path(d.prune.drop_map).with_name(scores_path_for(Path(d.prune.drop_map).name)))
                files[rel] = self.path(rel)
            calibration = self.path(d.dropmap.calibration)
            if calibration.is_dir():
                for f in sorted(calibration.iterdir()):
                    if f.is_file():
                        files[f"{d.dropmap.calibration}/{f.name}"] = f
        if d.gguf and d.gguf.imatrix:
            files[d.gguf.imatrix] = self.path(d.gguf.imatrix)
        if self.quality is not None:
            files[self.quality.text] = self.path(self.quality.text)
        if d.ollama:
            for rel in (d.ollama.template, d.ollama.system, d.ollama.license):
                if rel:
                    files[rel] = self.path(rel)
        return files


def resolve_sibling(pipeline_dir: Path, sibling: str) -> Path:
    """Siblings are release folders beside this one, named by their folder name."""
    if sibling in (".", "..") or "/" in sibling or "\\" in sibling or "\0" in sibling:
        raise FileNotFoundError(sibling)
    c = pipeline_dir.parent / sibling
    if (c / DEFINITION_FILE).is_file():
        return c.resolve()
    raise FileNotFoundError(sibling)


def load_definition(pipeline_dir: Path) -> ReleaseDefinition:
    display = f"{pipeline_dir.name}/{DEFINITION_FILE}"
    data = read_toml(pipeline_dir / DEFINITION_FILE, display)
    try:
        return ReleaseDefinition.model_validate(data)
    except ValidationError as exc:
        raise InputError(pydantic_problems(exc, display)) from exc


def load_release(name: str, *, tool_checks: bool = True) -> Release:
    """Resolve, parse and validate a release; raise InputError with every problem found.

    `tool_checks=False` skips the builders' advisory warnings (fast path for `plan --matrix`).
    """
    pipeline_dir = resolve_pipeline_dir(name)
    definition = load_definition(pipeline_dir)
    problems: list[Problem] = []
    warnings: list[str] = []
    rel_file = f"{pipeline_dir.name}/{DEFINITION_FILE}"

    def disp(rel: str) -> str:
        return f"{pipeline_dir.name}/{rel}"

    files, path_problems = definition_paths(definition, pipeline_dir, rel_file, warnings)
    problems += path_problems
    problems += definition_problems(definition, pipeline_dir, rel_file, warnings)

    def read(key: str, reader: Callable[[Path, str], T]) -> T | None:
        """`reader(path, display)` of the file field `key` names, or None (its problems recorded)."""
        path = files.get(key)
        if path is None:
            return None
        try:
            return reader(path, disp(_field_value(definition, key)))
        except InputError as exc:
            problems.extend(exc.problems)
            return None

    # Base config: the recorded copy, and the local checkpoint's when present.
    base = definition.base
    config = read("base.config", read_json_object)
    family: Family | None = None
    if config is not None:
        try:
            family = for_config(config, file=disp(base.config))
        except InputError as exc:
            problems += exc.problems
        else:
            bad = config_problems(config, family, disp(base.config))
            if bad:
                problems += bad
                family = None  # its counts are unusable: nothing below may build lists from them
            elif definition.nvfp4 is not None and (why := nvfp4_unsupported(family)):
                problems.append(Problem(rel_file, "nvfp4", why))
    base_dir = files.get("base.path")
    if base_dir is not None and (base_dir / "config.json").exists() and config is not None:
        local_shown = f"{base_dir}/config.json" if base.path_outside else disp(f"{base.path}/config.json")
        local: dict[str, Any] | None = None
        try:
            local = read_json_object(base_dir / "config.json", local_shown)
        except InputError as exc:
            problems += exc.problems
        if local is not None and family is not None:
            bad = config_problems(local, family, local_shown)
            problems += bad
            try:
                if not bad and (family.num_experts(local), family.moe_layers(local)) != (
                        family.num_experts(config), family.moe_layers(config)):
                    problems.append(Problem(local_shown, "num_experts",
                                            f"the local checkpoint disagrees with the recorded {base.config}"))
            except (KeyError, TypeError, ValueError) as exc:
                problems.append(Problem(local_shown, "", f"not a MoE config: {exc}"))
    elif base_dir is not None and not base.generator and not base_dir.exists():
        warnings.append(f"{rel_file}: base.path: {base.path!r} does not exist yet; it will be downloaded "
                        f"from {base.repo}@{base.revision[:12]}")

    drop_map: DropMap | None = None
    derived = definition.dropmap is not None and definition.dropmap.derive
    raw = None if derived else read("prune.drop_map", read_input_bytes)
    if derived and config is not None and family is not None:
        try:
            drop_map = DropMap(file=disp(definition.prune.drop_map), base=base.repo,
                               num_experts=family.num_experts(config), kept={}, sha256="",
                               source="derived by the release (release dropmap)",
                               planned_kept=definition.prune.experts_kept)
        except (KeyError, TypeError, ValueError) as exc:
            problems.append(Problem(disp(base.config), "", f"not a MoE config: {exc}"))
    if raw is not None:
        try:
            drop_map = parse_drop_map(raw, disp(definition.prune.drop_map))
        except InputError as exc:
            problems += exc.problems
    if drop_map is not None and not drop_map.pending and config is not None and family is not None:
        problems += check_against_config(drop_map, config, family, config_file=disp(base.config),
                                         base_repo=base.repo)
        if drop_map.kept and drop_map.kept_count != definition.prune.experts_kept:
            problems.append(Problem(rel_file, "prune.experts_kept",
                                    f"{definition.prune.experts_kept} but the drop map keeps "
                                    f"{drop_map.kept_count} per layer"))
        problems += derived_map_problems(pipeline_dir, definition, drop_map, family, config, warnings)

    scores = read("cards.scores", load_scores)
    if scores is not None:
        problems += per_quant_problems(scores, definition, disp(definition.cards.scores))

    for sib in definition.release.siblings:
        try:
            load_definition(resolve_sibling(pipeline_dir, sib))
        except FileNotFoundError:
            problems.append(Problem(rel_file, "release.siblings", f"no sibling release {sib!r} beside "
                                                                  f"{pipeline_dir.name}/"))
        except InputError as exc:
            problems.append(Problem(rel_file, "release.siblings", f"sibling {sib!r} is invalid: "
                                                                  f"{exc.problems[0]}"))

    release: Release | None = None
    if drop_map is not None and scores is not None and config is not None and family is not None:
        release = Release(pipeline_dir, definition, drop_map, scores, config, family, warnings)
        if definition.gguf is not None and not problems:
            from ..gguf.checks import imatrix_is_calibration, recipe_problems, recipe_warnings

            problems += recipe_problems(release)
            warnings += recipe_warnings(release)
            calibration = files.get("gguf.imatrix")
            if calibration is not None and not problems and imatrix_is_calibration(definition.gguf.imatrix):
                from .calibration import calibration_findings

                try:
                    found, said = calibration_findings(release, calibration)
                except InputError as exc:
                    found, said = exc.problems, []
                problems += found
                warnings += said
        if not problems and release.quality is not None:
            from .heldout import heldout_findings

            found, said = heldout_findings(release)
            problems += found
            warnings += said
    if problems:
        raise InputError(sorted(set(problems), key=problems.index))
    assert release is not None
    release.warnings += placeholder_warnings(release)
    if tool_checks:
        release.warnings += _tool_warnings(release)
    return release


def per_quant_problems(scores: Scores, definition: ReleaseDefinition, file: str) -> list[Problem]:
    """Per-quant scores of tiers this release does not have."""
    if scores.per_quant is None or definition.gguf is None:
        return []
    g = definition.gguf
    known = set(g.tiers) | {g.baseline} | set(g.removed) | {"NVFP4A16", "BF16"}
    return [Problem(file, f"per_quant.scores.{tier}", f"unknown tier {tier!r} (not in [gguf] tiers, removed or "
                                                      "baseline)")
            for tier in scores.per_quant.scores if tier not in known]


# Path fields of a definition, and what each names. A "file" must exist; the base folder may not
# exist yet (it is downloaded or generated).
PATH_FIELDS: tuple[tuple[str, str], ...] = (
    ("base.config", "file"), ("base.path", "folder"), ("prune.drop_map", "file"), ("cards.scores", "file"),
    ("gguf.imatrix", "file"), ("ollama.template", "file"), ("ollama.system", "file"),
    ("ollama.license", "file"), ("dropmap.calibration", "folder"), ("quality.text", "file"),
)


def _field_value(d: ReleaseDefinition, field: str) -> str:
    section, key = field.split(".")
    obj = getattr(d, section)
    return "" if obj is None else getattr(obj, key)


def definition_paths(d: ReleaseDefinition, pipeline_dir: Path, file: str,
                     warnings: list[str]) -> tuple[dict[str, Path], list[Problem]]:
    """Every path field resolved by the one resolver: {field: path} for the usable ones, and the
    problems of the others (outside the folder, missing, a folder where a file is expected)."""
    paths: dict[str, Path] = {}
    problems: list[Problem] = []
    derived = d.dropmap is not None and d.dropmap.derive
    for name, kind in PATH_FIELDS:
        rel = _field_value(d, name)
        if not rel:
            continue
        if name == "prune.drop_map" and derived:
            try:
                there = resolve_inside(pipeline_dir, rel).exists()
            except PathRefused as exc:
                problems.append(Problem(file, name, str(exc)))
                continue
            if there:
                problems.append(Problem(file, "dropmap.derive", f"{pipeline_dir.name}/{rel} exists, but the release "
                                        "derives its drop map: delete the file, or set derive = false to use it"))
            continue
        outside = name == "base.path" and d.base.path_outside
        try:
            path = resolve_inside(pipeline_dir, rel, allow_outside=outside)
        except PathRefused as exc:
            hint = " (a base checkpoint kept elsewhere needs [base] path_outside = true)" \
                if name == "base.path" else ""
            problems.append(Problem(file, name, f"{exc}{hint}"))
            continue
        shown = str(path) if outside else f"{pipeline_dir.name}/{rel}"
        if kind == "file":
            if path.is_dir():
                problems.append(Problem(file, name, f"{shown} is a directory, expected a file"))
                continue
            if not path.exists():
                problems.append(Problem(file, name, f"file not found: {shown}"))
                continue
            if not path.is_file():
                problems.append(Problem(file, name, f"{shown} is not a regular file"))
                continue
        elif path.exists() and not path.is_dir():
            problems.append(Problem(file, name, f"{shown} is not a folder"))
            continue
        paths[name] = path
    if d.base.path_outside:
        if d.base.generator:
            problems.append(Problem(file, "base.path_outside", "a generated base lives in the release folder; "
                                                               "drop path_outside"))
        elif not d.base.path:
            problems.append(Problem(file, "base.path_outside", "set base.path to the checkpoint kept elsewhere"))
        elif "base.path" in paths and not paths["base.path"].is_relative_to(pipeline_dir):
            warnings.append(f"{file}: base.path: the base checkpoint is read from {paths['base.path']}, outside "
                            "the release folder (base.path_outside = true)")
    return paths, problems


def _tool_warnings(release: Release) -> list[str]:
    """Warnings from the builders' own checks (what users trip on)."""
    out: list[str] = []
    try:
        from ..ollama.checks import check_warnings  # type: ignore[import-not-found]
    except ImportError:
        return out
    if release.definition.ollama is not None:
        out += check_warnings(release.definition.ollama, family=release.family.family)
    return out


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
