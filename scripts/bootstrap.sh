#!/usr/bin/env bash
# Set up a machine for moe-release (Debian 12 or Ubuntu 24.04): the distribution's packages, a venv with
# pinned packages, and llama.cpp's converter and quantizer built from the pinned llama-cpp-python sdist
# (cached). Idempotent: a second run only checks.
#
# Usage: scripts/bootstrap.sh [--release | --minimal] [--print-packages]
#   (none)      everything: also a local OCI registry (publish --local) and a browser, and the test tools
#   --release   what a release job needs: the runtime and GGUF packages, llama.cpp's tools (the build
#               tools only while the wheel is not cached); no registry, browser or test tools
#   --minimal   only the venv with the runtime packages (check, plan, clean)
#   --print-packages   print what this mode installs on a machine without it (apt: …, pip: …); change nothing
# Environment: PYTHON (a Python 3.11; default python3.11), TORCH_INDEX_URL (an extra index for torch).
# Which distribution packages each mode needs is decided in one place, release/doctor.py.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=full PRINT=0
for arg in "$@"; do
  case "$arg" in
    --release) MODE=release ;;
    --minimal) MODE=minimal ;;
    --print-packages) PRINT=1 ;;
    *) echo "bootstrap: unknown option $arg (usage: scripts/bootstrap.sh [--release | --minimal] [--print-packages])" >&2
       exit 2 ;;
  esac
done
case "$MODE" in
  full) EXTRAS="[gguf,test]" ;;
  release) EXTRAS="[gguf]" ;;
  minimal) EXTRAS="" ;;
esac

PY=${PYTHON:-python3.11}
[ -n "${PYTHON:-}" ] || command -v "$PY" >/dev/null || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
  echo "bootstrap: moe-release needs Python 3.11; $PY is $("$PY" -V 2>&1 || echo missing) (Debian 12:" \
       "apt-get install python3.11; Ubuntu 24.04: actions/setup-python or the deadsnakes PPA; or set PYTHON=)" >&2
  exit 2
fi

# release.doctor is standard library only: it runs before the venv exists.
if [ "$PRINT" = 1 ]; then
  echo "apt: $("$PY" -m release.doctor --apt "$MODE" --all)"
  echo "pip: -e .$EXTRAS"
  exit 0
fi
read -r -a missing <<< "$("$PY" -m release.doctor --apt "$MODE")"
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "bootstrap: install these packages (no apt-get here): ${missing[*]}" >&2
    exit 1
  fi
  echo "bootstrap: installing packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch is pinned; PyPI's Linux torch is the CUDA build (GBs of nvidia wheels): a machine without a GPU
# sets TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (the release-job action does) for the CPU one.
PIP=(-q --disable-pip-version-check)
[ -z "${TORCH_INDEX_URL:-}" ] || PIP+=(--extra-index-url "$TORCH_INDEX_URL")
.venv/bin/python -m pip install "${PIP[@]}" -e ".$EXTRAS"
case "$MODE" in
  minimal) exit 0 ;;
  release) .venv/bin/python -m release.toolchain --install ;;
  full) .venv/bin/release doctor --install ;;
esac
echo "bootstrap: ready — activate with: . .venv/bin/activate"
