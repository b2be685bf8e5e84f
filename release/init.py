"""`release init DIR --base REPO_OR_PATH`: a new release folder from a base model, complete enough that
`release check` accepts it and `release plan` plans it.

The family is detected from the base's config; `base-config.json` records it. `release.toml` has every
section, filled from the family and the base: repos under the owner's namespace named after the base,
a GGUF sweep with an importance matrix, NVFP4A16, Ollama tags with the chat format the base uses (Gemma 4:
Ollama's built-in renderer and parser and the Gemma 4 template; ChatML: the ChatML template), quality
measurement, and the job budgets. What only a person can give is a placeholder, marked as the project marks
them (release/spec/placeholders.py on the placeholder branch: a `# PLACEHOLDER` comment on a release.toml
line, a text file whose first line is `# PLACEHOLDER`, a drop map whose `source` starts with PLACEHOLDER):
the summary, the owner when no token says it, the pin of a local base, the expert count, the drop map
(or, with --derive, the calibration texts it is derived from), the calibration and held-out texts, and the
scores. Everything is written into a temporary folder, checked with `load_release`, then renamed to DIR.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import InputError
from .fsutil import atomic_write_text
from .init_base import BaseModel
from .nvfp4.census import unsupported as nvfp4_unsupported
from .spec.load import load_release
from .spec.names import release_name_problem

MARK = "PLACEHOLDER"
TIERS = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "IQ4_XS", "Q3_K_M")
TAGS = ("Q4_K_M", "Q6_K", "Q8_0")
KEEP_SHARE = 0.75  # the expert count proposed when none is given (a placeholder): three quarters
GEMMA4_STOPS = ("<turn|>", "<|tool_response>")  # the end of a turn; a tool call waits for its answer
CHATML_STOPS = ("<|im_start|>", "<|im_end|>")
GENERATION_PARAMETERS = {"temperature": float, "top_p": float, "top_k": int, "min_p": float,
                         "repetition_penalty": float}


@dataclass
class InitResult:
    folder: Path
    name: str
    family: str
    experts: int
    kept: int
    placeholders: list[str] = field(default_factory=list)  # release.toml fields and files to replace

    def to_json(self) -> dict[str, Any]:
        return {"folder": str(self.folder), "release": self.name, "family": self.family, "experts": self.experts,
                "experts_kept": self.kept, "placeholders": self.placeholders}


def init_release(folder: Path, base: BaseModel, *, name: str | None = None, owner: str | None = None,
                 experts_kept: int | None = None, derive: bool = False) -> InitResult:
    """Write a new release folder `folder` for `base` (refused when it exists and is not empty)."""
    folder = folder.expanduser()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError("exists and is not an empty folder; init writes a new release folder", file=str(folder))
    name = name or _slug(folder.resolve().name)
    problem = release_name_problem(name)
    if problem:
        raise InputError(f"{problem}; give --name", file=str(folder))
    fam, config = base.family, base.config
    experts, top_k = fam.num_experts(config), fam.top_k(config)
    if experts_kept is not None and not top_k <= experts_kept < experts:
        raise InputError(f"{experts_kept}: keep at least top-k ({top_k}) and fewer than the base's {experts} experts",
                         file="--experts-kept")
    kept = experts_kept or max(top_k, round(experts * KEEP_SHARE))
    result = InitResult(folder, name, fam.family, experts, kept)
    staging = folder.parent / f".{folder.name}.init-partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write(staging, base, result, owner=owner, pinned_kept=experts_kept is not None, derive=derive)
        load_release(str(staging.resolve()), tool_checks=False)  # what init writes, check accepts
        if folder.exists():
            folder.rmdir()
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return result


def _write(out: Path, base: BaseModel, r: InitResult, *, owner: str | None, pinned_kept: bool, derive: bool) -> None:
    toml = _Toml()
    stem = f"{base.short_name}-{r.kept}e"
    owner_mark = "" if owner else f"{MARK}: your Hugging Face namespace"
    owner = owner or "your-namespace"
    title = f"{base.short_name} {r.kept}-Expert"
    (out / "base-config.json").write_bytes(base.config_bytes)
    card = base.card

    toml.comment(f"{title}: a release of {base.repo or base.local} with {r.experts - r.kept} of {r.experts} "
                 f"experts dropped per MoE layer ({r.family}). Made by `release init`; every value marked "
                 f"# {MARK} is yours to give before a publish.")
    toml.table("release")
    toml.set("name", r.name)
    toml.set("title", title)
    toml.set("summary", f"{base.short_name} with {r.experts - r.kept} of {r.experts} experts dropped in every MoE "
                        "layer.", mark=f"{MARK}: say how the experts were chosen")
    toml.set("owner", owner, mark=owner_mark)
    license_id = str(card.get("license") or "")
    toml.set("license", license_id or "other", mark="" if license_id else f"{MARK}: the base model's license")
    for key in ("license_name", "license_link"):
        if isinstance(card.get(key), str) and card[key]:
            toml.set(key, card[key])
    vision = isinstance(base.config.get("vision_config"), dict)
    toml.set("pipeline_tag", str(card.get("pipeline_tag") or ("image-text-to-text" if vision else "text-generation")))
    toml.set("tags", [r.family, "moe", "expert-pruning"])

    toml.table("base")
    toml.set("repo", base.repo or "base-owner/base-model", mark="" if base.repo else f"{MARK}: the base's Hub repo")
    toml.set("revision", base.revision or "0" * 40,
             mark="" if base.revision else f"{MARK}: the commit of the base you prune from")
    toml.set("config", "base-config.json")
    if base.local is not None:
        toml.set("path", str(base.local))
        toml.set("path_outside", True)
    toml.set("label", f"{r.experts}e")
    if base.parameters:
        toml.set("parameters", base.parameters)

    toml.table("prune")
    toml.set("drop_map", "dropmap.json")
    toml.set("experts_kept", r.kept, mark="" if pinned_kept else f"{MARK}: how many experts each layer keeps")
    toml.set("label", f"{r.kept}e")
    if derive:
        toml.table("dropmap")
        toml.set("derive", True)
        toml.set("recipe", "max-class")
        toml.set("calibration", "calibration")
        _calibration_classes(out / "calibration")
    else:
        _placeholder_drop_map(out / "dropmap.json", base, r)
        r.placeholders.append("dropmap.json")

    toml.table("bf16")
    toml.set("repo", f"{owner}/{stem}")
    toml.table("gguf")
    toml.set("repo", f"{owner}/{stem}-GGUF")
    toml.set("prefix", stem)
    toml.set("baseline", "F16")
    toml.set("tiers", list(TIERS))
    toml.set("imatrix", "calibration.txt")
    toml.set("recommended", ["Q4_K_M"])
    _text(out / "calibration.txt", "imatrix calibration text", "the text the importance matrix is computed on: "
          "a few hundred KB of what the model will be used for (chat, code, prose)", "Calibration")
    toml.table("gguf.notes")
    toml.set("Q4_K_M", "default for most setups")
    if nvfp4_unsupported(base.family) is None:
        toml.table("nvfp4")
        toml.set("repo", f"{owner}/{stem}-NVFP4A16")

    toml.table("quality")
    toml.set("text", "heldout.txt")
    _text(out / "heldout.txt", "held-out text", "the text every quantized artifact is measured on: tens of KB "
          "of prose, code, math and chat that is NOT in calibration.txt", "Held-out")
    r.placeholders += ["calibration.txt", "heldout.txt"]

    _ollama(toml, out, base, owner, stem)
    toml.table("cards")
    toml.set("scores", "scores.json")
    toml.table("cards.quick_start")
    toml.set("gguf_tier", "Q4_K_M")
    toml.set("ollama_tags", list(TAGS))
    _scores_skeleton(out / "scores.json", base)
    r.placeholders.append("scores.json")
    toml.table("jobs")
    for key, value in (("tiers_per_job", 3), ("max_disk_gb", 70.0), ("max_ram_gb", 16.0), ("max_hours", 4.0)):
        toml.set(key, value)
    atomic_write_text(out / "release.toml", toml.text())
    r.placeholders[:0] = toml.marked


def _ollama(toml: _Toml, out: Path, base: BaseModel, owner: str, stem: str) -> None:
    """[ollama]: tags of the sweep, the chat format the base uses, its sampling defaults."""
    toml.table("ollama")
    toml.set("model", f"{_slug(owner).replace('.', '-')}/{_slug(stem)}")  # no '.' in an Ollama namespace
    toml.set("latest", TAGS[0])
    (out / "ollama").mkdir()
    chat = base.chat_template
    stops: tuple[str, ...] = ()
    if base.family.family == "gemma4":
        _packaged_template("gemma4.gotmpl", out / "ollama" / "template.gotmpl")
        toml.set("template", "ollama/template.gotmpl")
        toml.set("renderer", "gemma4")  # ollama's own Gemma 4 prompt and tool-call handling
        toml.set("parser", "gemma4")
        stops = GEMMA4_STOPS
    elif "<|im_start|>" in chat:
        _packaged_template("chatml.gotmpl", out / "ollama" / "template.gotmpl")
        toml.set("template", "ollama/template.gotmpl")
        stops = CHATML_STOPS
    else:
        _packaged_template("plain.gotmpl", out / "ollama" / "template.gotmpl")
        toml.set("template", "ollama/template.gotmpl",
                 mark=f"{MARK}: write the Go template of this model's chat format (ollama/chat_template.jinja)")
    if chat:
        (out / "ollama" / "chat_template.jinja").write_text(chat, encoding="utf-8")
    toml.table("ollama.tags")
    for tag in TAGS:
        toml.set(tag, tag)
    toml.table("ollama.parameters")
    for key, kind in GENERATION_PARAMETERS.items():
        value = base.generation.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            toml.set("repeat_penalty" if key == "repetition_penalty" else key, kind(value))
    if stops:
        toml.set("stop", list(stops))


def _packaged_template(name: str, dest: Path) -> None:
    dest.write_text(resources.files("release.ollama").joinpath("templates", name).read_text(encoding="utf-8"),
                    encoding="utf-8")


def _placeholder_drop_map(path: Path, base: BaseModel, r: InitResult) -> None:
    """A valid map that keeps the first `kept` experts of every MoE layer: it lets check and plan run, and
    says it is a placeholder (`release dropmap` derives a real one from calibration text)."""
    layers = base.family.moe_layers(base.config)
    data = {"format": "moe-drop-map/1", "base": base.repo or "base-owner/base-model", "num_experts": r.experts,
            "drop": {str(layer): list(range(r.kept, r.experts)) for layer in layers},
            "source": f"{MARK}: keeps the first {r.kept} experts of every layer; replace it with a measured map "
                      "(`release dropmap NAME --calibration DIR --out dropmap.json`)"}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _calibration_classes(folder: Path) -> None:
    folder.mkdir()
    for cls in ("chat", "code"):
        _text(folder / f"{cls}.txt", f"{cls} calibration samples", f"samples of {cls} separated by blank lines; "
              "the drop map keeps the experts these route to", f"{cls.capitalize()} sample")


def _text(path: Path, what: str, replace_with: str, label: str) -> None:
    """A placeholder text: its first line says so, and it is long enough (≈6 KB, well over one quality
    window or imatrix chunk) for check and a rehearsal build to run on it."""
    lines = [f"# {MARK} {what}: replace this file with {replace_with}."]
    lines += [f"{label} placeholder line {i}: nothing here was chosen; it stands in for real text so that "
              f"`release check` and a rehearsal build can run before it is written." for i in range(1, 45)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _scores_skeleton(path: Path, base: BaseModel) -> None:
    data = {"format": "moe-release-scores/1",
            "harness": {"description": f"{MARK}: how the scores were measured. Import real ones with `release "
                                       "scores import NAME --lm-eval FILE --as reference|variant`."},
            "benchmarks": [{"name": f"{MARK} benchmark", "n": 1, "metric": "accuracy", "reference": 0,
                            "variant": 0}]}
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")


def _slug(text: str) -> str:
    """Lowercase [a-z0-9._-], as release names and Ollama models need."""
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._") or "release"


class _Toml:
    """release.toml as text, in the order a person reads it; values marked `# PLACEHOLDER` are listed."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.section = ""
        self.marked: list[str] = []

    def comment(self, text: str) -> None:
        self.lines += [f"# {line}" for line in _wrap(text)]

    def table(self, name: str) -> None:
        self.section = name
        self.lines += ["", f"[{name}]"]

    def set(self, key: str, value: Any, *, mark: str = "") -> None:
        shown = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
        line = f"{shown} = {_value(value)}"
        if mark:
            line += f"  # {mark}"
            self.marked.append(f"{self.section}.{key}")
        self.lines.append(line)

    def text(self) -> str:
        return "\n".join(self.lines).lstrip("\n") + "\n"


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:_}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def _wrap(text: str, width: int = 110) -> list[str]:
    out, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            out.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return out + ([line] if line else [])
