#!/usr/bin/env bash
# Every GPU check of algd in one run of about 7 minutes on one NVIDIA GPU (figures for
# docs/performance.md). Needs `bash scripts/setup.sh --gpu` first (or a .venv with the CUDA
# build of the pinned JAX). Writes its results to ${OUT:-gpu_results}/.
#
#   1. the backend: JAX must see a GPU, else the script stops;
#   2. bench-speed at reference settings on SafetyPointButton1-v0's shapes for groups of 1, 5 and
#      20 seeds: updates/s and env steps/s per seed and in all;
#   3. the projected wall time of the paper's PointButton1 protocol (5000 warm-up + 100k steps,
#      UTD 10) for 5 seeds as one group against 1 seed: every step at the loop's steady-state
#      rate, an upper bound (the warm-up and the reference's halved first epoch cost less);
#   4. a short real training run of a 5-seed group (reference settings) end to end;
#   5. the test that a seed trained in a group matches it trained alone, on the GPU.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${OUT:-gpu_results}"
mkdir -p "$out"
py=.venv/bin/python

$py - <<'PY' | tee "$out/backend.txt"
import jax
print(jax.__version__, jax.default_backend(), jax.devices())
raise SystemExit(0 if jax.default_backend() == "gpu" else "no GPU visible to JAX")
PY

# 2. Throughput per group size (each a group trained as one program), side by side.
.venv/bin/algd bench-speed --env SafetyPointButton1-v0 --seeds 1,5,20 --seconds 15 \
  | tee "$out/bench_speed.jsonl"

# 3. Projection of the protocol from the loop's measured env steps/s.
$py - "$out/bench_speed.jsonl" <<'PY' | tee "$out/projection.txt"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
steps = 5000 + 100_000  # warm-up (no updates, cheap) counted as update steps: an upper bound
by = {r["seeds"]: r for r in rows}
one = steps / by[1]["env_steps_per_s"]
for r in rows:
    hours = steps / r["env_steps_per_s"] / 3600
    print(f"S={r['seeds']:>2}: {r['updates_per_s']:.0f} updates/s per seed "
          f"({r['updates_per_s_all_seeds']:.0f} all), {r['env_steps_per_s']:.1f} env steps/s per "
          f"seed; PointButton1 protocol for these {r['seeds']} seeds: {hours * 60:.0f} min "
          f"({steps / r['env_steps_per_s'] / one:.2f}x one seed's time)")
if 5 in by:
    minutes = steps / by[5]["env_steps_per_s"] / 60
    print(f"5 seeds of PointButton1 (100k steps, UTD 10) as one group: {minutes:.0f} min "
          f"(goal: at most 60 min and 1.5x one seed)")
PY

# 4. A real 5-seed group at reference settings (short), end to end.
rm -rf "$out/group_run"
/usr/bin/time -v .venv/bin/algd train --preset reference --env SafetyPointButton1-v0 --seeds 0-4 \
  --total-steps 2000 --warmup-steps 1000 --eval-every 1000 --eval-episodes 1 \
  --run-dir "$out/group_run" --quiet 2> "$out/group_run_time.txt" | tee "$out/group_run.txt"
grep -E "Elapsed|Maximum resident" "$out/group_run_time.txt" || true
rm -f "$out"/group_run/s*/checkpoint.npz

# 5. Group against alone on the GPU.
$py -m pytest -q -p no:xdist tests/test_groups.py -k "writes_what or differ" 2>&1 | tail -3 \
  | tee "$out/equivalence.txt"
