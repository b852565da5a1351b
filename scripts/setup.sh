#!/usr/bin/env bash
# Create or update .venv with everything vla_pruner_ros needs. Idempotent.
#   bash scripts/setup.sh          runtime (+ ROS 2 Jazzy wheels from PyPI)
#   bash scripts/setup.sh --dev    also test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras="ros,sim"
[[ "${1:-}" == "--dev" ]] && extras="ros,sim,dev"
PYTHON="${PYTHON:-python3}"

# Debian/Ubuntu packages: venv, and EGL with Mesa for MuJoCo's offscreen rendering on the CPU.
APT_PACKAGES=(python3-venv libegl1 libegl-mesa0 libgl1-mesa-dri)
missing=()
if command -v dpkg >/dev/null 2>&1; then
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# CPU torch first: a loose torch requirement would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  echo "setup: installing torch==2.13.0"
  .venv/bin/python -m pip install -q "torch==2.13.0"
fi
echo "setup: installing vla_pruner_ros[$extras]"
.venv/bin/python -m pip install -q -e ".[$extras]"
echo "setup: done ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
