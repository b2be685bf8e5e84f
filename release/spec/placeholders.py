"""Placeholders: inputs that stand in for the real thing until someone replaces them. What counts as one is
decided here and nowhere else:

- a value of release.toml whose line carries a `# PLACEHOLDER` comment
  (`revision = "4b1f…"  # PLACEHOLDER: the commit you pruned from`);
- the all-zero base revision pin (`revision = "000…0"`), unless the base is generated (the demo's: there is
  no commit to pin);
- a text file the definition names — the held-out text, the imatrix calibration text, a calibration class
  file of [dropmap] — whose first line starts with `# PLACEHOLDER`;
- a drop map whose `source` or `notes` starts with `PLACEHOLDER`.

`release check` (and build, plan, `publish --dry-run`, `publish --local`) warn about each; a real publish
(`--job` and `--finish` included) refuses before any work, naming every one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError, Problem
from ..gguf.checks import imatrix_is_calibration

if TYPE_CHECKING:
    from .load import Release

MARKER = "PLACEHOLDER"
_TOML_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.\-\"' ]+?)\s*\]\]?\s*(?:#.*)?$")
_TOML_KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+)\s*=")
_TOML_MARK = re.compile(rf"#\s*{MARKER}\b")
_UNPINNED = re.compile(r"^0+$")


def find_placeholders(release: Release) -> list[Problem]:
    """Every placeholder of the release (file, field, what to replace). A field whose file is marked and
    whose line is marked too is named once, for its file."""
    d = release.definition
    definition = release.display("release.toml")
    found: list[Problem] = []
    for field, rel in _text_files(release):
        if _first_line_marked(release.path(rel)):
            found.append(Problem(definition, field, f"{rel} starts with a # {MARKER} line: replace it with the "
                                                    "real text"))
    files = {p.field for p in found}
    found += [Problem(definition, field, f"marked # {MARKER}: replace the value (and the mark) with the real one")
              for field in _marked_toml_fields(release.dir / "release.toml") if field not in files]
    if _UNPINNED.match(d.base.revision) and not d.base.generator and \
            "base.revision" not in {p.field for p in found}:
        found.append(Problem(definition, "base.revision", f"the all-zero pin is a placeholder: pin the commit of "
                                                          f"{d.base.repo} you pruned from"))
    dm = release.drop_map
    marked = next((key for key, text in (("source", dm.source), ("notes", dm.notes))
                   if text.lstrip().startswith(MARKER)), None)
    if marked:
        found.append(Problem(dm.file, marked, f"the drop map is marked {MARKER}: replace it with the real map"))
    return found


def placeholder_warnings(release: Release) -> list[str]:
    return [f"{p}; `release publish` refuses placeholders" for p in find_placeholders(release)]


def refuse_placeholders(release: Release) -> None:
    """InputError naming every placeholder, for a publish to the real destinations."""
    found = find_placeholders(release)
    if found:
        raise InputError([Problem(p.file, p.field, f"{p.message} (a placeholder is refused by a publish; "
                                                   "--dry-run and --local rehearse with it)") for p in found])


def _marked_toml_fields(path: Path) -> list[str]:
    """`table.key` of every release.toml line with a # PLACEHOLDER comment (a key on a line of its own)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []  # load_release has read it already; nothing to add here
    fields: list[str] = []
    table = ""
    for line in lines:
        header = _TOML_TABLE.match(line)
        if header:
            table = re.sub(r"[\"'\s]", "", header.group(1))
            continue
        key = _TOML_KEY.match(line)
        if key and _TOML_MARK.search(line):
            fields.append(f"{table}.{key.group(1)}" if table else key.group(1))
    return fields


def _text_files(release: Release) -> list[tuple[str, str]]:
    """(field, path in the release folder) of the text files the definition names."""
    d = release.definition
    files: list[tuple[str, str]] = []
    if release.quality is not None:
        files.append(("quality.text", release.quality.text))
    if d.gguf is not None and d.gguf.imatrix and imatrix_is_calibration(d.gguf.imatrix):
        files.append(("gguf.imatrix", d.gguf.imatrix))
    if d.dropmap is not None:
        folder = release.path(d.dropmap.calibration)
        if folder.is_dir():
            files += [("dropmap.calibration", f"{d.dropmap.calibration}/{f.name}") for f in sorted(folder.iterdir())
                      if f.suffix == ".txt" and f.is_file()]
    return files


def _first_line_marked(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline(4096)
    except OSError:
        return False
    return first.lstrip("\ufeff").startswith(f"# {MARKER}")
