"""Exception classes shared by every part of the tool.

The command line maps them to exit statuses: InputError → 2 (bad input or usage, nothing written,
no remote call), every other ReleaseError → 1 (a failure while working: network, verify, build).
"""

from __future__ import annotations

from collections.abc import Iterable
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
