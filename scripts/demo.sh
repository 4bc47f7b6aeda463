#!/usr/bin/env bash
# The main job: a short, real ALGD training run on the built-in ToyRing-v0 task.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/algd train --algo algd --env ToyRing-v0 --seed 0 \
  --total-steps 4000 --warmup-steps 1000 --utd 1 --batch-size 128 \
  --eval-every 1000 --eval-episodes 5 "$@"
