"""Keep secrets out of every message a publisher prints, logs, stores or raises.

Two kinds of secret: the ones this run holds (`Redactor`: HF_TOKEN, Ollama keys, masked wherever they
appear), and the ones a file brought in (`redact_args`: an lm-evaluation-harness run's `model_args`,
whose credentials this run never saw — masked by the name of their key and by the look of known token
formats).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")
# Token formats whose look alone gives them away: Hugging Face, OpenAI/Anthropic, GitHub, GitLab, Slack,
# AWS access key ids, Google API keys.
_TOKEN_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?:hf_[A-Za-z0-9]{16,}|sk-[A-Za-z0-9_-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|glpat-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35})")
# A key holds a credential when one of its words is one of these ("use_auth_token", "openai_api_key",
# "apiKey", "HF_TOKEN"), unless a word says it is about a model's special tokens or a count
# ("add_bos_token", "max_tokens" has no word "token" at all).
_CREDENTIAL_WORDS = frozenset({"token", "key", "apikey", "secret", "secrets", "password", "passwd", "pwd",
                               "passphrase", "auth", "authorization", "credential", "credentials", "cookie",
                               "bearer"})
_NOT_A_CREDENTIAL = frozenset({"bos", "eos", "pad", "unk", "sep", "cls", "mask", "special", "max", "min", "num",
                               "gen", "stop", "chat"})
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
# `k=v,k=v` as lm-eval's --model_args takes them; a value runs to the next comma.
_KEY_VALUE = re.compile(r"(?P<lead>(?:^|,)\s*)(?P<key>[^=,\s]+)(?P<eq>\s*=\s*)(?P<value>[^,]*)")


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


def is_credential_key(key: str) -> bool:
    """Whether a setting named `key` holds a credential, whatever its value looks like."""
    words = {w.lower() for w in _WORD.findall(key)}
    return bool(words & _CREDENTIAL_WORDS) and not words & _NOT_A_CREDENTIAL


def mask_token_values(text: str) -> str:
    """`text` with every value that looks like a known token format (hf_…, sk-…, ghp_… …) or follows
    "Bearer " masked."""
    return _BEARER.sub(lambda m: m.group(1) + MASK, _TOKEN_VALUE.sub(MASK, text))


def redact_args(args: Any) -> Any:
    """Model arguments from a file with their credentials masked: in an object (nested too) the value of
    every credential-looking key, in `k=v,k=v` text every such key's value (a JSON object in text is
    read as an object), and anywhere a value in a known token format."""
    if isinstance(args, dict):
        return {k: MASK if is_credential_key(str(k)) and args[k] not in (None, "") else redact_args(args[k])
                for k in args}
    if isinstance(args, list):
        return [redact_args(v) for v in args]
    if not isinstance(args, str):
        return args
    if args.lstrip().startswith("{"):
        try:
            parsed = json.loads(args)
        except (ValueError, RecursionError):
            parsed = None
        if isinstance(parsed, dict):
            return json.dumps(redact_args(parsed), sort_keys=True)
    masked = _KEY_VALUE.sub(lambda m: m.group("lead") + m.group("key") + m.group("eq")
                            + (MASK if is_credential_key(m.group("key")) and m.group("value") else m.group("value")),
                            args)
    return mask_token_values(masked)
