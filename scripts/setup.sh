#!/usr/bin/env bash
# Creates .venv/ at the project root and installs the pinned lock plus algd itself.
# Idempotent: re-running does nothing when the lock has not changed.
# --gpu: also the CUDA build of the pinned JAX (requirements-gpu.txt), for NVIDIA GPUs.
set -euo pipefail
gpu=0
for arg in "$@"; do
  case "$arg" in
    --gpu) gpu=1 ;;
    *) echo "setup.sh: unknown option '$arg' (only --gpu)" >&2; exit 2 ;;
  esac
done
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

pick_python() {
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null 2>&1 &&
      "$cand" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
      echo "$cand"; return 0
    fi
  done
  echo "algd needs Python 3.11 (mujoco 2.3.3 and jax 0.7.1 are pinned for it); none found on PATH" >&2
  return 1
}

install_gpu() {
  local gpu_stamp=".venv/.algd-gpu-$(sha256sum requirements-gpu.txt | cut -c1-16)"
  [ -f "$gpu_stamp" ] && return 0
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-gpu.txt
  rm -f .venv/.algd-gpu-*
  touch "$gpu_stamp"
  .venv/bin/python -c 'import jax; print("JAX backend:", jax.default_backend(), jax.devices())'
}

# Videos (algd eval --video) render headless through EGL: Mesa's libEGL and its drivers.
check_egl() {
  if ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa.so.0'; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    timeout 300 apt-get install -y -q libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null 2>&1 &&
      return 0
  fi
  echo "note: no EGL found (libegl1, libegl-mesa0, libgl1-mesa-dri): training works, but" \
    "algd eval --video needs them (or MUJOCO_GL=osmesa with libosmesa6)" >&2
}

stamp=".venv/.algd-lock-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ -x .venv/bin/algd ]; then
  [ "$gpu" = 1 ] && install_gpu
  exit 0
fi
py="$(pick_python)"
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip==24.3.1"
# --no-deps: safety-gymnasium pins pygame==2.1.0 (no 3.11 wheel) and gymnasium-robotics pins
# numpy<1.24; the lock holds the versions verified to work together instead.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
rm -f .venv/.algd-lock-*
touch "$stamp"
check_egl
[ "$gpu" = 1 ] && install_gpu
echo "algd environment ready in .venv/"
