#!/usr/bin/env bash
# Set up a fresh machine for moe-release: Debian packages, a venv with pinned packages, and
# llama.cpp's converter and quantizer built from the pinned llama-cpp-python sdist (cached).
# Idempotent: a second run only checks.
# Usage: scripts/bootstrap.sh [--minimal]   (--minimal: only the venv; enough for check/plan/publish)
set -euo pipefail
cd "$(dirname "$0")/.."
MINIMAL=0; [ "${1:-}" = "--minimal" ] && MINIMAL=1

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

# Debian packages: build tools for llama.cpp, a real OCI registry for Ollama tests, Chromium for
# the preview test.
DEBS=(cmake ninja-build g++ docker-registry chromium)
if [ "$MINIMAL" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  for p in "${DEBS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

[ -x .venv/bin/python ] || "$PY" -m venv .venv
# torch is pinned to the CPU wheel (an unpinned torch pulls a multi-GB CUDA build).
if [ "$MINIMAL" = 1 ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e .
  exit 0
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[gguf,test]'
.venv/bin/release doctor --install
echo "bootstrap: ready — activate with: . .venv/bin/activate"
