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
  # Python 3.12: the lock's JAX (0.12) needs 3.12 or newer. pyenv's versions count too.
  local cand
  for cand in python3.12 python3 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12 \
    /usr/bin/python3.12 /usr/local/bin/python3.12; do
    if "$cand" -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1
    then
      echo "$cand"; return 0
    fi
  done
  echo "algd's pinned environment needs Python 3.12 (requirements.lock); none found (with another" \
    "Python 3.11-3.13: pip install .)" >&2
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
if [ -x .venv/bin/python ] && ! .venv/bin/python -c 'import sys; raise SystemExit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
  # A .venv of another Python: replace it only if this script made it.
  if ls .venv/.algd-lock-* >/dev/null 2>&1; then
    rm -rf .venv
  else
    echo "setup.sh: .venv/ holds another Python's environment that setup.sh did not make; move it away" >&2
    exit 2
  fi
fi
[ -x .venv/bin/python ] || "$py" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "pip==24.3.1"
# --no-deps: safety-gymnasium pins pygame==2.1.0, gymnasium==0.28.1 and mujoco==2.3.3, none of
# which installs with today's stack; the lock holds the versions verified to work together.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements.lock
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
rm -f .venv/.algd-lock-*
touch "$stamp"
check_egl
[ "$gpu" = 1 ] && install_gpu
echo "algd environment ready in .venv/"
