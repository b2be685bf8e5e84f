"""Reading a definition's input files: one guarded reader for bytes, JSON and TOML.

Every failure becomes one InputError naming the file (and the field that named the file, when there is
one): a missing file, a directory, a symlink loop, an unreadable or oversized file, text that is not
UTF-8, a syntax error, nesting too deep for the parsers (Python's json and tomllib recurse), and — in
JSON — a key given twice, which `json.loads` would silently resolve to the last value.
"""

from __future__ import annotations

import errno
import json
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

from ..errors import InputError, Problem

# Definition inputs are small text files (the largest, a drop map of 256 experts × 128 layers, is
# well under 1 MB); refusing anything bigger keeps a wrong path from being read into memory.
MAX_INPUT_BYTES = 64 << 20
# Deeper than any real config (Hub config.json files nest 3–4 levels) and far below the recursion
# limit of the parsers and of pydantic.
MAX_DEPTH = 32
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DROP_ASCII_NON_BRACKETS = str.maketrans("", "", "".join(chr(i) for i in range(128) if chr(i) not in "[]{}"))
_INNERMOST = re.compile(r"\[\]|\{\}")


def read_input_bytes(path: Path, display: str, field: str = "") -> bytes:
    """The bytes of an input file, or InputError saying why not."""
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise InputError("is a directory, expected a file", file=display, field=field)
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise InputError("not a regular file", file=display, field=field)
        if st.st_size > MAX_INPUT_BYTES:
            raise InputError(f"{st.st_size} bytes; input files are limited to {MAX_INPUT_BYTES >> 20} MiB",
                             file=display, field=field)
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError("file not found", file=display, field=field) from exc
    except IsADirectoryError as exc:
        raise InputError("is a directory, expected a file", file=display, field=field) from exc
    except RuntimeError as exc:  # pathlib's "Symlink loop" on some Python versions
        raise InputError("symlink loop", file=display, field=field) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError("symlink loop", file=display, field=field) from exc
        raise InputError(f"cannot read: {exc.strerror or exc}", file=display, field=field) from exc


def _text(raw: bytes, display: str, field: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text: {exc}", file=display, field=field) from exc


class _Duplicates(dict):
    """A JSON object in which some key appeared more than once (the keys are kept for the error)."""

    duplicates: list[str]


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    dups: list[str] = []
    for key, value in pairs:
        if key in out and key not in dups:
            dups.append(key)
        out[key] = value
    if not dups:
        return out
    marked = _Duplicates(out)
    marked.duplicates = dups
    return marked


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _structure_problems(data: Any, display: str) -> list[Problem]:
    """Nesting deeper than MAX_DEPTH, and duplicate JSON keys with where they are (iteratively, so
    the walk itself cannot overflow the stack)."""
    problems: list[Problem] = []
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        value, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            problems.append(Problem(display, where, f"nested deeper than {MAX_DEPTH} levels"))
            break
        if isinstance(value, dict):
            if isinstance(value, _Duplicates):
                problems += [Problem(display, _join(where, k), "key given more than once (JSON keeps only the "
                                                               "last one); keep one")
                             for k in value.duplicates]
            stack += [(v, _join(where, k), depth + 1) for k, v in value.items()]
        elif isinstance(value, list):
            stack += [(v, _join(where, i), depth + 1) for i, v in enumerate(value)]
    return problems


def nested_deeper_than(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON text nests arrays and objects more than `limit` deep, decided without recursing (the
    parsers do, and a hostile file nested 10^5 deep ends them in a RecursionError): strings are dropped,
    then the innermost bracket pairs are peeled off, at most `limit` times, each pass in C."""
    # Without escapes every other '"'-separated piece is a string (the common case, 5× faster).
    outside = "".join(text.split('"')[0::2]) if "\\" not in text else _JSON_STRING.sub("", text)
    brackets = outside.translate(_DROP_ASCII_NON_BRACKETS)
    if not brackets.isascii():  # text outside strings is ASCII in valid JSON; let the parser say where
        brackets = _NOT_BRACKET.sub("", brackets)
    for _ in range(limit):
        peeled = _INNERMOST.sub("", brackets)
        if peeled == brackets:  # empty, or unbalanced: a syntax error the parser reports
            return False
        brackets = peeled
    return _INNERMOST.search(brackets) is not None


def loads_guarded(text: str, display: str, field: str = "", **kwargs: Any) -> Any:
    """`json.loads` of an untrusted file's text: too deep, a syntax error or an absurd number is one
    InputError naming the file (and field), never a traceback."""
    if nested_deeper_than(text):
        raise InputError(f"not usable JSON: nested deeper than {MAX_DEPTH} levels", file=display, field=field)
    try:
        return json.loads(text, **kwargs)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc}", file=display, field=field) from exc
    except RecursionError as exc:  # `limit` is far below the recursion limit; kept as a last guard
        raise InputError(f"not usable JSON: nested deeper than {MAX_DEPTH} levels", file=display,
                         field=field) from exc
    except ValueError as exc:  # an integer literal of more than 4300 digits
        raise InputError(f"not usable JSON: {exc}", file=display, field=field) from exc


def parse_json(raw: bytes, display: str, field: str = "") -> Any:
    """JSON from bytes, refusing syntax errors, duplicate keys and deep nesting (one InputError)."""
    data = loads_guarded(_text(raw, display, field), display, field, object_pairs_hook=_object)
    problems = _structure_problems(data, display)
    if problems:
        raise InputError(problems)
    return data  # no `_Duplicates` is left: any one of them raised above


def read_json(path: Path, display: str, field: str = "") -> Any:
    return parse_json(read_input_bytes(path, display, field), display, field)


def read_json_object(path: Path, display: str, field: str = "") -> dict[str, Any]:
    data = read_json(path, display, field)
    if not isinstance(data, dict):
        raise InputError("top level must be a JSON object", file=display, field=field)
    return data


def parse_toml(raw: bytes, display: str) -> dict[str, Any]:
    text = _text(raw, display, "")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"invalid TOML: {exc}", file=display) from exc
    except RecursionError as exc:
        raise InputError(f"not usable TOML: nested deeper than {MAX_DEPTH} levels", file=display) from exc
    except ValueError as exc:  # an integer literal of more than 4300 digits
        raise InputError(f"not usable TOML: {exc}", file=display) from exc
    problems = _structure_problems(data, display)
    if problems:
        raise InputError(problems)
    return data


def read_toml(path: Path, display: str) -> dict[str, Any]:
    return parse_toml(read_input_bytes(path, display), display)
