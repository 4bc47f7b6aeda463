"""``algd bench-speed`` on a small real run."""

from __future__ import annotations

import jax
import pytest

from algd.bench.speed import bench_speed
from algd.config import agent_from_dict


def test_bench_speed_reports_every_figure() -> None:
    """``algd bench-speed``'s figures on a small real run: positive rates and latencies, the
    FLOPs of a gradient step, and the CPU share stolen by the host during the timed phases."""
    out = bench_speed("sac", "ToyRing-v0", utd=2, batch_size=32, seconds=0.3, seed=0)
    for key in ("updates_per_s", "env_steps_per_s", "loop_updates_per_s", "flops_per_update"):
        assert out[key] > 0, key
    assert out["loop_updates_per_s"] == pytest.approx(2 * out["env_steps_per_s"])
    assert out["jax_backend"] == jax.default_backend() and out["devices"]
    assert 0 < out["action_latency_us"] < 1e6 and 0 < out["action_latency_deterministic_us"] < 1e6
    for phase in ("updates", "loop"):
        steal = out["cpu_steal_fraction"][phase]
        assert steal is None or 0.0 <= steal <= 1.0
    # --set agent.KEY=VALUE measures another configuration: narrower networks, fewer FLOPs.
    narrow = {"agent.critic_hidden": [16, 16], "agent.actor_hidden": [16, 16]}
    small = bench_speed("sac", "ToyRing-v0", 2, 32, 0.3, 0, sets=narrow)
    assert small["sets"] == narrow and out["sets"] == {}
    assert 0 < small["flops_per_update"] < out["flops_per_update"] / 2


def test_bench_speed_of_the_on_policy_loop() -> None:
    """PPO-Lag: the loop's env steps/s with its updates at each rollout's end, and the rollout
    update alone in gradient steps/s."""
    out = bench_speed(
        "ppo_lag",
        "ToyRing-v0",
        utd=1,
        batch_size=32,
        seconds=0.3,
        seed=0,
        seeds=2,
        agent=agent_from_dict({"value_hidden": (32, 32), "actor_hidden": (32, 32)}),
    )
    # Rollouts of one 100-step episode (the epoch flush), minibatches of 64: 2 per pass.
    assert out["rollout"] == 100 and out["grad_steps_per_rollout"] == 10 * 2
    for key in ("updates_per_s", "env_steps_per_s", "rollout_update_s"):
        assert out[key] > 0, key
    assert out["updates_per_s_all_seeds"] == pytest.approx(2 * out["updates_per_s"])
    assert 0.0 <= out["loop_updates_per_s"] <= 0.2 * out["env_steps_per_s"] + 1e-9


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("utd=2", "--set takes agent fields (agent.KEY=VALUE), got 'utd'"),
        ("agent.rho", "--set takes KEY=VALUE (got 'agent.rho')"),
        ("agent.nope=1", "config field 'agent.nope': unknown field"),
    ],
)
def test_bench_speed_refuses_a_bad_set(item: str, message: str, capsys) -> None:
    from algd.cli import main

    assert main(["bench-speed", "--env", "ToyRing-v0", "--set", item]) == 2
    err = capsys.readouterr().err
    assert err.startswith("algd: error:") and err.count("\n") == 1 and message in err, err


def test_bench_speed_set_is_repeatable() -> None:
    from algd.commands import BenchSpeed
    from algd.parsing import parse

    ns = parse(BenchSpeed, "bench-speed", ["--set", "agent.rho=2", "--set", "agent.beta=3"])
    assert ns.set == ("agent.rho=2", "agent.beta=3")
