"""Update throughput of the authors' PyTorch ALGD agent, for comparison with ``algd bench-speed``.

Builds the authors' VE-SDE agent (github.com/Wenxuan52/ALGD, commit 1f6820b) with their
Safety-Gym defaults (critics 256 wide, score network 128 wide, K = 5, N = 4, four cost critics)
on SafetyPointButton1-v0's shapes (observation 76, action 2), and times ``update_parameters``
(one gradient step: critics, actor, multiplier, targets) on a batch of 256 drawn from a filled
replay memory, as their training loop calls it. Prints one JSON line with gradient steps per
second (``updates_per_s``, the figure ``algd bench-speed`` reports as updates_per_s).

With ``--algd-src SRC`` (an algd ``src`` folder) it compares side by side: algd's update at the
same settings runs in a second process (the one ``scripts/ab_speed.py`` uses: reference
defaults, SafetyPointButton1-v0's shapes, UTD 10 per call), and the two take turns, a burst of
``--burst`` seconds each for ``--rounds`` rounds, alternating which goes first, so that both
see the same drift of a shared machine. It then prints the medians and the median of the
per-round ratios (algd over the reference).

Neither PyTorch nor the authors' code is a dependency of algd; only this script needs them:

    python3 -m venv /tmp/ptv && /tmp/ptv/bin/pip install torch==2.13.0 'numpy<2'
    git clone https://github.com/Wenxuan52/ALGD /tmp/ALGD && git -C /tmp/ALGD checkout 1f6820b
    /tmp/ptv/bin/python scripts/reference_speed.py --ref /tmp/ALGD \
        --algd-src src --algd-python .venv/bin/python

``--threads`` sets torch's intra-op threads (default: torch's own choice, one per core; the
authors' configs ask for 10).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

OBS, ACT, BATCH, FILL = 76, 2, 256, 5000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="a local copy of the authors' ALGD code")
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--algd-src", default=None, help="compare with this algd src folder")
    parser.add_argument("--algd-python", default=sys.executable, help="its Python")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--burst", type=float, default=2.0, help="seconds per turn")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from reference_parity import reference_args, reference_modules

    ve_module, _ = reference_modules(torch, args.ref)
    torch.manual_seed(0)
    low, high = -np.ones(ACT, np.float32), np.ones(ACT, np.float32)
    space = SimpleNamespace(shape=(ACT,), low=low, high=high)
    config = reference_args()  # their Safety-Gym defaults
    agent = ve_module.ALGDAgent(OBS, space, config)
    rng = np.random.default_rng(0)
    memory = (
        rng.standard_normal((FILL, OBS)).astype(np.float32),
        rng.uniform(-1, 1, (FILL, ACT)).astype(np.float32),
        np.stack([rng.standard_normal(FILL), rng.uniform(size=FILL) < 0.1], 1).astype(np.float32),
        rng.standard_normal((FILL, OBS)).astype(np.float32),
        np.ones(FILL, np.float32),
    )

    def batch() -> tuple[np.ndarray, ...]:
        idx = rng.integers(0, FILL, BATCH)
        return tuple(x[idx] for x in memory)

    def burst(seconds: float, start: int) -> tuple[int, float]:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            agent.update_parameters(batch(), start + n)
            n += 1
        return n, time.perf_counter() - t0

    for i in range(5):  # warm-up
        agent.update_parameters(batch(), i)
    info = {
        "code": "authors' PyTorch ALGD (VE-SDE), update_parameters",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": BATCH,
    }
    if args.algd_src is None:
        n, elapsed = burst(args.seconds, 0)
        print(json.dumps({**info, "updates": n, "seconds": elapsed, "updates_per_s": n / elapsed}))
        return
    from ab_speed import _burst, _start

    child = _start(args.algd_src, args.algd_python, "algd")
    rates: dict[str, list[float]] = {"reference": [], "algd": []}
    try:
        done = 0
        for i in range(args.rounds):
            for side in ("reference", "algd") if i % 2 == 0 else ("algd", "reference"):
                if side == "algd":
                    rates["algd"].append(_burst(child, args.burst))
                else:
                    n, elapsed = burst(args.burst, done)
                    done += n
                    rates["reference"].append(round(n / elapsed, 2))
    finally:
        child.kill()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    paired = [a / r for r, a in zip(rates["reference"], rates["algd"], strict=True)]
    result = {
        **info,
        "updates_per_s": rates,
        "median": medians,
        "ratio_algd_over_reference": medians["algd"] / medians["reference"],
        "median_paired_ratio": statistics.median(paired),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
