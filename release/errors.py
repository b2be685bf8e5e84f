"""Exception classes shared by every part of the tool.

The command line maps them to exit statuses: InputError → 2 (bad input or usage, nothing written,
no remote call), every other ReleaseError → 1 (a failure while working: network, verify, build).
"""

from __future__ import annotations

import errno
from collections.abc import Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with one field of one input file."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        return f"{where}: {self.message}"


class ReleaseError(Exception):
    """Base class; the exit status of the command that raised it."""

    exit_code = 1


class InputError(ReleaseError):
    """Bad input: every problem found in the inputs, each naming its file and field."""

    exit_code = 2

    def __init__(self, problems: Iterable[Problem] | Problem | str, *, file: str = "", field: str = ""):
        if isinstance(problems, str):
            problems = [Problem(file, field, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class WorkError(ReleaseError):
    """A failure while working (network, build tool, verification)."""

    exit_code = 1


class VerifyError(WorkError):
    """An artifact failed a verification gate; nothing is published."""


class RemoteError(WorkError):
    """A remote (Hub, registry) refused or diverged from what was planned."""


class NotAvailable(ReleaseError):
    """A step whose builder or publisher is not available (not written, or a tool not installed)."""

    exit_code = 1


class ProblemCollector:
    """Collects problems so a file's errors are reported all at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, file: str, field: str, message: str) -> None:
        self.problems.append(Problem(file, field, message))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    def __bool__(self) -> bool:
        return bool(self.problems)

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputError(self.problems)


class Terminated(BaseException):
    """SIGTERM (or SIGHUP) arrived: unwind like Ctrl-C, so partial outputs are cleaned and children stop."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signal = signal.Signals(signum).name
        super().__init__(self.signal)


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def describe(exc: BaseException, depth: int = 3) -> str:
    """One line for an exception and what caused it: `Type: text <- Cause: text`."""
    parts: list[str] = []
    said: set[str] = set()
    for e in exception_chain(exc):
        text = " ".join(str(e).split())
        if text and text in said:
            continue  # a wrapper repeating its cause says nothing new
        said.add(text)
        parts.append(f"{type(e).__name__}: {text}" if text else type(e).__name__)
        if len(parts) == depth:
            break
    return " <- ".join(parts)


def disk_full(exc: BaseException) -> OSError | None:
    """The ENOSPC/EDQUOT error somewhere in the chain, if any (never worth a retry)."""
    for e in exception_chain(exc):
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return e
    return None


def network_failure(exc: BaseException) -> BaseException | None:
    """A transport failure somewhere in the chain (refused, reset, timed out, name not resolved)."""
    for e in exception_chain(exc):
        mod = type(e).__module__
        if isinstance(e, (ConnectionError, TimeoutError)) or (mod.startswith(("httpx", "httpcore")) and \
                "Error" in type(e).__name__):
            return e
    return None
