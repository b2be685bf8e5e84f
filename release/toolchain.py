"""llama.cpp for the GGUF builder: the quantizer (libllama from llama-cpp-python) and the converter.

Both come from one pinned PyPI sdist, llama-cpp-python 0.3.36 (llama.cpp 0c1e570), so converter,
gguf-py and libllama always agree (docs/gguf.md G9):

- the quantizer: the sdist built into a wheel with portable flags (GGML_NATIVE=OFF: a native build
  picks AMX repacking, which segfaults on VMs that don't grant tile state, G1), cached in
  `<cache>/wheels/` so a second machine or CI run skips the ~5 min compile;
- the converter: `vendor/llama.cpp/{convert_hf_to_gguf.py, conversion/, gguf-py/}` unpacked from the same
  sdist into `<cache>/llama.cpp-0.3.36/` and always run with its own gguf-py (PyPI gguf is older, G3).

`<cache>` is `$MOE_RELEASE_CACHE`, else `~/.cache/moe-release`. Install: `python -m release.toolchain
--install` (idempotent: a finished install is detected in well under a second).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import NotAvailable, WorkError
from .fsutil import sha256_file

LLAMA_CPP_PYTHON = "0.3.36"
LLAMA_CPP_COMMIT = "0c1e570"
SDIST_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
WHEEL_NAME = f"llama_cpp_python-{LLAMA_CPP_PYTHON}-py3-none-linux_x86_64.whl"
# Runtime dependency of llama_cpp's high-level module that the wheel (installed --no-deps) lacks.
RUNTIME_PINS = ("diskcache==5.6.3",)
CMAKE_ARGS = ("-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF "
              "-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF")
# Programs that build the wheel, and the Debian/Ubuntu package of each (same names in Debian 12 and Ubuntu 24.04).
BUILD_PACKAGES = {"cmake": "cmake", "ninja": "ninja-build", "g++": "g++"}
BUILD_TOOLS = tuple(BUILD_PACKAGES)
CONVERTER_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
INSTALL_COMMAND = f"{Path(sys.executable).name} -m release.toolchain --install"

Row = tuple[str, bool, str]


def cache_dir() -> Path:
    return Path(os.environ.get("MOE_RELEASE_CACHE") or Path.home() / ".cache" / "moe-release")


def sdist_path() -> Path:
    return cache_dir() / "sdist" / SDIST_NAME


def wheel_path() -> Path:
    return cache_dir() / "wheels" / WHEEL_NAME


def converter_dir() -> Path:
    return cache_dir() / f"llama.cpp-{LLAMA_CPP_PYTHON}"


def converter_script() -> Path:
    return converter_dir() / "convert_hf_to_gguf.py"


@dataclass(frozen=True)
class Toolchain:
    """What the GGUF builder runs: the converter (with the Python that runs it) and libllama's version."""

    python: str
    converter: Path
    gguf_py: Path
    llama_cpp_version: str
    commit: str = LLAMA_CPP_COMMIT

    def converter_env(self) -> dict[str, str]:
        """Environment for the converter: its own gguf-py first, never PyPI gguf (G3)."""
        env = dict(os.environ)
        env.pop("NO_LOCAL_GGUF", None)
        env["PYTHONPATH"] = os.pathsep.join([str(self.gguf_py), *filter(None, [env.get("PYTHONPATH")])])
        return env


# -- state -------------------------------------------------------------------------------------------

def installed_llama_cpp_version() -> str | None:
    try:
        return importlib.metadata.version("llama_cpp_python")
    except importlib.metadata.PackageNotFoundError:
        return None


def _converter_complete() -> bool:
    return (converter_dir() / ".complete").is_file() and converter_script().is_file()


