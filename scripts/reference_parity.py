"""Parity fixtures from the authors' code: what their agents compute, for algd's tests.

This script runs the authors' PyTorch agents on small problems and writes their inputs,
weights, random draws and results to ``tests/fixtures/``: their ALGD code
(github.com/Wenxuan52/ALGD, commit 1f6820b, MIT licence) into ``reference_parity.npz``, and,
with ``--dev-ref``, the baselines of their development repository (github.com/Wenxuan52/CAL,
commit 278e338) into ``parity_sac_family.npz`` (SAC-Lag, SAC-AugLag, CAL;
``scripts/parity_sac_family.py``) and ``parity_hj_ppo.npz`` (HJ, PPO-Lag;
``scripts/parity_hj_ppo.py``), each in its own process. ``tests/test_parity*.py`` load the
same weights into algd, feed it the same batches and draws, and compare. Neither PyTorch nor
the authors' code is a dependency of algd or of its tests: only these scripts need them.

To regenerate the fixtures (on any CPU; nothing here needs a GPU):

    python3 -m venv /tmp/ptv && /tmp/ptv/bin/pip install torch==2.13.0 'numpy<2'
    git clone https://github.com/Wenxuan52/ALGD /tmp/ALGD && git -C /tmp/ALGD checkout 1f6820b
    git clone https://github.com/Wenxuan52/CAL /tmp/CAL && git -C /tmp/CAL checkout 278e338
    /tmp/ptv/bin/python scripts/reference_parity.py --ref /tmp/ALGD --dev-ref /tmp/CAL

What it records for ALGD, for three variants: ``ve`` and ``ddpm`` (VE-SDE and DDPM in the
authors' velocity mode: a discounted limit, both critics stop at an episode's end) and
``ve_nav`` (VE-SDE in their Safety-Gym mode: the per-state budget of an episode limit, cost
critics that never stop bootstrapping):

- ``h``, and the networks' weights and log lambda at initialisation (``init/``, torch layout);
- velocity variants: the reverse chain's actions, stochastic and deterministic, L_A and its
  action gradient, and the Monte-Carlo score target phi* at given (a_tau, tau);
- three consecutive ``update_parameters`` calls with block indices 0, 1, 2 (the targets move
  after 0 and 2, not after 1), each on its own batch (``update{i}/batch/``, with the
  navigation flags terminated and goal_met in ``ve_nav``): the critics' regression targets and
  losses, the score loss and its target, every gradient handed to each optimiser, the
  multiplier's gradient, and every parameter and log lambda after the update.

Every random draw the agents make (``torch.randn``, ``randn_like``, ``randint``) is replaced by
a draw from a seeded NumPy generator and recorded in order, so algd can replay them. The agents
place themselves on "cuda"; the script maps that to the CPU.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

OBS, ACT, BATCH, HIDDEN, SCORE_HIDDEN, K, ENSEMBLE, MC = 5, 2, 16, 16, 16, 5, 4, 4
LOW, HIGH = np.array([-1.0, -1.0]), np.array([2.0, 1.0])  # scale (1.5, 1), bias (0.5, 0)
COST_LIMIT = 3.0  # velocity mode: a discounted limit, h = 3
NAV_COST_LIMIT, NAV_EPISODE = 10.0, 400  # navigation mode: h = 10 (1 - 0.99^400) / (0.01 * 400)
UPDATES = 3  # consecutive updates per variant: block indices 0, 1, 2 (targets move at 0 and 2)
VARIANTS = (("ve", "ve", False), ("ddpm", "ddpm", False), ("ve_nav", "ve", True))


class Recorder:
    """Replaces torch's samplers by draws from a NumPy generator, recording each draw."""

    def __init__(self, torch, seed: int) -> None:
        self.torch, self.rng, self.draws = torch, np.random.default_rng(seed), []
        self.real = (torch.randn, torch.randn_like, torch.randint)

    def randn(self, *size, **kw):
        shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list)) else size
        value = self.rng.standard_normal(tuple(int(s) for s in shape)).astype(np.float32)
        self.draws.append(value)
        return self.torch.from_numpy(value.copy())

    def randn_like(self, x, **kw):
        return self.randn(*x.shape)

    def randint(self, low=0, high=None, size=None, **kw):
        value = self.rng.integers(low, high, size=tuple(size)).astype(np.int64)
        self.draws.append(value)
        return self.torch.from_numpy(value.copy())

    def __enter__(self):
        t = self.torch
        t.randn, t.randn_like, t.randint = self.randn, self.randn_like, self.randint
        return self

    def __exit__(self, *exc):
        t = self.torch
        t.randn, t.randn_like, t.randint = self.real

    def take(self) -> list[np.ndarray]:
        out, self.draws = self.draws, []
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", required=True, help="a local copy of the authors' ALGD code")
    parser.add_argument("--dev-ref", help="a local copy of their development repository (CAL)")
    fixtures = Path(__file__).resolve().parents[1] / "tests/fixtures"
    parser.add_argument("--out", default=str(fixtures / "reference_parity.npz"))
    args = parser.parse_args()
    import torch

    if args.dev_ref:  # their repositories both hold a package "agents": one process each
        for name in ("parity_sac_family", "parity_hj_ppo"):
            script = str(Path(__file__).with_name(f"{name}.py"))
            out_file = str(fixtures / f"{name}.npz")
            subprocess.run(
                [sys.executable, script, "--ref", args.dev_ref, "--out", out_file], check=True
            )

    modules = dict(zip(("ve", "ddpm"), reference_modules(torch, args.ref)))
    out: dict[str, np.ndarray] = {}
    for name, kind, nav in VARIANTS:
        record(torch, modules[kind], name, out, nav=nav)
    save_fixture(args.out, out)


