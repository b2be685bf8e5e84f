"""What the Hub's answers mean for a retry, and how long one asks us to wait (docs/hf-hub.md §4).

- 409 "Another commit operation is in progress for this repository. Please try again later." (one commit
  per repository at a time) and the Hub's other "… conflicting operation is in progress" 409s: busy,
  retried with backoff, bounded by time. Every other 409 ("already exists") is an answer, not a failure.
- 429: the wait comes from `RateLimit: "<bucket>";r=0;t=<seconds>` (IETF draft 9, read with the client's
  own parser; the Hub sets the header on every answer, so it counts only with r=0), `Retry-After`, and
  the commit quota's words "You can retry this action in about 1 hour" — that answer's `RateLimit`
  describes the API bucket, not the quota. Headers first, the words when no header says.
- 408, 5xx and transport failures (resets, timeouts): errors, retried with backoff a few times; never a
  full disk, here or on the Hub (507).

The longest a single call waits in all is `RELEASE_HUB_MAX_WAIT` seconds (default 15 minutes), read
here and nowhere else.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import parse_ratelimit_headers

from ..errors import InputError, Problem, disk_full, exception_chain
from .retry import Refusal

MAX_WAIT_ENV = "RELEASE_HUB_MAX_WAIT"
DEFAULT_MAX_WAIT = 15 * 60.0
ERROR_STATUS = frozenset({408, 500, 502, 503, 504})
_IN_PROGRESS = re.compile(r"(?i)\bin progress\b")
_ABOUT = re.compile(r"(?i)\bin about (\d+|an?|one) (second|minute|hour)s?\b")
_UNIT = {"second": 1, "minute": 60, "hour": 3600}


def max_wait_from_env(env: Mapping[str, str] = os.environ) -> float:
    """The ceiling on one call's total wait, in seconds."""
    text = env.get(MAX_WAIT_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_WAIT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise InputError(Problem("environment", MAX_WAIT_ENV, f"{text!r} is not a number of seconds (≥ 0)"))
    return value


def _response(exc: BaseException) -> Any:
    for e in exception_chain(exc):
        resp = getattr(e, "response", None)
        if resp is not None and getattr(resp, "status_code", None) is not None:
            return resp
    return None


def status(exc: BaseException) -> int | None:
    resp = _response(exc)
    return None if resp is None else int(resp.status_code)


def server_message(exc: BaseException) -> str:
    """The Hub's own words for a failed request (its JSON `error`), on one line."""
    for e in exception_chain(exc):
        if isinstance(e, HfHubHTTPError) and e.server_message:
            return " ".join(e.server_message.split())
    resp = _response(exc)
    if resp is None:
        return ""
    header = resp.headers.get("X-Error-Message")
    if header:
        return header
    with contextlib.suppress(Exception):
        return " ".join(str(resp.json().get("error", "")).split())
    return ""


def in_progress(exc: BaseException) -> bool:
    """A 409 that says another operation on the repo is in progress (try again), not "it exists"."""
    return status(exc) == 409 and _IN_PROGRESS.search(server_message(exc)) is not None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        with contextlib.suppress(TypeError, ValueError):
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None


def asked_wait(headers: Mapping[str, str], message: str = "") -> float | None:
    """Seconds a 429 asks us to wait: the longest its headers say, else what its words say, else None."""
    said = []
    info = parse_ratelimit_headers(headers)
    if info is not None and info.remaining == 0:
        said.append(float(info.reset_in_seconds))
    if (after := _retry_after(headers)) is not None:
        said.append(after)
    if said:
        return max(said)
    m = _ABOUT.search(message)
    if m is None:
        return None
    count = 1 if not m.group(1).isdigit() else int(m.group(1))
    return float(count * _UNIT[m.group(2).lower()])


def refusal(exc: BaseException) -> Refusal | None:
    """How to retry after `exc`, or None when retrying cannot help."""
    code = status(exc)
    if disk_full(exc) is not None or code == 507:
        return None
    for e in exception_chain(exc):
        if isinstance(e, httpx2.TransportError):
            return Refusal(f"{type(e).__name__}: {' '.join(str(e).split()) or 'connection failed'}")
    message = server_message(exc)[:300]
    said = f"{code} from the Hub" + (f": {message!r}" if message else "")
    if code == 409 and in_progress(exc):
        return Refusal(said, counted=False)
    resp = _response(exc)
    if code == 429:
        headers = resp.headers
        shown = [f"{name} {headers[name]}" for name in ("RateLimit", "Retry-After") if headers.get(name)]
        return Refusal(said + (f" ({', '.join(shown)})" if shown else ""), counted=False,
                       asked=asked_wait(headers, message))
    if code in ERROR_STATUS:
        return Refusal(said, asked=_retry_after(resp.headers))
    return None


def is_transient(exc: BaseException) -> bool:
    return refusal(exc) is not None
