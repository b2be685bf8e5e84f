"""What every command of the CLI shares: the consoles, the error handler that maps every ending to one
line and the contract's exit status, option types, and the kind choices of --only and --from."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from .. import kinds
from ..completion import complete_only
from ..console import VERBOSITY, ReleaseConsole
from ..errors import InputError, Problem, ReleaseError, Terminated, describe, disk_full, network_failure
from ..outcome import error_object, resume_command

err = ReleaseConsole(stderr=True, highlight=False)  # what the run says (silent with -q)
out = ReleaseConsole(highlight=False)  # the result
errors = ReleaseConsole(stderr=True, highlight=False)  # errors: even with -q



class KindsHelpOption(click.Option):
    """An option whose help lists the kinds as `FLOW` holds them when the help is shown, so a kind added to
    the flow is offered with no edit here."""

    def __init__(self, *args: Any, help_of: Callable[[], str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help_of = help_of

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        self.help = self.help_of()
        return super().get_help_record(ctx)


class KindChoice(click.Choice):
    """`--from`'s choices, read from `FLOW` when a value is checked or help is shown."""

    def __init__(self) -> None:
        super().__init__([])

    @property  # type: ignore[override]
    def choices(self) -> list[str]:
        return kinds.from_choices()

    @choices.setter
    def choices(self, _value: object) -> None:
        pass


def only_option(verb: str, extra: str = "") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`--only KIND[:ID]`, repeatable; its help lists the kinds of the flow."""
    def help_of() -> str:
        return kinds.only_help(verb).replace("; e.g.", f"{extra}; e.g.") if extra else kinds.only_help(verb)

    return click.option("--only", "only", multiple=True, metavar="KIND[:ID]", shell_complete=complete_only,
                        cls=KindsHelpOption, help_of=help_of)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map every way a command can end to one clear line and the contract's exit status: our own
    errors, a full disk, a network failure, Ctrl-C and SIGTERM (never a traceback for those). With --json
    the error is also a JSON object on stdout (release/outcome.py)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))

        def fail(code: int, lines: list[str], problems: list[Problem] | None = None,
                 cause: BaseException | None = None) -> None:
            for line in lines:  # `error: …`; a stop says how it stopped (`interrupted …`, `terminated …`)
                errors.print(("[bold red]error:[/] " if code in (1, 2) else "") + escape(line), soft_wrap=True)
            if cause is not None and VERBOSITY.verbose:
                errors.print(f"cause: {escape(describe(cause))}", soft_wrap=True)
            if as_json:
                click.echo(json.dumps(error_object("\n".join(lines), code, problems or [])))
            sys.exit(code)

        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            fail(exc.exit_code, [str(p) for p in exc.problems], exc.problems, exc)
        except ReleaseError as exc:
            full = disk_full(exc)
            fail(exc.exit_code, [str(exc) + (f" (no space left on device{_on(full)})"
                                             if full and "space" not in str(exc) else "")], cause=exc)
        except KeyboardInterrupt:
            fail(130, [f"interrupted (Ctrl-C); run `{resume_command(sys.argv[1:])}` to resume"])
        except Terminated as exc:
            fail(143, [f"terminated ({exc.signal}); run `{resume_command(sys.argv[1:])}` to resume"])
        except Exception as exc:
            full, net = disk_full(exc), network_failure(exc)
            if full is not None:
                fail(1, [f"no space left on device{_on(full)}; free some and run the same command again"], cause=exc)
            if net is not None:
                fail(1, [f"network failure: {describe(exc)}"], cause=exc)
            raise

    return wrapper


def _on(exc: OSError | None) -> str:
    return f" writing {exc.filename}" if exc is not None and exc.filename else ""


class FiniteFloat(click.ParamType):
    """A finite number in (low, high]: click's FloatRange lets nan and inf through."""

    name = "number"

    def __init__(self, low: float, high: float, unit: str = "") -> None:
        self.low, self.high, self.unit = low, high, unit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.low < number <= self.high:
            self.fail(f"{value!r} is not a finite number in ({self.low:g}, {self.high:g}]{self.unit}", param, ctx)
        return number


MEMORY_GB = FiniteFloat(0, 1e6, " GB")
JOBS = click.IntRange(1, 1024)


def dist_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--dist", "dist", type=click.Path(file_okay=False, path_type=Path),
                        default=Path("dist"), show_default=True,
                        help="Output root; a release's outputs live in DIST/<name>/.")(fn)


def hub_endpoint_option(help_text: str = "Hub URL (default: HF_ENDPOINT or the Hub).") -> Callable[
        [Callable[..., Any]], Callable[..., Any]]:
    return click.option("--hub-endpoint", envvar="HF_ENDPOINT", default=None, help=help_text)


def from_option(help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option("--from", "from_kind", type=KindChoice(), default=None, help=help_text)


def fmt_size(size: int | None, estimated: bool) -> str:
    if not size:
        return "—"
    approx = "≈" if estimated else ""
    if size >= 1e9:
        return f"{approx}{size / 1e9:.2f} GB"
    return f"{approx}{size / 1e6:.1f} MB" if size >= 1e5 else f"{approx}{size / 1e3:.1f} KB"


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)
