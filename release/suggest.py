"""Names a person types (tiers, artifact ids, job ids): matched as llama.cpp matches a type name —
regardless of case — and, on a miss, the nearest known name suggested."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def resolve(name: str, known: Iterable[str]) -> str | None:
    """The known name `name` means: itself, or the one name equal to it regardless of case."""
    names = list(known)
    if name in names:
        return name
    folded = [k for k in names if k.casefold() == name.casefold()]
    return folded[0] if len(folded) == 1 else None


def nearest(name: str, known: Iterable[str]) -> str | None:
    """The known name closest to `name` (case ignored), if one is close."""
    by_folded = {k.casefold(): k for k in known}
    hit = difflib.get_close_matches(name.casefold(), list(by_folded), n=1, cutoff=0.6)
    return by_folded[hit[0]] if hit else None


def did_you_mean(name: str, known: Iterable[str], *, prefix: str = "") -> str:
    """`; did you mean 'gguf:Q4_K_M'?` when a known name is close to `name`, else an empty string."""
    hit = nearest(name, known)
    return f"; did you mean {prefix + hit!r}?" if hit is not None else ""
