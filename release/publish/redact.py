"""Keep secrets out of every message a publisher prints, logs, stores or raises."""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")


class Redactor:
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first so a secret containing another is masked whole.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str | None) -> None:
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets = sorted([*self._secrets, secret], key=len, reverse=True)

    def __call__(self, text: object) -> str:
        out = str(text)
        for s in self._secrets:
            out = out.replace(s, MASK)
        return _BEARER.sub(lambda m: m.group(1) + MASK, out)