def _system_info() -> str:
    """libllama's CPU feature line, read in a child so a broken library cannot take this process down."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error: {exc}"
    return out.stdout.strip() if out.returncode == 0 else f"error: {(out.stderr or '').strip()[-300:]}"


def doctor() -> list[Row]:
    """(component, ok, detail) rows for `release doctor`."""
    rows: list[Row] = []
    have = installed_llama_cpp_version()
    if have is None:
        rows.append(("llama-cpp-python", False, f"not installed; run: {INSTALL_COMMAND}"))
    elif have != LLAMA_CPP_PYTHON:
        rows.append(("llama-cpp-python", False, f"{have} installed, need {LLAMA_CPP_PYTHON}; run: {INSTALL_COMMAND}"))
    else:
        info = _system_info()
        if info.startswith("error"):
            rows.append(("llama-cpp-python", False, f"{have} does not load: {info}"))
        elif "AMX" in info:
            rows.append(("llama-cpp-python", False, f"{have} is a native build with AMX (segfaults on VMs, G1); "
                                                    f"reinstall portable: {INSTALL_COMMAND}"))
        else:
            rows.append(("llama-cpp-python", True, f"{have} (llama.cpp {LLAMA_CPP_COMMIT}, portable)"))
    if _converter_complete():
        rows.append(("llama.cpp converter", True, str(converter_script())))
    else:
        rows.append(("llama.cpp converter", False, f"missing in {converter_dir()}; run: {INSTALL_COMMAND}"))
    cached = wheel_path().is_file()
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    if cached:
        rows.append(("llama.cpp wheel cache", True, str(wheel_path())))
    else:
        rows.append(("llama.cpp build tools", not missing,
                     "cmake, ninja, g++ present" if not missing else
                     f"missing {', '.join(missing)} (apt-get install {' '.join(BUILD_PACKAGES[t] for t in missing)}), "
                     "needed to build the wheel"))
    return rows


def ensure_toolchain() -> Toolchain:
    """The installed toolchain, or NotAvailable naming the install command."""
    have = installed_llama_cpp_version()
    problems = []
    if have != LLAMA_CPP_PYTHON:
        problems.append(f"llama-cpp-python {LLAMA_CPP_PYTHON} is not installed" +
                        (f" ({have} is)" if have else ""))
    if not _converter_complete():
        problems.append(f"llama.cpp's converter is not unpacked in {converter_dir()}")
    if problems:
        raise NotAvailable("; ".join(problems) + f". Install with: {INSTALL_COMMAND}")
    return Toolchain(python=sys.executable, converter=converter_script(), gguf_py=converter_dir() / "gguf-py",
                     llama_cpp_version=LLAMA_CPP_PYTHON)


# -- install -----------------------------------------------------------------------------------------

def _run(cmd: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> None:
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    if log is None:
        rc = subprocess.run(cmd, env=env).returncode
    else:
        with open(log, "wb") as fh:
            rc = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = log.read_text(errors="replace")[-3000:] if log else ""
        raise WorkError(f"command failed (exit {rc}): {' '.join(cmd)}\n{tail}")


def _pip(*args: str, env: dict[str, str] | None = None, log: Path | None = None) -> None:
    _run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args], env=env, log=log)


def fetch_sdist() -> Path:
    """The pinned sdist in the cache, downloaded with pip if absent; its sha256 is checked."""
    path = sdist_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            _pip("download", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
                 "-d", tmp)
            os.replace(Path(tmp) / SDIST_NAME, path)
    digest = sha256_file(path)
    if digest != SDIST_SHA256:
        raise WorkError(f"{path}: sha256 {digest} differs from the pinned {SDIST_SHA256}; delete it and retry")
    return path


def build_wheel(sdist: Path) -> Path:
    """Build the portable wheel into the cache (needs cmake, ninja, g++)."""
    out = wheel_path()
    if out.is_file():
        return out
    missing = [t for t in BUILD_TOOLS if shutil.which(t) is None]
    if missing:
        raise NotAvailable(f"building llama-cpp-python needs {', '.join(missing)}: "
                           f"apt-get install {' '.join(BUILD_PACKAGES[t] for t in missing)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, CMAKE_ARGS=CMAKE_ARGS,
               CMAKE_BUILD_PARALLEL_LEVEL=os.environ.get("CMAKE_BUILD_PARALLEL_LEVEL", str(os.cpu_count() or 2)))
    log = out.parent / "build.log"
    print(f"toolchain: building {WHEEL_NAME} (portable, ~5 min on 2 cores; log {log})", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        # pip's backend needs network for scikit-build-core only on the first build (PyPI).
        _pip("wheel", "--no-deps", "-w", tmp, str(sdist), env=env, log=log)
        os.replace(Path(tmp) / WHEEL_NAME, out)
    return out


def unpack_converter(sdist: Path) -> Path:
    """Unpack the converter, its `conversion/` package and gguf-py from the sdist into the cache."""
    dest = converter_dir()
    if _converter_complete():
        return dest
    prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with tarfile.open(sdist, "r:gz") as tf:
            members = []
            for m in tf.getmembers():
                if not m.name.startswith(prefix):
                    continue
                rel = m.name[len(prefix):]
                if any(rel == c or (c.endswith("/") and rel.startswith(c)) for c in CONVERTER_MEMBERS):
                    m.name = rel
                    members.append(m)
            tf.extractall(tmp, members=members, filter="data")
        if not (tmp / "convert_hf_to_gguf.py").is_file():
            raise WorkError(f"{sdist} has no vendor/llama.cpp/convert_hf_to_gguf.py")
        (tmp / ".complete").write_text(f"llama-cpp-python {LLAMA_CPP_PYTHON} llama.cpp {LLAMA_CPP_COMMIT}\n")
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return dest


def install(*, force: bool = False) -> None:
    """Install the quantizer and the converter; returns at once when both are in place."""
    if force:
        with contextlib.suppress(FileNotFoundError):
            os.remove(wheel_path())
        shutil.rmtree(converter_dir(), ignore_errors=True)
    need_wheel = force or installed_llama_cpp_version() != LLAMA_CPP_PYTHON
    if not need_wheel and importlib.util.find_spec("diskcache") is None:
        _pip("install", *RUNTIME_PINS)  # a wheel installed by hand with --no-deps does not import without it
    if not need_wheel and _converter_complete():
        return
    sdist = fetch_sdist()
    if need_wheel:
        wheel = build_wheel(sdist)
        _pip("install", "--no-deps", "--force-reinstall", str(wheel))
        _pip("install", *RUNTIME_PINS)
    unpack_converter(sdist)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m release.toolchain", description=__doc__.split("\n")[0])
    ap.add_argument("--install", action="store_true", help="install llama.cpp's quantizer and converter (cached)")
    ap.add_argument("--force", action="store_true", help="rebuild the wheel and unpack the converter again")
    args = ap.parse_args(argv)
    if args.install or args.force:
        install(force=args.force)
    ok = True
    for component, good, detail in doctor():
        ok &= good
        print(f"{'ok ' if good else 'BAD'} {component}: {detail}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
