"""Named starting configs. Explicit flags given with a preset override its values.

``toy``: fast settings for the built-in ToyRing-v0 (tests and the demo). ToyRing is a
contextual bandit (actions do not change the next state), so a long horizon buys nothing: gamma =
gamma_c = 0.9 lets the critics converge in a few thousand updates instead of ~1/((1-gamma) tau).
Rewards are about 1 per step, so SAC's initial temperature is lowered to 0.1 (at alpha = 1 the
entropy bonus dominates for thousands of updates) and the dual step on log lambda raised to 0.01
(at 3e-4 log lambda can move by at most ~1 in 3000 updates). Networks are 64 wide; 2 updates per
step. Weights start from Flax's LeCun-normal init instead of the reference's Glorot-uniform /
normal one: measured (while the cost critics' normal was still truncated at 2 std) at 4000 steps, seed 0, SAC-Lag ends at return 11.2 and cost 96.8
with the reference init and at 117.5 and 1.0 with this one (SAC-AugLag 113.7 vs 118.2 and CAL
113.5 vs 118.4, all safe); seed 1 of SAC-Lag, with uniform warm-up actions: return -31.2 (cost
82.0) vs 117.5 (cost 0.0). Everything else is the reference default.

Two algorithms change the toy preset further (their registry entries' ``preset_overrides``):

- ``hj``: threshold 0 (RCRL's own: Q_h <= 0, never reach a cost). The reference threshold, 1,
  never binds on costs in [0, 1]: at 4000 steps HJ then ends unconstrained (seed 0: return 122.7,
  cost 89.9). With 0.05, 6000 steps and seeds 0-2 as one group, two of three seeds ended over the
  limit (13.4, 6.6); with 0, all three ended under it (0.0, 1.5, 3.7; returns 61.5, 48.9, 83.6).
- ``ppo_lag``: no warm-up, 40000 steps (an on-policy learner needs about ten times the others'
  budget here), 1000-step rollouts without the epoch flush (ten episodes per update, minibatches
  of 100), and the dual step 0.05: seeds 0-2 end at returns 111.6, 107.1, 112.5, costs 0.0, 0.0,
  3.0; at 30000 steps seed 2 was still over the limit (6.4), and a dual step of 0.1 lowered the
  returns (85-93) without bringing that seed under it (18.2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from algd.agents import default_config, get_algo
from algd.config import TrainConfig, apply_overrides
from algd.errors import AlgdError
from algd.suggest import did_you_mean

# Named overrides of an algorithm's defaults, in the command line's dotted keys.
PRESETS: dict[str, dict[str, Any]] = {
    "toy": {
        "env": "ToyRing-v0",
        "total_steps": 4000,
        "warmup_steps": 500,
        "learning_starts": 500,
        "utd": 2,
        "batch_size": 128,
        "eval_every": 1000,
        "eval_episodes": 5,
        "log_every": 500,
        "checkpoint_every": 1000,
        "agent.gamma": 0.9,
        "agent.gamma_c": 0.9,
        "agent.critics.critic_hidden": (64, 64),
        "agent.actor_hidden": (64, 64),
        "agent.diffusion.score_hidden": (64, 64, 64),
        "agent.sac.alpha_init": 0.1,
        "agent.lagrangian.lambda_lr": 0.01,
        "agent.init": "lecun",
    },
    # The defaults are the authors' settings; what depends on the task family is added by
    # reference_for_env (the env given with the preset decides).
    "reference": {},
    # The authors' protocol (as "reference", task settings included) at a cost per environment
    # step a 2-core CPU can afford, chosen from pilot runs (docs/experiments.md): one update
    # per step, minibatches of 128, 128-wide critics and actors, 2000 warm-up steps, and a dual
    # step ten times the reference's (at 3e-4 the multiplier of SAC-Lag fell to 0.001 before
    # the HalfCheetah constraint began to bind and could not climb back within 50k steps).
    "cpu": {
        "total_steps": 50_000,
        "warmup_steps": 2000,
        "learning_starts": 1000,
        "utd": 1,
        "batch_size": 128,
        "eval_every": 5000,
        "eval_episodes": 5,
        "log_every": 1000,
        "checkpoint_every": 10_000,
        "agent.critics.critic_hidden": (128, 128),
        "agent.actor_hidden": (128, 128),
        "agent.lagrangian.lambda_lr": 3e-3,
    },
    # "cpu" (which it extends), set to keep the evaluated policy under the limit at a
    # workstation's budget (docs/experiments.md, "The safe preset"): 100k steps; the multiplier
    # steps on the cost of the last 5 training episodes (the current policy's, not the cost
    # critics' reading of replayed actions) by the method of multipliers, 0.05 per unit of
    # violation once per 1000 updates; it aims a margin below the limit, which covers the gap
    # between the behaviour policy whose episodes it sees and the deterministic policy that is
    # evaluated; and a time-limit truncation bootstraps every critic. PPO-Lag keeps its own
    # multiplier update (it steps once per rollout) and takes the margin.
    "safe": {
        "total_steps": 100_000,
        "bootstrap": "terminated",
        "agent.lagrangian.violation": "episodes",
        "agent.lagrangian.violation_episodes": 5,
        "agent.lagrangian.multiplier": "multipliers",
        "agent.lagrangian.mom_step": 0.05,
        "agent.lagrangian.mom_every": 1000,
        "agent.lagrangian.cost_margin": 0.05,
    },
    # "safe" (which it extends), with the diffusion agents' chain kept off the corners of the
    # action box: ALGD and LGD add a penalty on the chain's pre-tanh output (their own change
    # in agents/__init__.py; every other algorithm trains as under "safe"). Chosen on pilot
    # seeds 12-15 on SafetyPointGoal1 and 10-11 on HalfCheetah (docs/experiments.md, "Four
    # seeds").
    "safe-bounded": {},
    # "safe" (which it extends) at a budget a laptop CPU trains in minutes: 30k steps, an
    # evaluation every 3000. In the pilots ALGD learned to run on HalfCheetah in it, not to
    # hold the limit in every seed; no navigation task learned in it (docs/experiments.md,
    # "A quick run on a real task").
    "quick": {
        "total_steps": 30_000,
        "eval_every": 3000,
    },
}
# A preset that extends another applies the other first (with its algorithms' changes).
PRESET_BASE = {"safe": "cpu", "safe-bounded": "safe", "quick": "safe"}
# Presets that add the task family's reference settings of the env (reference_for_env).
TASK_PROTOCOL_PRESETS = ("reference", "cpu", "safe", "safe-bounded", "quick")


def preset_chain(name: str) -> list[str]:
    """The presets ``name`` applies, the one it extends (and so on) first."""
    chain = [name]
    while chain[0] in PRESET_BASE:
        chain.insert(0, PRESET_BASE[chain[0]])
    return chain


def reference_for_env(env_id: str) -> dict[str, Any]:
    """Settings the authors' configurations add for the task family of ``env_id`` (its env
    family's protocol; none for an id no family takes, which fails when the env is built)."""
    from algd.envs import env_family
    from algd.errors import EnvError

    try:
        return env_family(env_id).protocol(env_id)
    except EnvError:
        return {}


