#!/usr/bin/env bash
# Downloads, on a machine with network, the wheels that scripts/gpu_check.sh installs on a GPU
# machine without one (Python 3.12, x86-64 Linux): what algd needs beyond what such a machine
# ships (Python, JAX with its CUDA plugin, numpy, Flax, Optax, SciPy, Matplotlib, PyYAML, psutil,
# rich, pytest), at the versions of requirements.lock. Prints their total size.
#
#   bash scripts/gpu_wheels.sh [DEST]      # default .whl/ (git-ignored)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
dest="${1:-.whl}"
names="gymnasium farama-notifications mujoco glfw pyopengl websockets tyro docstring-parser
  typeguard tensorboardx"
pins=()
for name in $names; do
  pin=$(grep -iE "^${name//-/[-_]}==" requirements.lock || true)
  [ -n "$pin" ] || { echo "gpu_wheels.sh: $name is not in requirements.lock" >&2; exit 2; }
  pins+=("$pin")
done
mkdir -p "$dest"
py=$(command -v python3)
[ -x .venv/bin/python ] && py=.venv/bin/python
"$py" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest" "${pins[@]}"
du -ch "$dest"/*.whl | tail -n 1
