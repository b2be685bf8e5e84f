"""Loading a release: resolve NAME, parse every input file, and validate them together.

`load_release` returns a `Release` only when every input is valid; otherwise it raises one
InputError carrying every problem of every file (file + field + message).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import InputError, Problem
from ..families import Family, for_config
from ..gguf.checks import imatrix_is_calibration, recipe_problems, recipe_warnings
from ..nvfp4.census import unsupported as nvfp4_unsupported
from ..ollama.checks import check_warnings
from .bounds import config_problems
from .calibration import calibration_findings
from .definition import QualitySection, ReleaseDefinition
from .dropmap import DropMap, check_against_config, parse_drop_map
from .dropmap_scores import derived_map_problems
from .expert_scores import scores_path_for
from .heldout import heldout_findings
from .paths import PathRefused, resolve_inside
from .placeholders import placeholder_warnings
from .readers import read_input_bytes, read_json_object, read_toml
from .rules import definition_problems, per_quant_problems
from .scores import Scores, load_scores
from .validation import pydantic_problems

T = TypeVar("T")
DEFINITION_FILE = "release.toml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]

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
            problems += recipe_problems(release)
            warnings += recipe_warnings(release)
            calibration = files.get("gguf.imatrix")
            if calibration is not None and not problems and imatrix_is_calibration(definition.gguf.imatrix):
                try:
                    found, said = calibration_findings(release, calibration)
                except InputError as exc:
                    found, said = exc.problems, []
                problems += found
                warnings += said
        if not problems and release.quality is not None:
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
    if release.definition.ollama is not None:
        out += check_warnings(release.definition.ollama, family=release.family.family)
    return out