def make_config(
    overrides: Mapping[str, Any] | None = None, preset: str | None = None
) -> TrainConfig:
    """A run's config: the algorithm's defaults (``overrides["algo"]``, else algd), then the
    named preset, then ``overrides`` (dotted keys: ``total_steps``, ``agent.rho``). The
    presets of ``TASK_PROTOCOL_PRESETS`` add the task family's settings of the env it ends up
    with. A whole
    ``AgentConfig`` given as ``agent`` replaces the agent settings as given (the algorithm's
    and the preset's included); dotted ``agent.*`` keys change single fields."""
    overrides = dict(overrides or {})
    algo = str(overrides.get("algo", "algd"))
    cfg = default_config(algo)
    if preset is not None:
        if preset not in PRESETS:
            raise AlgdError(
                f"unknown preset '{preset}'{did_you_mean(preset, PRESETS)} (choose from: "
                f"{', '.join(PRESETS)})"
            )
        for name in preset_chain(preset):
            cfg = apply_overrides(cfg, PRESETS[name])
            cfg = apply_overrides(cfg, dict(get_algo(algo).preset_overrides.get(name, {})))
        if preset in TASK_PROTOCOL_PRESETS:
            cfg = apply_overrides(cfg, reference_for_env(str(overrides.get("env", cfg.env))))
    return apply_overrides(cfg, overrides)


def preset(name: str, **overrides: Any) -> TrainConfig:
    """``make_config(overrides, preset=name)`` with top-level fields as keywords."""
    return make_config(overrides, preset=name)
