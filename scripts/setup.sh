#!/usr/bin/env bash
# Creates .venv/ at the project root and installs the pinned lock plus algd itself.
# Idempotent: re-running does nothing when the lock has not changed.
set -euo pipefail
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

build_kernel() {
  # The compiled critic kernel (algd/kernels.py): a no-op once built for this source. Where it
  # cannot be built (no compiler, no AVX-512), algd runs the same computation through XLA.
  .venv/bin/python -m algd.kernels build ||
    echo "algd: continuing without the compiled critic kernel (the XLA path computes the same values)" >&2
}

stamp=".venv/.algd-lock-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ -x .venv/bin/algd ]; then
  build_kernel
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
build_kernel
echo "algd environment ready in .venv/"
