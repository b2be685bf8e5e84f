"""The held-out text quality is measured on (release/quality/): readable, long enough for one window, and
not the importance-matrix calibration text.

A quantization tuned on a text (the imatrix weighs the tensors it activates) looks better on that text
than on any other, so measuring on it would flatter exactly the tiers that used it. `check` refuses the
calibration file itself, a copy of it, and a text that shares a long line with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import InputError, Problem
from ..gguf.checks import imatrix_is_calibration
from .calibration import count_tokens
from .readers import read_input_bytes

if TYPE_CHECKING:
    from .load import Release

SHARED_LINE_CHARS = 40  # a line this long found in both texts is copied, not a coincidence


def read_heldout(release: Release) -> str:
    """The held-out text, or InputError naming it."""
    q = release.quality
    assert q is not None
    shown = release.display(q.text)
    raw = read_input_bytes(release.path(q.text), shown, "quality.text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"held-out text is not UTF-8: {exc}", file=shown) from exc
    if not text.strip():
        raise InputError("the held-out text is empty", file=shown)
    return text


def heldout_findings(release: Release) -> tuple[list[Problem], list[str]]:
    """(problems, warnings) of the held-out text of a release that measures quality."""
    q = release.quality
    assert q is not None
    file = release.display("release.toml")
    try:
        text = read_heldout(release)
    except InputError as exc:
        return exc.problems, []
    problems: list[Problem] = []
    g = release.definition.gguf

    if g is not None and g.imatrix and imatrix_is_calibration(g.imatrix):
        calibration = release.path(g.imatrix)
        why = ""
        if release.path(q.text).resolve() == calibration.resolve():
            why = "is the imatrix calibration text"
        else:
            try:
                cal = calibration.read_text(encoding="utf-8", errors="replace")
            except OSError:
                cal = ""
            if cal and cal.strip() == text.strip():
                why = f"has the same content as the imatrix calibration text {g.imatrix}"
            else:
                shared = _shared_line(text, cal)
                if shared:
                    why = f"shares text with the imatrix calibration text {g.imatrix} ({shared[:60]!r}…)"
        if why:
            problems.append(Problem(file, "quality.text", f"{q.text} {why}: quality must be measured on text the "
                                    "quantization was not tuned on; give a held-out text of its own"))
    if problems:
        return problems, []

    count = count_tokens(release, text)
    if count.tokens >= q.context:
        return [], []
    has = f"{q.text} has {'' if count.exact else '≈'}{count.tokens} tokens ({count.how})"
    if count.exact:
        return [Problem(file, "quality.context", f"{has}: fewer than one window of {q.context}; give a longer "
                                                 "held-out text or a smaller context")], []
    return [], [f"{file}: quality.context: {has}, maybe fewer than one window of {q.context}"]


def _shared_line(text: str, other: str) -> str:
    lines = {line.strip() for line in other.splitlines() if len(line.strip()) >= SHARED_LINE_CHARS}
    return next((line.strip() for line in text.splitlines() if line.strip() in lines), "")