def fixture_main(doc: str, name: str, record) -> None:
    """The command line of a baseline fixture script: ``--ref`` (a checkout of the authors'
    development repository), ``--out`` (default tests/fixtures/NAME.npz); runs
    ``record(torch, ref, out)`` and writes ``out``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--ref", required=True, help="a checkout of the authors' code")
    fixtures = Path(__file__).resolve().parents[1] / "tests/fixtures"
    parser.add_argument("--out", default=str(fixtures / f"{name}.npz"))
    args = parser.parse_args()
    import torch

    out: dict[str, np.ndarray] = {}
    record(torch, args.ref, out)
    save_fixture(args.out, out)


def save_fixture(path: str, out: dict[str, np.ndarray]) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {len(out)} arrays, {Path(path).stat().st_size / 1024:.0f} KiB")


def cpu_torch(torch) -> type:
    """A stand-in for ``torch`` in the authors' agent modules, whose ``torch.device(...)`` is
    the CPU (their agents place themselves on "cuda"); subclass it to watch other calls."""
    real_device = torch.device

    class CpuTorch:
        def __getattr__(self, name):
            return getattr(torch, name)

        @staticmethod
        def device(*a, **k):
            return real_device("cpu")

    return CpuTorch


def reference_modules(torch, ref: str):
    """The authors' VE-SDE and DDPM agent modules from a local copy of their code, placed on the
    CPU (their agents place themselves on "cuda")."""
    sys.path.insert(0, str(Path(ref).resolve()))
    from agents.algd import ALGD_DDPM, ALGD_VESDE

    for module in (ALGD_VESDE, ALGD_DDPM):
        module.torch = cpu_torch(torch)()
    return ALGD_VESDE, ALGD_DDPM


def reference_args(**changes) -> SimpleNamespace:
    """The authors' agent arguments: their Safety-Gym defaults (configs/algd_vesde.py), with
    ``changes``."""
    defaults = dict(
        gamma=0.99,
        safety_gamma=0.99,
        tau=0.005,
        critic_target_update_frequency=2,
        rho=1.0,
        diffusion_steps_K=5,
        score_mc_samples=4,
        beta=1.0,
        critic_hidden_size=256,
        qc_ens_size=4,
        score_model_hidden_dim=128,
        lr=3e-4,
        qc_lr=3e-4,
        safetygym=True,
        cost_lim=25.0,
        epoch_length=1000,
    )
    return SimpleNamespace(**{**defaults, **changes})


def record(torch, module, name: str, out: dict[str, np.ndarray], nav: bool = False) -> None:
    """One variant: initial weights, the pointwise quantities (velocity variants), and
    UPDATES consecutive ``update_parameters`` calls. ``nav``: the authors' Safety-Gym mode
    (``safetygym=True``: the per-state budget from an episode limit, cost critics that never
    stop bootstrapping)."""
    torch.manual_seed(0)
    space = SimpleNamespace(shape=(ACT,), low=LOW.astype(np.float32), high=HIGH.astype(np.float32))
    config = reference_args(
        diffusion_steps_K=K,
        score_mc_samples=MC,
        critic_hidden_size=HIDDEN,
        qc_ens_size=ENSEMBLE,
        score_model_hidden_dim=SCORE_HIDDEN,
        safetygym=nav,
        cost_lim=NAV_COST_LIMIT if nav else COST_LIMIT,
        epoch_length=NAV_EPISODE,
    )
    agent = module.ALGDAgent(OBS, space, config)
    p = f"{name}/"
    out[p + "h"] = np.array(agent.target_cost, np.float64)
    save_weights(agent, p + "init/", out)
    rng = np.random.default_rng(1)
    rec = Recorder(torch, seed=2)
    if not nav:
        record_pointwise(torch, agent, p, rng, rec, out)
    capture = UpdateCapture(module, agent)
    for i in range(UPDATES):
        batch = make_batch(rng, nav)
        for k, v in batch.items():
            out[f"{p}update{i}/batch/{k}"] = v
        rewards = np.stack([batch["reward"], batch["cost"]], axis=1)
        memory = (batch["state"], batch["action"], rewards, batch["next_state"], batch["mask"])
        with rec, capture:
            agent.update_parameters(memory, i)  # i: the index in the UTD block (targets at 0, 2)
        keep(out, f"{p}update{i}", rec.take())
        capture.save(f"{p}update{i}/", out)
        save_weights(agent, f"{p}update{i}/after/", out)


def save_weights(agent, prefix: str, out: dict[str, np.ndarray]) -> None:
    for net_name, net in (
        ("policy", agent.policy),
        ("critic", agent.critic),
        ("qc", agent.safety_critics),
        ("critic_targ", agent.critic_target),
        ("qc_targ", agent.safety_critic_targets),
    ):
        for k, v in net.state_dict().items():
            if k in ("betas", "alphas", "alphas_cumprod", "alphas_cumprod_prev") or k.startswith(
                ("sqrt_", "ve_")
            ):
                continue
            out[f"{prefix}{net_name}/{k}"] = v.detach().numpy().copy()
    out[f"{prefix}log_lam"] = agent.log_lam.detach().numpy().copy()


def keep(out: dict[str, np.ndarray], key: str, draws: list[np.ndarray]) -> None:
    out[key + "/n_draws"] = np.array(len(draws))
    for i, d in enumerate(draws):
        out[f"{key}/draw{i}"] = d


def make_batch(rng: np.random.Generator, nav: bool) -> dict[str, np.ndarray]:
    """A minibatch. Velocity mode: ``mask`` is 0 at an episode's end (both critics stop).
    Navigation mode: ``terminated`` and ``goal_met`` flags, and the authors' sampler's mask
    1 - (terminated or goal_met) (the reward critic stops there, the cost critics never)."""
    out = dict(
        state=rng.standard_normal((BATCH, OBS)).astype(np.float32),
        action=rng.uniform(LOW, HIGH, (BATCH, ACT)).astype(np.float32),
        reward=rng.standard_normal(BATCH).astype(np.float32),
        cost=rng.uniform(0, 1, BATCH).astype(np.float32),
        next_state=rng.standard_normal((BATCH, OBS)).astype(np.float32),
    )
    ended = rng.uniform(size=BATCH) < 0.25
    if nav:
        goal = rng.uniform(size=BATCH) < 0.25
        out["terminated"], out["goal_met"] = ended.astype(np.float32), goal.astype(np.float32)
        ended = ended | goal
    out["mask"] = (~ended).astype(np.float32)
    return out


def record_pointwise(torch, agent, p: str, rng, rec: Recorder, out: dict) -> None:
    """At the initial weights: the reverse chains, L_A and its gradient, the score target."""
    state = rng.standard_normal((BATCH, OBS)).astype(np.float32)
    action = rng.uniform(LOW, HIGH, (BATCH, ACT)).astype(np.float32)
    out[p + "point/state"], out[p + "point/action"] = state, action
    s = torch.from_numpy(state)
    with rec, torch.no_grad():
        out[p + "chain/stochastic"] = agent.policy.sample(s).numpy()
        keep(out, p + "chain/stochastic", rec.take())
        out[p + "chain/deterministic"] = agent.policy.sample_deterministic(s).numpy()
        keep(out, p + "chain/deterministic", rec.take())

    a = torch.from_numpy(action).requires_grad_(True)
    la, _, _ = agent.compute_LA(s, a)
    (grad,) = torch.autograd.grad(la.sum(), a)
    out[p + "energy/value"] = la.detach().numpy()[:, 0]
    out[p + "energy/grad"] = grad.numpy()

    a_tau = torch.from_numpy(rng.uniform(LOW, HIGH, (BATCH, ACT)).astype(np.float32))
    tau = torch.from_numpy(rng.integers(0, K, BATCH).astype(np.int64))
    with rec:
        phi_star = agent.compute_score_target_mc(s, a_tau, tau)
    out[p + "score_target/a_tau"] = a_tau.numpy()
    out[p + "score_target/tau"] = tau.numpy()
    out[p + "score_target/value"] = phi_star.numpy()
    keep(out, p + "score_target", rec.take())


class UpdateCapture:
    """While active, records what one ``update_parameters`` call hands each optimiser (the
    gradients, and the multiplier's) and the regression targets and losses it computes."""

    OPTIMISERS = (
        ("critic_optimizer", "critic", "critic"),
        ("safety_critic_optimizer", "qc", "safety_critics"),
        ("actor_optimizer", "policy", "policy"),
    )

    def __init__(self, module, agent) -> None:
        self.module, self.agent, self.seen = module, agent, {}

    def __enter__(self):
        self.seen = {"mse": []}
        self.real_mse = self.module.F.mse_loss
        self.module.F.mse_loss = self.mse
        self.real_steps = []
        for opt_name, _, _ in self.OPTIMISERS:
            self.wrap(getattr(self.agent, opt_name), opt_name)
        lam_opt = self.agent.log_lam_optimizer
        real = lam_opt.step
        self.real_steps.append((lam_opt, real))

        def lam_step(*a, **k):
            self.seen["log_lam_grad"] = self.agent.log_lam.grad.detach().numpy().copy()
            return real(*a, **k)

        lam_opt.step = lam_step
        return self

    def __exit__(self, *exc):
        self.module.F.mse_loss = self.real_mse
        for opt, real in self.real_steps:
            opt.step = real

    def mse(self, x, y):
        loss = self.real_mse(x, y)
        self.seen["mse"].append((y.detach().numpy().copy(), float(loss.detach())))
        return loss

    def wrap(self, opt, name: str) -> None:
        real = opt.step
        self.real_steps.append((opt, real))

        def step(*a, **k):
            params = [q for g in opt.param_groups for q in g["params"]]
            self.seen[name] = [  # None: a parameter the loss does not reach (VE's eps head)
                np.zeros(tuple(q.shape), np.float32) if q.grad is None else q.grad.numpy().copy()
                for q in params
            ]
            return real(*a, **k)

        opt.step = step

    def save(self, p: str, out: dict[str, np.ndarray]) -> None:
        (y_r, l_q1), (_, l_q2), (y_c, l_qc), (phi_star, l_score) = self.seen["mse"]
        out[p + "y_r"] = y_r[:, 0]
        out[p + "loss_q"] = np.array(l_q1 + l_q2)
        out[p + "y_c"] = y_c[..., 0]
        out[p + "loss_qc"] = np.array(l_qc)
        out[p + "phi_star"] = phi_star
        out[p + "loss_score"] = np.array(l_score)
        for opt_name, net_name, attr in self.OPTIMISERS:
            names = [k for k, _ in getattr(self.agent, attr).named_parameters()]
            for k, g in zip(names, self.seen[opt_name], strict=True):
                out[f"{p}grad/{net_name}/{k}"] = g
        out[p + "log_lam_grad"] = self.seen["log_lam_grad"]


if __name__ == "__main__":
    main()
