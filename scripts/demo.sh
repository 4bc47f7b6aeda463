#!/usr/bin/env bash
# The main job: a short, real ALGD training run on the built-in ToyRing-v0 task.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/algd train --preset toy --algo algd --env ToyRing-v0 --seed 0 "$@"
