"""`release doctor`: what the external tools look like on this machine, and installing them.

Also the one list of what a machine needs from its distribution, by set-up mode of scripts/bootstrap.sh,
which asks `python -m release.doctor --apt MODE` before the venv exists (so this module, and what it
imports, is standard library only):

    minimal   the venv: check, plan, clean, check --remote
    release   + llama.cpp's converter and quantizer (the build tools only while the wheel is not cached):
              every job of a release
    full      + a local OCI registry (`publish --local`, the tests) and a browser (the preview tests)

The package names hold for Debian 12 and Ubuntu 24.04 (docker-registry is in Ubuntu's universe, which
GitHub's hosted runners enable) except the browser's: Ubuntu ships Chromium only as a snap
(`chromium-browser` is a transitional package that installs the snap), so on Ubuntu none is installed —
the hosted runners have google-chrome, and elsewhere the preview tests find whichever of BROWSERS is there.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

Row = tuple[str, bool, str]

PINNED = {"torch": "2.13.0", "transformers": "5.23.0", "huggingface_hub": "2.4.0", "safetensors": "0.8.0"}
MODES = ("minimal", "release", "full")
# Headless browsers that take Chromium's flags, in the order they are preferred; chromium-browser last: on
# Ubuntu it may be the wrapper that asks for the snap.
BROWSERS = ("chromium", "google-chrome", "google-chrome-stable", "chromium-browser")
BROWSER_PACKAGE = {"debian": "chromium", "ubuntu": None}  # None: a snap only (see above)
REGISTRY = ("docker-registry", "docker-registry")  # program, package


def browser() -> str | None:
    """The path of a headless-capable Chromium on this machine, if there is one."""
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def os_release(path: Path = Path("/etc/os-release")) -> dict[str, str]:
    """The fields of an os-release file (empty when there is none)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def distribution(info: dict[str, str]) -> str:
    """"ubuntu", "debian" (and their derivatives, by ID_LIKE), or "" for anything else."""
    for name in [info.get("ID", ""), *info.get("ID_LIKE", "").split()]:
        if name in ("ubuntu", "debian"):
            return name
    return ""


def apt_packages(mode: str, info: dict[str, str], *, have: Callable[[str], object] = shutil.which,
                 venv_ready: bool | None = None, wheel_cached: bool | None = None) -> tuple[list[str], list[str]]:
    """(the Debian/Ubuntu packages a set-up in `mode` still needs here, notes on what it cannot install).

    `have(program)` tells whether a program is on this machine; by default the running Python's `venv`
    (Debian splits ensurepip into pythonX.Y-venv) and llama.cpp's wheel cache are looked at."""
    from .toolchain import BUILD_PACKAGES, wheel_path  # lazy: bootstrap.sh runs this module before the venv exists

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if venv_ready is None:
        venv_ready = importlib.util.find_spec("ensurepip") is not None
    if wheel_cached is None:
        wheel_cached = wheel_path().is_file()
    packages: list[str] = []
    notes: list[str] = []
    if not venv_ready:
        packages.append(f"python{sys.version_info[0]}.{sys.version_info[1]}-venv")
    if mode == "minimal":
        return packages, notes
    if not wheel_cached:
        packages += [package for program, package in BUILD_PACKAGES.items() if not have(program)]
    if mode == "full":
        program, package = REGISTRY
        if not have(program):
            packages.append(package)
        if not any(have(b) for b in BROWSERS):
            dist = distribution(info)
            choice = BROWSER_PACKAGE.get(dist)
            if choice:
                packages.append(choice)
            else:
                notes.append(f"no browser ({', '.join(BROWSERS)}) and none to install with apt on "
                             f"{info.get('PRETTY_NAME') or 'this system'}"
                             f"{' (Chromium is a snap there)' if dist == 'ubuntu' else ''}: install google-chrome "
                             "or Chromium for the preview tests, which skip without one")
    return packages, notes


def _packages() -> list[Row]:
    rows: list[Row] = []
    for name, want in PINNED.items():
        try:
            have = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, False, f"not installed (want {want})"))
            continue
        rows.append((name, have.split("+")[0] == want, have))
    return rows


def _binaries() -> list[Row]:
    registry = shutil.which(REGISTRY[0])
    found = browser()
    ollama = shutil.which("ollama")
    return [(REGISTRY[0], bool(registry), registry or "missing (local OCI registry: publish --local, the tests)"),
            # Optional: where none can be installed (Ubuntu without Chrome), the preview tests skip.
            ("browser", True, found or f"missing (optional: {' or '.join(BROWSERS)}; the preview tests skip)"),
            ("ollama", True, ollama or "missing (optional: --via-ollama-cli)")]


def run_doctor(*, install: bool = False) -> list[Row]:
    rows = _packages()
    try:
        from . import toolchain  # lazy: bootstrap.sh runs this module before the venv exists
    except ImportError:
        rows.append(("llama.cpp", False, "toolchain support not available in this version"))
    else:
        if install:
            toolchain.install()
        rows += [(c, ok, d) for c, ok, d in toolchain.doctor()]
    rows += _binaries()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m release.doctor",
                                 description="Print the Debian/Ubuntu packages a set-up still needs here "
                                             "(scripts/bootstrap.sh installs them).")
    ap.add_argument("--apt", choices=MODES, required=True, help="the set-up mode")
    ap.add_argument("--all", action="store_true",
                    help="as on a machine without the programs or the wheel cache (this Python as it is)")
    ap.add_argument("--os-release", type=Path, default=Path("/etc/os-release"), help="the distribution's os-release")
    args = ap.parse_args(argv)
    if args.all:
        packages, notes = apt_packages(args.apt, os_release(args.os_release), have=lambda _: False, wheel_cached=False)
    else:
        packages, notes = apt_packages(args.apt, os_release(args.os_release))
    for note in notes:
        print(f"bootstrap: {note}", file=sys.stderr)
    print(" ".join(packages))
    return 0


if __name__ == "__main__":
    sys.exit(main())
