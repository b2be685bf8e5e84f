"""What a quality measurement will cost, from the definition alone (plan, `plan --matrix`).

Tokens: the held-out text's bytes over BYTES_PER_TOKEN (the estimate `check` uses for calibration text),
capped at `max_tokens`, cut into whole windows; a window's second half is scored. The reference file
is float16 log-probabilities of every scored token over the whole vocabulary.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..spec.calibration import BYTES_PER_TOKEN_ESTIMATE

if TYPE_CHECKING:
    from ..spec.load import Release


def planned_tokens(release: Release) -> tuple[int, int]:
    """(decoded, scored) tokens: the windows' tokens, and the predictions compared."""
    q = release.quality
    if q is None:
        return 0, 0
    try:
        size = release.path(q.text).stat().st_size
    except (OSError, ValueError):
        size = 0
    windows = min(size // BYTES_PER_TOKEN_ESTIMATE, q.max_tokens) // q.context
    return windows * q.context, windows * (q.context - 1 - q.context // 2)


def vocab_size(release: Release) -> int:
    value = release.family.text_config(release.base_config).get("vocab_size")
    return value if isinstance(value, int) and value > 0 else 0


def reference_bytes(release: Release) -> int:
    """The reference's log-probabilities: scored tokens × vocabulary × 2 bytes (+ its JSON, ≈10 B a token)."""
    decoded, scored = planned_tokens(release)
    return scored * vocab_size(release) * 2 + decoded * 10
