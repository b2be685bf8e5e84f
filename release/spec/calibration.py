"""Is the imatrix calibration text long enough for the chunks a definition asks for?

The importance matrix is computed over chunks of 512 tokens; a text shorter than two chunks is cut
into two shorter ones (`gguf.imatrix.chunk_plan`). So `imatrix_chunks = 4` over a 342-byte text
gives 2 chunks, and the file records 2. `check` and `build` warn before the run.

Tokens are counted with the base model's own tokenizer when a copy is on this machine (the base
folder, or the Hugging Face cache at the pinned revision); otherwise they are estimated at 4 bytes
per token — fewer tokens than large-vocabulary tokenizers produce on English or code, so the estimate
errs towards warning — and the warning says it is an estimate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Problem
from .readers import read_input_bytes

if TYPE_CHECKING:
    from .load import Release

BYTES_PER_TOKEN_ESTIMATE = 4
CHUNK_TOKENS = 512  # compute_imatrix's n_ctx


@dataclass(frozen=True)
class TokenCount:
    tokens: int
    exact: bool  # counted by the base's tokenizer (else estimated from the byte count)
    how: str


def base_tokenizer(release: Release) -> Path | None:
    """The base model's tokenizer.json if it is on this machine; never downloads."""
    local = release.base_path
    if local is not None and (local / "tokenizer.json").is_file():
        return local / "tokenizer.json"
    base = release.definition.base
    if base.generator:
        return None
    if re.fullmatch(r"[0-9a-f]{40}", base.revision):
        # A pinned commit is a snapshot folder of the cache: look without importing the Hub client (every
        # command loads the release, and that import costs more than the rest of `plan`).
        from huggingface_hub.constants import HF_HUB_CACHE

        snapshot = Path(HF_HUB_CACHE) / f"models--{base.repo.replace('/', '--')}" / "snapshots" / base.revision
        return snapshot / "tokenizer.json" if (snapshot / "tokenizer.json").is_file() else None
    try:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(base.repo, "tokenizer.json", revision=base.revision)
    except Exception:  # a malformed cache is not this check's business
        return None
    return Path(hit) if isinstance(hit, str) else None


def count_tokens(release: Release, text: str) -> TokenCount:
    tokenizer = base_tokenizer(release)
    if tokenizer is not None:
        try:
            from tokenizers import Tokenizer

            ids = Tokenizer.from_file(str(tokenizer)).encode(text, add_special_tokens=True).ids
            return TokenCount(len(ids), True, "counted with the base model's tokenizer")
        except Exception:  # an unreadable tokenizer.json: fall back to the estimate
            pass
    n = len(text.encode("utf-8")) // BYTES_PER_TOKEN_ESTIMATE
    return TokenCount(n, False, f"estimated at {BYTES_PER_TOKEN_ESTIMATE} bytes per token: no tokenizer of "
                                "the base model on this machine")


def calibration_findings(release: Release, text_path: Path) -> tuple[list[Problem], list[str]]:
    """(problems, warnings) of the calibration text against `imatrix_chunks`: a warning when it gives
    fewer chunks than asked, an error when a counted text is too short for even one chunk."""
    from ..gguf.imatrix import chunk_plan  # lazy: numpy at start-up

    g = release.definition.gguf
    assert g is not None
    file = release.display("release.toml")
    shown = release.display(g.imatrix)
    raw = read_input_bytes(text_path, shown, "gguf.imatrix")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return [Problem(shown, "", f"calibration text is not UTF-8: {exc}")], []
    count = count_tokens(release, text)
    got, size = chunk_plan(count.tokens, g.imatrix_chunks, CHUNK_TOKENS)
    if got >= g.imatrix_chunks:
        return [], []
    about = "" if count.exact else "≈"
    has = f"{g.imatrix} has {about}{count.tokens} tokens ({count.how})"
    if got < 1 and count.exact:
        return [Problem(file, "gguf.imatrix", f"{has}: too short for one imatrix chunk (16 tokens at least)")], []
    need = g.imatrix_chunks * CHUNK_TOKENS
    return [], [f"{file}: gguf.imatrix_chunks: {has}, enough for {got} chunk{'s' if got != 1 else ''} of "
                f"{size} tokens, not the {g.imatrix_chunks} asked; give it {need} tokens of text for "
                f"{g.imatrix_chunks} chunks of {CHUNK_TOKENS}, or set imatrix_chunks = {max(got, 1)}"]
