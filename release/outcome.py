"""How a command ends when it fails: the JSON error object `--json` prints on stdout, and the command
that resumes an interrupted run.

    {"error": {"message": "…", "exit_code": 2, "problems": [{"file": …, "field": …, "message": …}]}}

Exit status: 0 success, 1 a failure while working (network, build, verify), 2 bad input or usage (nothing
written, no remote call), 130 interrupted (Ctrl-C), 143 terminated (SIGTERM or SIGHUP: a cancelled CI job).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable, Sequence
from typing import Any

import click

from .errors import Problem

EXIT_STATUS = ("Exit status: 0 success; 1 a failure while working (network, build, verify); 2 bad input or "
               "usage (nothing written, no remote call); 130 interrupted (Ctrl-C); 143 terminated (SIGTERM, "
               "SIGHUP). An interrupted or terminated run resumes when run again.")

# Options that redo work on purpose: a resumed run leaves them out, or it would redo what was redone.
_REDO_FLAGS = {"--force"}
_REDO_OPTIONS = {"--from"}


def error_object(message: str, exit_code: int, problems: Iterable[Problem] = ()) -> dict[str, Any]:
    return {"error": {"message": message, "exit_code": exit_code,
                      "problems": [{"file": p.file, "field": p.field, "message": p.message} for p in problems]}}


def resume_command(argv: Sequence[str]) -> str:
    """The command line that resumes `release ARGV` after an interruption: the same, without --force and
    --from (what they redid is recorded; the rest is still to do)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _REDO_FLAGS or any(arg.startswith(o + "=") for o in _REDO_OPTIONS):
            continue
        if arg in _REDO_OPTIONS:
            skip = True
            continue
        kept.append(arg)
    return shlex.join(["release", *kept])


class ReleaseCommand(click.Command):
    """A command whose usage errors (a bad option value, a missing argument) also answer --json."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        wants_json = "--json" in args
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as exc:
            if wants_json:
                click.echo(json.dumps(error_object(exc.format_message(), exc.exit_code)))
            raise


class ReleaseGroup(click.Group):
    command_class = ReleaseCommand
    group_class = type  # subgroups (`scores`) are release groups too
