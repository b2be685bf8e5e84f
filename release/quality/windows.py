"""The token windows quality is measured on, cut exactly as `llama-perplexity --kl-divergence` cuts them.

The held-out text is tokenized once (with the model's BOS). It is cut into whole windows of `context`
tokens (a shorter tail is dropped), at most `max_tokens` tokens in all. Each window is decoded from
position 0 with its first token replaced by BOS, and only its second half is scored: the logits at
positions `context//2 … context-2` predict the tokens that follow them, so every scored prediction has
at least half a window of context (llama.cpp tools/perplexity/perplexity.cpp: `first = n_ctx/2`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError


@dataclass(frozen=True)
class Windows:
    tokens: list[int]  # the text's tokens, windows × context of them, as tokenized (not BOS-replaced)
    context: int
    bos: int | None  # put in front of every window, or None when the model adds no BOS

    @property
    def count(self) -> int:
        return len(self.tokens) // self.context

    @property
    def first(self) -> int:
        """The first scored position of a window."""
        return self.context // 2

    @property
    def per_window(self) -> int:
        """Scored predictions per window."""
        return self.context - 1 - self.first

    @property
    def scored(self) -> int:
        return self.count * self.per_window

    def inputs(self, w: int) -> list[int]:
        """What window `w` decodes."""
        window = self.tokens[w * self.context:(w + 1) * self.context]
        return [self.bos, *window[1:]] if self.bos is not None else window

    def targets(self, w: int) -> list[int]:
        """The tokens the scored positions of window `w` predict."""
        start = w * self.context
        return self.tokens[start + self.first + 1:start + self.context]


def cut(tokens: list[int], *, context: int, max_tokens: int, bos: int | None, shown: str) -> Windows:
    """The windows of a tokenized text; InputError (naming the text) when it is shorter than one."""
    count = min(len(tokens), max_tokens) // context
    if count < 1:
        raise InputError(f"{len(tokens)} tokens: fewer than one window of {context} (quality.context); give a "
                         "longer held-out text or a smaller context", file=shown)
    return Windows(tokens[:count * context], context, bos)
