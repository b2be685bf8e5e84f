"""The artifact kinds of a release, in flow order: `FLOW` is the one list.

    base ─→ bf16 ─→ gguf:<baseline> ─→ gguf:imatrix (also needs bf16) ─→ gguf:<tier> ─→ ollama:<tag>
      ↘ dropmap ↗  │           └──→ quality:reference ──┴──→ quality:<tier>
               └──→ nvfp4 ─→ quality:nvfp4 (also needs bf16)
    card:<repo> describes everything above (it reads what is built, it never builds)

Each kind is one module here (base.py says what a kind is). The planner, the engine, the verify gate, the
job planner and the command line's kind choices all iterate `FLOW`; a kind added to it (one module, or
`register` in a test) is planned, built, verified, costed and offered by `--only` with no other edit.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from .base import Kind, KindBase
from .bf16 import BF16
from .card import CARD
from .dropmap import DROPMAP, derives_drop_map
from .gguf import GGUF
from .nvfp4 import NVFP4
from .ollama import OLLAMA
from .quality import QUALITY

FLOW: list[Kind] = [DROPMAP, BF16, GGUF, NVFP4, QUALITY, OLLAMA, CARD]


def kind_of(name: str) -> Kind:
    """The kind of `Artifact.kind` == name."""
    for k in FLOW:
        if k.name == name:
            return k
    raise KeyError(name)


def order(name: str) -> int:
    """The kind's position in the flow (what is made from it comes later)."""
    return next(i for i, k in enumerate(FLOW) if k.name == name)


def register(kind: Kind) -> None:
    """Add a kind at the end of the flow (before nothing: what it needs is planned first)."""
    if any(k.name == kind.name or k.selector == kind.selector for k in FLOW):
        raise ValueError(f"a kind named {kind.name!r} is already in the flow")
    FLOW.append(kind)


def unregister(name: str) -> None:
    FLOW[:] = [k for k in FLOW if k.name != name]


def selector_of(kind_name: str) -> str:
    """What `--only` calls the kind (cards for card)."""
    return kind_of(kind_name).selector


class _Selectors(Sequence[str]):
    """What `--only` takes, read from FLOW when asked (a kind registered later is offered too): every
    kind's selector, then `hub` for every artifact bound for the Hub."""

    def _values(self) -> tuple[str, ...]:
        return (*(k.selector for k in FLOW), "hub")

    @overload
    def __getitem__(self, i: int) -> str: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...
    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        return self._values()[i]

    def __len__(self) -> int:
        return len(self._values())

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __repr__(self) -> str:
        return repr(self._values())


KINDS: Sequence[str] = _Selectors()


def from_choices() -> list[str]:
    """What `--from` takes: the kinds made in the flow of `build` (a kind with a job stage of its own, the
    drop map on a GPU, is made again by its own command)."""
    return [k.selector for k in FLOW if not k.stage]


def only_help(verb: str = "Build") -> str:
    """The `--only` help line of a command, listing the kinds."""
    return f"{verb} only these ({', '.join(k.selector for k in FLOW)}; e.g. gguf:Q4_K_M). Repeatable."


def kind_lines() -> list[str]:
    """One line per kind: its selector and what it makes (for help texts and docs)."""
    return [f"{k.selector}: {k.help}" for k in FLOW]


__all__ = ["FLOW", "KINDS", "Kind", "KindBase", "derives_drop_map", "from_choices", "kind_lines", "kind_of",
           "only_help", "order", "register", "selector_of", "unregister"]
