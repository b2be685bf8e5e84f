"""Calibration text: a folder with one file per task class; the file name (without suffix) is the class.

- `NAME.txt`: samples separated by blank lines.
- `NAME.jsonl`: one JSON object per line, `{"text": "…"}` or `{"messages": [{"role", "content"}, …]}` (rendered
  with the base model's chat template).

Classes are ordered by name and samples by position, so the same folder always gives the same tokens.
Memory is bounded whatever the files: a .txt file is read in pieces and a sample kept only as far as
--max-tokens can reach (CHARS_PER_TOKEN characters a token), then tokenized by growing prefixes until the
cut is certain (`first_tokens`); the tokens are those of the whole sample, cut.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..errors import InputError, ProblemCollector
from ..fsutil import sha256_file
from ..spec.readers import loads_guarded

SUFFIXES = (".txt", ".jsonl")
# A sample is cut to --max-tokens tokens; no real tokenizer's token spans more characters than this, so
# keeping max_tokens × CHARS_PER_TOKEN characters of a sample keeps every token that survives the cut.
CHARS_PER_TOKEN = 64
PIECE_CHARS = 1 << 16  # a .txt file is read in pieces of this many characters at most
MAX_JSONL_LINE = 64 << 20  # one JSON sample is parsed whole: beyond this, it is refused
STABLE_MARGIN = 16  # tokens past the cut that a prefix must give before its first tokens are final
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


def read_calibration(folder: Path, display: str | None = None, *, max_tokens: int | None = None) -> \
        list[CalibrationClass]:
    """Every class of a calibration folder, ordered by name; InputError naming each bad file/line.

    With `max_tokens`, a sample is kept only up to `max_tokens × CHARS_PER_TOKEN` characters (and no more of
    it is read into memory): whatever the file, memory stays bounded."""
    shown = display or str(folder)
    if not folder.is_dir():
        raise InputError("calibration folder not found (one .txt or .jsonl file per class)", file=shown)
    max_chars = max_tokens * CHARS_PER_TOKEN if max_tokens is not None else None
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
        try:
            # newline="\n": lines end at \n only and keep their \r, as in the file.
            with open(path, encoding="utf-8", newline="\n") as fh:
                samples = _txt_samples(fh, max_chars) if path.suffix == ".txt" else \
                    _jsonl_samples(fh, max_chars, where, errors)
        except UnicodeDecodeError as exc:
            errors.add(where, "", f"not UTF-8 text: {exc}")
            continue
        if not samples:
            errors.add(where, "", "no samples (a class needs at least one non-empty sample)")
            continue
        classes[name] = CalibrationClass(name, path.name, sha256_file(path), tuple(samples))
    if not classes and not errors:
        errors.add(shown, "", "no calibration files (one .txt or .jsonl file per class)")
    errors.raise_if_any()
    return [classes[c] for c in sorted(classes)]


def _txt_samples(fh: TextIO, max_chars: int | None) -> list[Sample]:
    """Samples separated by blank lines (lines of nothing but whitespace), read in pieces of at most
    PIECE_CHARS characters; a sample keeps its first `max_chars` characters and the rest is read past."""
    samples: list[Sample] = []
    pieces: list[str] = []
    held = 0
    passed_text = False  # text was read past (not held): the held part's trailing whitespace is inside
    blank = True  # the line read so far is whitespace only

    def end_sample() -> None:
        nonlocal held, passed_text
        text = "".join(pieces).lstrip()
        text = text if passed_text else text.rstrip()
        if text:
            samples.append(text[:max_chars])
        pieces.clear()
        held, passed_text = 0, False

    while piece := fh.readline(PIECE_CHARS):
        blank = blank and not piece.strip()
        line_ends = piece.endswith("\n")
        if line_ends and blank:
            end_sample()  # what this line added before its end was whitespace: stripped with the sample
        elif not pieces and not piece.strip():
            pass  # a sample's leading whitespace, stripped anyway: it takes no room from max_chars
        elif max_chars is None or held <= max_chars + PIECE_CHARS:
            pieces.append(piece)
            held += len(piece)
        else:
            passed_text = passed_text or bool(piece.strip())
        if line_ends:
            blank = True
    end_sample()
    return samples


def _jsonl_samples(fh: TextIO, max_chars: int | None, where: str, errors: ProblemCollector) -> list[Sample]:
    out: list[Sample] = []
    for lineno, line in enumerate(iter(lambda: fh.readline(MAX_JSONL_LINE + 1), ""), 1):
        field = f"line {lineno}"
        if len(line) > MAX_JSONL_LINE:
            errors.add(where, field, f"longer than {MAX_JSONL_LINE >> 20} Mi characters: split the sample, or give "
                                     "plain text in a .txt file (read in pieces)")
            for rest in iter(lambda: fh.readline(MAX_JSONL_LINE), ""):  # the rest of that line
                if rest.endswith("\n"):
                    break
            continue
        if not line.strip():
            continue
        try:
            obj: Any = loads_guarded(line, where, field)
        except InputError as exc:
            errors.extend(exc.problems)
            continue
        if isinstance(obj, dict) and isinstance(obj.get("text"), str):
            if obj["text"].strip():
                out.append(obj["text"][:max_chars])
        elif isinstance(obj, dict) and isinstance(obj.get("messages"), list) and obj["messages"] and all(
                isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                for m in obj["messages"]):
            out.append([{"role": m["role"], "content": m["content"][:max_chars]} for m in obj["messages"]])
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
                ids = first_tokens(tokenizer, sample, max_tokens)
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


def first_tokens(tokenizer: Any, text: str, max_tokens: int) -> list[int]:
    """The first `max_tokens` tokens of `text`, tokenizing growing prefixes rather than all of it: a prefix
    that gives STABLE_MARGIN tokens more than needed has the whole text's first tokens (a token's boundaries
    depend on the text just around it, never on what follows many tokens later)."""
    size = max_tokens * 4
    while True:
        ids = tokenizer(text[:size], add_special_tokens=True)["input_ids"]
        if size >= len(text) or len(ids) > max_tokens + STABLE_MARGIN:
            return list(ids[:max_tokens])
        size *= 4
