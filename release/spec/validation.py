"""Turning pydantic's validation errors into our `file: field: message` problems."""

from __future__ import annotations

from pydantic import ValidationError

from ..errors import Problem

_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required field missing",
}


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith(("literal[", "union[")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


def pydantic_problems(exc: ValidationError, file: str) -> list[Problem]:
    problems: dict[tuple[str, str], Problem] = {}
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not _is_union_member(p))
        field = _field_path(loc)
        msg = _MESSAGES.get(err["type"]) or err["msg"]
        if err["type"] not in _MESSAGES and "input" in err and not isinstance(err["input"], dict | list):
            msg = f"{msg} (got {err['input']!r})"
        # Union members each report; keep the first message per field.
        problems.setdefault((field, err["type"]), Problem(file, field, msg))
    seen_fields: set[str] = set()
    out: list[Problem] = []
    for p in problems.values():
        if p.field in seen_fields:
            continue
        seen_fields.add(p.field)
        out.append(p)
    return out


def _is_union_member(part: object) -> bool:
    # pydantic appends the union member's type name (e.g. 'int', 'float', 'list[str]') to loc
    return isinstance(part, str) and part in {"int", "float", "bool", "str", "list[str]", "none",
                                              "tagged-union", "is-instance[Path]"}
