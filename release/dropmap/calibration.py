"""Calibration text: a folder with one file per task class; the file name (without suffix) is the class.

- `NAME.txt`: samples separated by blank lines.
- `NAME.jsonl`: one JSON object per line, `{"text": "…"}` or `{"messages": [{"role", "content"}, …]}` (rendered
  with the base model's chat template).

Classes are ordered by name and samples by position, so the same folder always gives the same tokens.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, ProblemCollector

SUFFIXES = (".txt", ".jsonl")
_CLASS_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

Sample = str | list[dict[str, str]]  # plain text, or chat messages


@dataclass(frozen=True)
class CalibrationClass:
    name: str
    file: str  # file name inside the folder
    sha256: str
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class TokenizedClass:
    name: str
    file: str
    sha256: str
    samples: tuple[tuple[int, ...], ...]  # token ids per sample (truncated, empty samples left out)

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self.samples)


def read_calibration(folder: Path, display: str | None = None) -> list[CalibrationClass]:
    """Every class of a calibration folder, ordered by name; InputError naming each bad file/line."""
    shown = display or str(folder)
    if not folder.is_dir():
        raise InputError("calibration folder not found (one .txt or .jsonl file per class)", file=shown)
    errors = ProblemCollector()
    classes: dict[str, CalibrationClass] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        where = f"{shown}/{path.name}"
        if not path.is_file() or path.suffix not in SUFFIXES:
            errors.add(where, "", "not a calibration file: use one .txt or .jsonl file per class")
            continue
        name = path.stem
        if not _CLASS_NAME.match(name):
            errors.add(where, "", "class names (file names) use letters, digits, '.', '_' or '-'")
            continue
        if name in classes:
            errors.add(where, "", f"class {name!r} is also {classes[name].file}; one file per class")
            continue
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            errors.add(where, "", f"not UTF-8 text: {exc}")
            continue
        samples = _samples(text, path.suffix, where, errors)
        if not samples:
            errors.add(where, "", "no samples (a class needs at least one non-empty sample)")
            continue
        classes[name] = CalibrationClass(name, path.name, hashlib.sha256(raw).hexdigest(), tuple(samples))
    if not classes and not errors:
        errors.add(shown, "", "no calibration files (one .txt or .jsonl file per class)")
    errors.raise_if_any()
    return [classes[c] for c in sorted(classes)]


def _samples(text: str, suffix: str, where: str, errors: ProblemCollector) -> list[Sample]:
    if suffix == ".txt":
        return [s.strip() for s in re.split(r"\n\s*\n", text) if s.strip()]
    out: list[Sample] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        field = f"line {lineno}"
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.add(where, field, f"not valid JSON: {exc}")
            continue
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            if obj["text"].strip():
                out.append(obj["text"])
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list) and obj["messages"] and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in obj["messages"]):
            out.append([{"role": m["role"], "content": m["content"]} for m in obj["messages"]])
        else:
            errors.add(where, field, 'expected {"text": "…"} or {"messages": [{"role": …, "content": …}, …]}')
    return out


def tokenize(classes: list[CalibrationClass], tokenizer: Any, max_tokens: int, *, display: str = "") -> \
        list[TokenizedClass]:
    """Token ids per sample: special tokens as the tokenizer adds them, truncated to `max_tokens`."""
    out: list[TokenizedClass] = []
    for cls in classes:
        samples: list[tuple[int, ...]] = []
        for sample in cls.samples:
            if isinstance(sample, str):
                ids = tokenizer(sample, add_special_tokens=True)["input_ids"]
            else:
                if not getattr(tokenizer, "chat_template", None):
                    raise InputError("chat messages need the base model's chat template, which it lacks",
                                     file=f"{display}/{cls.file}" if display else cls.file)
                ids = tokenizer.apply_chat_template(sample, tokenize=True, add_generation_prompt=False,
                                                    return_dict=True)["input_ids"]
            ids = tuple(int(i) for i in ids[:max_tokens])
            if ids:
                samples.append(ids)
        out.append(TokenizedClass(cls.name, cls.file, cls.sha256, tuple(samples)))
    return out
