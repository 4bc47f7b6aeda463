#!/usr/bin/env bash
# The pilots' settings side by side: updates/s and whole-loop env steps/s of a group of three
# seeds (as the suites train them), on each pilot task. Prints one JSON line per measurement.
# Usage: bash results/pilots/speed.sh ENV [SECONDS] >> results/pilots/speed.jsonl
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
env=$1
s=${2:-8}
small=(--set 'agent.critic_hidden=[128,128]')
cheap=("${small[@]}" --set agent.mc_samples=2 --set agent.cost_ensemble=2)
b=(.venv/bin/algd bench-speed --env "$env" --seconds "$s" --seeds 3)
"${b[@]}" --algo algd --utd 1
"${b[@]}" --algo algd --utd 1 --batch-size 128 "${cheap[@]}"
"${b[@]}" --algo algd --utd 2 --batch-size 128 "${cheap[@]}"
"${b[@]}" --algo sac_lag --utd 1
"${b[@]}" --algo sac_lag --utd 1 --batch-size 128 "${small[@]}" --set 'agent.actor_hidden=[128,128]'
"${b[@]}" --algo sac_lag --utd 2 --batch-size 128 "${small[@]}" --set 'agent.actor_hidden=[128,128]'
