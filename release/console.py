"""What the command prints, as readable in a CI log as in a terminal.

In a terminal: rich tables sized to the window and one live progress display. Without one (a pipe, a
file, a CI log): tables at the width their cells need (ids and repo names are never cut), and progress as
plain timestamped lines — one when a step starts, one every PROGRESS_STEP of it (PROGRESS_GAP_S apart at
least) or every PROGRESS_EVERY_S seconds, and one with its duration when it ends — counting bytes as bytes and items
(chunks, windows, tiers) as items.

`-q` keeps only errors and the final result; `-v` adds what was restored rather than made, and the causes
of an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console, ConsoleDimensions
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

PIPED_WIDTH = 10_000  # no cut: a CI log scrolls sideways, an id cut to `gguf-…` cannot be pasted
PROGRESS_STEP = 0.10  # of a step's total
PROGRESS_EVERY_S = 60.0
PROGRESS_GAP_S = 5.0  # a step of a few seconds says when it starts and ends, nothing between
BYTES = "bytes"

Update = Callable[[int, int], None]


class ReleaseConsole(Console):
    """A rich Console that, writing anywhere but a terminal, never cuts a line (COLUMNS still wins)."""

    @property
    def size(self) -> ConsoleDimensions:
        size = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(PIPED_WIDTH, size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


@dataclass
class Verbosity:
    """Set once by the command group: -q (quiet) or -v (verbose)."""

    quiet: bool = False
    verbose: bool = False


VERBOSITY = Verbosity()


def clock() -> str:
    return time.strftime("%H:%M:%S")


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def human_duration(seconds: float) -> str:
    """`4 min 12 s`, `1 h 03 min`, `0.4 s`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def amount(done: float, total: float | None, unit: str) -> str:
    if unit == BYTES:
        return f"{human_bytes(done)} of {human_bytes(total)}" if total else human_bytes(done)
    return f"{done:g} of {total:g} {unit}" if total else f"{done:g} {unit}"


def rate(done: float, seconds: float, unit: str) -> str:
    if seconds <= 0 or done <= 0:
        return ""
    per_s = done / seconds
    if unit == BYTES:
        return f"{human_bytes(per_s)}/s"
    return f"{per_s:.2f} {unit}/s" if per_s >= 1 else f"{seconds / done:.1f} s per {unit.rstrip('s')}"


@dataclass
class _LineTask:
    description: str
    total: int | None
    unit: str
    started: float = field(default_factory=time.monotonic)
    said_at: float = field(default_factory=time.monotonic)
    said_fraction: float = 0.0
    finished: bool = False


class LineProgress:
    """Progress as plain lines (no terminal): start, every PROGRESS_STEP or PROGRESS_EVERY_S, end."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def _say(self, text: str) -> None:
        self.console.print(f"{clock()} {text}", soft_wrap=True, highlight=False, markup=False)

    def task(self, description: str, total: int | None, unit: str = BYTES) -> Update:
        t = _LineTask(description, total, unit)
        self._say(f"{description}: started" + (f" ({amount(total, None, unit)})" if total else ""))

        def update(done: int, total_: int) -> None:
            total = total_ or t.total
            if t.finished:
                return
            now = time.monotonic()
            elapsed = now - t.started
            if total and done >= total:
                t.finished = True
                speed = rate(done, elapsed, t.unit)
                self._say(f"{t.description}: done in {human_duration(elapsed)}, {amount(done, None, t.unit)}"
                          + (f" ({speed})" if speed else ""))
                return
            fraction = done / total if total else 0.0
            quiet_for = now - t.said_at
            step_ahead = fraction >= t.said_fraction + PROGRESS_STEP and quiet_for >= PROGRESS_GAP_S
            if not step_ahead and quiet_for < PROGRESS_EVERY_S:
                return
            t.said_at, t.said_fraction = now, fraction
            speed = rate(done, elapsed, t.unit)
            eta = f", ETA {human_duration(elapsed / fraction - elapsed)}" if 0 < fraction < 1 else ""
            where = f"{fraction:.0%} of {amount(total, None, t.unit)}" if total else amount(done, None, t.unit)
            self._say(f"{t.description}: {where}" + (f", {speed}" if speed else "") + eta)

        return update


class _Amount(ProgressColumn):
    """`1.2/3.4 GB` for bytes, `3/16 chunks` for items."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit", BYTES)
        if unit == BYTES:
            done = human_bytes(task.completed)
            return Text(f"{done}/{human_bytes(task.total)}" if task.total else done, style="progress.download")
        total = f"/{task.total:g}" if task.total else ""
        return Text(f"{task.completed:g}{total} {unit}", style="progress.download")


class _Speed(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("")
        unit = task.fields.get("unit", BYTES)
        return Text(f"{human_bytes(speed)}/s" if unit == BYTES else f"{speed:.2f} {unit}/s",
                    style="progress.data.speed")


class BarProgress:
    """The terminal's live display: one bar per task, with its own unit."""

    def __init__(self, console: Console) -> None:
        self.rich = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), _Amount(),
                             _Speed(), TimeRemainingColumn(), console=console, transient=False)

    def task(self, description: str, total: int | None, unit: str = BYTES) -> Update:
        task_id = self.rich.add_task(description, total=total, unit=unit)

        def update(done: int, total_: int) -> None:
            self.rich.update(task_id, completed=done, total=total_ or None)

        return update
