"""Tables of what a publish would do, file by file, and of what is published where (`release status`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from .console import human_bytes

if TYPE_CHECKING:
    from .status import StatusReport


def print_files(out: Console, destinations: list[tuple[str, list[dict[str, Any]]]]) -> None:
    """A dry run's file list: every file of every destination and what a publish would do with it."""
    if not any(files for _, files in destinations):
        return
    order = {"upload": 0, "copy": 1, "delete": 2, "unchanged": 3, "keep": 4}
    table = Table(title="files")
    for col in ("destination", "path", "size", "action"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for where, files in destinations:
        for f in sorted(files, key=lambda f: (order.get(f["action"], 9), f["path"])):
            table.add_row(where, f["path"], human_bytes(f["size"]), f["action"])
    out.print(table)


def print_status(out: Console, report: StatusReport) -> None:
    table = Table(title=f"release {report.release} on {report.hub}")
    for col in ("repo", "head", "files", "size", "matches what is built here", "staging branches"):
        table.add_column(col)
    for r in report.repos:
        match = "—" if r.matches is None else "yes" if r.matches else \
            f"no: {len(r.differing)} to send" + (f", {len(r.extra)} not ours" if r.extra else "")
        table.add_row(r.repo, r.head[:12] if r.head else "(none)", str(r.files) if r.exists else "",
                      human_bytes(r.bytes) if r.exists else "", match, ", ".join(r.staging) or "")
    out.print(table)
    if report.tags:
        tags = Table(title=f"Ollama tags on {report.registry}")
        for col in ("tag", "digest there", "built here", "matches"):
            tags.add_column(col)
        for t in report.tags:
            tags.add_row(t.ref, t.digest[7:19] if t.digest else "(none)", t.built[7:19] if t.built else "—",
                         "—" if t.matches is None else "yes" if t.matches else "no")
        out.print(tags)
    if report.to_build:
        out.print(f"next: build {', '.join(report.to_build)}", soft_wrap=True)
    if report.next:
        print_files(out, [(d["destination"], d["files"]) for d in report.next])
    if report.in_sync:
        out.print("[green]✓[/] in sync: every destination holds what is built here; a publish would send nothing")
