"""A uniformly random policy's episode return and cost on an algd env, the floor the suites'
returns are read against: python results/random_policy.py ENV_ID [EPISODES] [--nav].

--nav: the paper's navigation protocol (400-step episodes, limit 10, one fixed layout).
The cost is the one the env's limit is stated in: the discounted sum (gamma_c 0.99) on the
paper's velocity tasks, the episode sum elsewhere.
"""

from __future__ import annotations

import sys

import numpy as np

from algd.envs import make_env


def main(env_id: str, episodes: int, nav: bool) -> None:
    env = make_env(env_id, 400, 10.0, 0) if nav else make_env(env_id)
    discounted = env.spec.cost_limit_kind == "discounted"
    rng = np.random.default_rng(0)
    returns, costs = [], []
    for ep in range(episodes):
        env.reset(seed=ep)
        ret = cost = 0.0
        weight = 1.0
        while True:
            _, r, c, terminated, truncated, _ = env.step(
                rng.uniform(env.spec.act_low, env.spec.act_high)
            )
            ret += r
            cost += weight * c
            weight *= 0.99 if discounted else 1.0
            if terminated or truncated:
                break
        returns.append(ret)
        costs.append(cost)
    kind = "discounted cost" if discounted else "cost"
    print(
        f"{env_id}: uniformly random actions, {episodes} episodes: return "
        f"{np.mean(returns):.1f} +- {np.std(returns):.1f}, {kind} {np.mean(costs):.1f} +- "
        f"{np.std(costs):.1f} (limit {env.spec.cost_limit:g})"
    )


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--nav"]
    main(args[0], int(args[1]) if len(args) > 1 else 10, "--nav" in sys.argv)
