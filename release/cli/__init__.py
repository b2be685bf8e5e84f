"""The `release` command line: thin click commands over the engine (release/engine.py,
release/publishing.py), a module per command group. A command parses its options, calls one engine
function and prints what it returns.

Exit status: 0 success, 1 a failure while working (network, verify, build), 2 bad input or usage.
"""

from __future__ import annotations

import signal
from types import FrameType

import click

from .. import __version__
from ..console import VERBOSITY
from ..errors import Terminated
from ..outcome import EXIT_STATUS, ReleaseGroup
from .build import build
from .cards import cards, preview
from .check import check
from .common import err
from .plan import plan
from .publish import canary, clean, publish, status
from .scores import scores
from .tools import doctor, dropmap, init, prune


@click.group(cls=ReleaseGroup, context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_STATUS)
@click.version_option(__version__, "-V", "--version", prog_name="release")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final result.")
@click.option("-v", "--verbose", is_flag=True,
              help="More detail: what was restored rather than made, and the causes of an error.")
def cli(quiet: bool, verbose: bool) -> None:
    """Turn an expert-pruned MoE checkpoint into a complete, consistent public release.

    NAME is a folder under pipelines/ (e.g. `v4`, `demo`) or a path to a pipeline folder. Shell
    completion of names and --only values: eval "$(_RELEASE_COMPLETE=bash_source release)" (zsh_source,
    fish_source for those shells).
    """
    if quiet and verbose:
        raise click.UsageError("-q and -v ask for opposite things; give one")
    VERBOSITY.quiet, VERBOSITY.verbose = quiet, verbose
    err.quiet = quiet


for command in (check, plan, build, publish, clean, canary, cards, preview, scores, prune, dropmap, status, init,
                doctor):
    cli.add_command(command)


def _with_exit_statuses(group: click.Group) -> None:
    """Every command's --help ends with the exit statuses."""
    for command in group.commands.values():
        command.epilog = command.epilog or EXIT_STATUS
        if isinstance(command, click.Group):
            _with_exit_statuses(command)


_with_exit_statuses(cli)


def main() -> None:
    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise Terminated(signum)

    # SIGTERM (CI cancelling a job, `kill`) unwinds like Ctrl-C: partial outputs are removed by the
    # usual cleanup, child processes stop with us, and the run ends with one line.
    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGHUP, terminate)
    cli(prog_name="release")


__all__ = ["cli", "main"]
