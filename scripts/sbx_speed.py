"""SBX's SAC (the JAX Stable-Baselines, sbx-rl) on HalfCheetah-v4 at algd's SAC shapes: whole
training loop env steps/s at one gradient step per env step, and gradient steps/s at ten.

Run it with an interpreter that has SBX (its own virtual environment), beside
``algd bench-speed --algo sac --env PaperHalfCheetahVelocity-v0 --utd 1`` (and ``--utd 10``),
alternating the two, on the same machine:

    python3.12 -m venv /tmp/vsbx && /tmp/vsbx/bin/pip install sbx-rl==0.28.0 "gymnasium[mujoco]"
    /tmp/vsbx/bin/python scripts/sbx_speed.py --utd 1 --seconds 20

Shapes: two 256x256 critics, a 256x256 actor, batch 256, learned temperature (SBX's defaults
but the network width and the batch). Compilation and the learning-starts phase are excluded:
the timed call continues a model that has already learned. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utd", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    import gymnasium as gym
    import jax
    from sbx import SAC

    env = gym.make("HalfCheetah-v4")
    model = SAC(
        "MlpPolicy",
        env,
        batch_size=256,
        learning_starts=2000,
        train_freq=1,
        gradient_steps=args.utd,
        policy_kwargs={"net_arch": [256, 256]},
        seed=0,
        verbose=0,
    )
    model.learn(total_timesteps=2500)  # past learning_starts: compiles the update
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        model.learn(total_timesteps=500, reset_num_timesteps=False)
        steps += 500
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "peer": "sbx-rl SAC",
                "env": "HalfCheetah-v4",
                "utd": args.utd,
                "env_steps_per_s": steps / elapsed,
                "updates_per_s": steps * args.utd / elapsed,
                "jax": jax.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
