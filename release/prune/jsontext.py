"""Edits of JSON *text* that leave every other byte as it was.

config.json and the index are edited this way rather than parsed and re-dumped: a round trip through
`json` (or worse, transformers) reorders keys, changes number spelling and indentation, and — for
transformers — adds and removes keys that llama.cpp and vLLM read (docs/moe-pruning.md §5).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

_WS = " \t\r\n"
_decoder = json.JSONDecoder()


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _object_members(text: str, i: int, *, limit: int | None = None) -> list[tuple[str, int, int, int]]:
    """Members of the object starting at text[i] == '{': (key, key_start, value_start, value_end).

    `limit` stops after that many members (finding the first one of a 10^5-member object is cheap).
    """
    if text[i] != "{":
        raise ValueError(f"expected an object at offset {i}")
    out: list[tuple[str, int, int, int]] = []
    i = _skip_ws(text, i + 1)
    if text[i] == "}":
        return out
    while limit is None or len(out) < limit:
        key_start = i
        key, i = _decoder.raw_decode(text, i)
        i = _skip_ws(text, i)
        if text[i] != ":":
            raise ValueError(f"expected ':' at offset {i}")
        value_start = _skip_ws(text, i + 1)
        _, value_end = _decoder.raw_decode(text, value_start)
        out.append((key, key_start, value_start, value_end))
        i = _skip_ws(text, value_end)
        if text[i] == "}":
            return out
        if text[i] != ",":
            raise ValueError(f"expected ',' or '}}' at offset {i}")
        i = _skip_ws(text, i + 1)
    return out


def value_span(text: str, path: Sequence[str], *, first_member: bool = False) -> tuple[int, int]:
    """(start, end) of the value at `path` (object keys from the top); KeyError if absent.

    With duplicate keys the last one wins, as in `json.loads`. `first_member` looks only at the first
    member of each object (safetensors headers put `__metadata__` first; scanning 10^5 entries for it
    would dominate the header read).
    """
    start = _skip_ws(text, 0)
    end = len(text.rstrip(_WS))
    for key in path:
        found = None
        for k, _ks, vs, ve in _object_members(text, start, limit=1 if first_member else None):
            if k == key:
                found = (vs, ve)
        if found is None:
            raise KeyError(key)
        start, end = found
    return start, end


def replace_value(text: str, path: Sequence[str], new_json: str) -> str:
    start, end = value_span(text, path)
    return text[:start] + new_json + text[end:]


def object_style(text: str, path: Sequence[str]) -> tuple[str, str, str]:
    """How the object at `path` is laid out: (before each member, between key and value, before '}').

    Used to write a rebuilt object in the same style as the one it replaces (e.g. indent=2 index files).
    """
    start, end = value_span(text, path)
    members = _object_members(text, start, limit=1)
    if not members:
        return "", ": ", ""
    key, ks, vs, _ve = members[0]
    lead = text[start + 1:ks]
    colon = text[ks + len(json.dumps(key, ensure_ascii=False)):vs]
    if colon.strip() != ":":  # key spelled with escapes: fall back to the common spelling
        colon = ": "
    close_start = end - 1  # the whitespace between the last value and '}'
    while close_start > start and text[close_start - 1] in _WS:
        close_start -= 1
    return lead, colon, text[close_start:end - 1]


def dump_object(items: Sequence[tuple[str, object]], style: tuple[str, str, str], *,
                ensure_ascii: bool) -> str:
    lead, colon, close = style
    body = ",".join(
        lead + json.dumps(k, ensure_ascii=ensure_ascii) + colon + json.dumps(v, ensure_ascii=ensure_ascii)
        for k, v in items
    )
    return "{" + body + (close if items else "") + "}"
