#!/usr/bin/env bash
# Every GPU check of algd in one run of a few minutes on one NVIDIA GPU, on a machine without
# network: the machine's own Python 3.12, JAX and CUDA plugin, and the rest of algd's needs from
# the wheels that `bash scripts/gpu_wheels.sh` downloaded into .whl/ beforehand (on a machine with
# network; about 30 MB). Writes its results to ${OUT:-gpu_results}/.
#
#   1. the backend: JAX must see a GPU, else one line and exit 2;
#   2. bench-speed at reference settings on PaperHalfCheetahVelocity-v0 (the paper's velocity
#      protocol) for groups of 1, 5 and 20 seeds: updates/s and env steps/s per seed and in all;
#   3. the projected wall time of the paper's HalfCheetah protocol (5000 warm-up + 100k steps,
#      UTD 10) for 5 seeds as one group against 1 seed, at the loop's steady-state rate;
#   4. a short real training run of a 5-seed group (reference settings) end to end;
#   5. the test that a seed trained in a group matches it trained alone, on the GPU.
#
# PYTHON (default python3) is the interpreter that holds JAX.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
py="${PYTHON:-python3}"
out="${OUT:-gpu_results}"

backend=$("$py" -c 'import jax; print(jax.default_backend())' 2>/dev/null) || backend="none"
if [ "$backend" != "gpu" ]; then
  echo "gpu_check.sh: no GPU visible to JAX (backend: $backend, Python: $py); run it on a machine with an NVIDIA GPU" >&2
  exit 2
fi
mkdir -p "$out"
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
if ls .whl/*.whl >/dev/null 2>&1; then
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
fi
export PYTHONPATH="$site:$root/src${PYTHONPATH:+:$PYTHONPATH}"
algd() { "$py" -m algd.cli "$@"; }

"$py" -c 'import jax; print(jax.__version__, jax.devices())' | tee "$out/backend.txt"

# 2. Throughput per group size (each a group trained as one program), side by side.
algd bench-speed --env PaperHalfCheetahVelocity-v0 --seeds 1,5,20 --seconds 15 \
  | tee "$out/bench_speed.jsonl"

# 3. Projection of the protocol from the loop's measured env steps/s.
"$py" - "$out/bench_speed.jsonl" <<'PY' | tee "$out/projection.txt"
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
steps = 5000 + 100_000  # warm-up (no updates, cheap) counted as update steps: an upper bound
by = {r["seeds"]: r for r in rows}
one = steps / by[1]["env_steps_per_s"]
for r in rows:
    hours = steps / r["env_steps_per_s"] / 3600
    print(f"S={r['seeds']:>2}: {r['updates_per_s']:.0f} updates/s per seed "
          f"({r['updates_per_s_all_seeds']:.0f} all), {r['env_steps_per_s']:.1f} env steps/s per "
          f"seed; HalfCheetah protocol for these {r['seeds']} seeds: {hours * 60:.0f} min "
          f"({steps / r['env_steps_per_s'] / one:.2f}x one seed's time)")
PY

# 4. A real 5-seed group at reference settings (short), end to end.
rm -rf "$out/group_run"
algd train --preset reference --env PaperHalfCheetahVelocity-v0 --seeds 0-4 \
  --total-steps 2000 --warmup-steps 1000 --eval-every 1000 --eval-episodes 1 \
  --run-dir "$out/group_run" --quiet | tee "$out/group_run.txt"
rm -f "$out"/group_run/s*/checkpoint.npz

# 5. Group against alone on the GPU.
"$py" -m pytest -q -p no:xdist -p no:cacheprovider -m "" tests/test_groups.py -k matches_each_seed \
  2>&1 | tail -3 | tee "$out/equivalence.txt"
