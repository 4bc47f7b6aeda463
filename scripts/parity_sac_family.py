"""Parity fixtures for the SAC-family baselines: what the authors' SAC-Lag, SAC-AugLag and CAL
agents compute over three consecutive updates, for ``tests/test_parity_sac_family.py``.

This script runs the authors' PyTorch agents from their development repository (CAL, commit
278e338114e6ef4d5d8e925c917fa19b20d088b9: ``agents/saclag/``, ``agents/sacauglag/``,
``agents/cal/`` and their ``configs/``) on a small problem and writes their inputs, weights,
random draws and results to ``tests/fixtures/parity_sac_family.npz``. Neither PyTorch nor the
authors' code is a dependency of algd or of its tests: only this script needs them.

To regenerate the fixture (on any CPU; nothing here needs a GPU):

    python3 -m venv /tmp/ptv && /tmp/ptv/bin/pip install torch==2.13.0 'numpy<2'
    /tmp/ptv/bin/python scripts/parity_sac_family.py --ref /path/to/CAL \\
        --out tests/fixtures/parity_sac_family.npz

with ``/path/to/CAL`` a checkout of the authors' development repository at the commit above.

Each agent is built from its own configuration's defaults (``configs/<agent>.py``'s parser with
no arguments: SAC-Lag one cost critic, k = 0, c = 0; SAC-AugLag one cost critic, k = 0, c = 10;
CAL four cost critics, k = 1, c = 10), changing only the sizes (5-d states, 2-d actions in
[-1, 2] x [-1, 1], so a non-unit scale and a bias; 16-wide networks; batches of 16) and the cost
limit, chosen small so that the cost penalty acts (SAC-AugLag's rectifier reaches lambda in
its update 1 only, so that both of its branches are recorded). SAC-Lag and CAL run in the Safety-Gym setting
(``safetygym`` on and ``epoch_length`` 400, as ``main.py`` sets them for Safety-Gym tasks: the
budget is limit (1 - 0.99^400) / (0.01 * 400) and the cost critics always bootstrap);
SAC-AugLag in the velocity setting (the budget is the limit itself; the cost critics stop at the
same done flags as the reward critics). Each makes ``update_parameters(batch, i)`` for
i = 0, 1, 2 (the index ``main.py`` passes: the position within the block of
``num_train_repeat`` updates), each on its own batch; with ``critic_target_update_frequency`` 2
the targets move after updates 0 and 2 but not after update 1.

What it records, per agent (prefix ``saclag/``, ``sacauglag/``, ``cal/``):

- ``target_cost``, ``safetygym``, ``cost_lim``, ``k``, ``c``, ``ens``: the setting;
- ``layout/<net>``: the names and shapes of each network's parameters (critic, qc, policy), in
  the order in which each flat parameter or gradient array below concatenates them;
- ``init/``: every network's weights (torch layout, one flat array per network; the targets
  start as copies, which is checked here), ``log_alpha`` and ``log_lam``;

and per update (prefix ``u0/``, ``u1/``, ``u2/``):

- ``batch/``: state, action, reward, cost, next_state, mask (the reward critic's not-done flag);
- ``draw0``, ``draw1``: the standard-normal draws of the policy's two samples (at s' for the
  critic targets, at s for the actor), in the order they were made;
- ``y_r``, ``loss_q``, ``y_c`` (E, B), ``loss_qc``: the critics' regression targets and losses;
- ``log_prob`` (B): log pi of the actor's sample; ``qc_actor`` (E, B) and ``qc_replay`` (E, B):
  the cost critics (after their step) at the actor's sample and at the replayed actions;
  ``alpha`` and ``lam``: the temperature and the multiplier the actor loss used; ``rect``:
  the rectifier min(c mean(h - Qc_bar(s, a_replay)), lambda); ``penalty``:
  mean((lambda - rect) Qc_bar(s, a)) computed here from those; ``actor_loss``, ``alpha_loss``
  and ``lam_loss``: the agent's own loss values;
- ``grad/``: every gradient handed to each optimiser (critic, qc, policy, ``log_alpha``,
  ``log_lam``);
- ``after/``: every parameter after the update, targets included, ``log_alpha``, ``log_lam``
  and the dual step's Adam moments ``log_lam_adam_m``, ``log_lam_adam_v`` (its first steps are
  sign-like, so the moments are what show the gradient's size).

The policy's draws (``torch.distributions``' standard normals) are replaced by draws from a
seeded NumPy generator and recorded, so algd can replay them; they avoid the pre-tanh band
2 < |u| < 10, where the authors' log-prob term is ill-conditioned in float32, and put one sample
per draw at |u| = 10.5 (see ``draws``). The agents place themselves on
"cuda"; the script maps that to the CPU. The fixture is about 310 KB.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_parity import cpu_torch, fixture_main  # noqa: E402

OBS, ACT, BATCH, HIDDEN, UPDATES = 5, 2, 16, 16, 3
LOW, HIGH = np.array([-1.0, -1.0]), np.array([2.0, 1.0])  # scale (1.5, 1), bias (0.5, 0)
# name: (config module, its parser, agent module, agent class, Safety-Gym setting)
AGENTS = {
    "saclag": ("configs.saclag", "SACLagParser", "agents.saclag.saclag", "SACLagAgent", True),
    "sacauglag": (
        "configs.sacauglag",
        "SACAugLagParser",
        "agents.sacauglag.sacauglag",
        "SACAugLagAgent",
        False,
    ),
    "cal": ("configs.cal", "CALParser", "agents.cal.cal", "CALAgent", True),
}
# Small limits, so that the penalty acts. The rectifier min(c mean(h - Qc_bar), lambda) stays
# below lambda in CAL's updates; in SAC-AugLag's it reaches lambda (no penalty) in update 1 only.
COST_LIMITS = {"saclag": 0.1, "sacauglag": 0.0785, "cal": 0.15}
SEEDS = {"saclag": 0, "sacauglag": 1, "cal": 2}


def main() -> None:
    fixture_main(__doc__, "parity_sac_family", record)


class _Seen:
    """What one update handed to the hooks below, in order."""

    def __init__(self) -> None:
        self.mse: list[tuple[np.ndarray, float]] = []
        self.means: list[float] = []
        self.samples: list[np.ndarray] = []
        self.qc: list[np.ndarray] = []
        self.draws: list[np.ndarray] = []
        self.grads: dict[str, list[np.ndarray]] = {}


# The pre-tanh sample u = mean + std eps avoids 2 < |u| < 10: there the authors' log-prob term
# log(scale (1 - tanh(u)^2) + 1e-6) is ill-conditioned in float32 (XLA's tanh is within 4 ulps,
# PyTorch's within 0.5, and 1 - tanh^2 cancels), so that the parity test can be strict. Beyond
# 9.02 both round tanh to +-1 exactly: the first sample's first component is put at +-10.5 there,
# so that each update exercises the flat part of that term (where it differs most from the exact
# log-density).
MODERATE, SATURATED = 2.0, 10.5


def draws(rng: np.random.Generator, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Standard-normal eps of loc's shape (B, act), each redrawn while 2 < |loc + scale eps| <
    10; then eps[0, 0] set so that loc + scale eps is +-10.5."""
    eps = rng.standard_normal(loc.shape).astype(np.float32)
    for _ in range(1000):
        u = np.abs(loc + scale * eps)
        bad = (u > MODERATE) & (u < 10.0)
        if not bad.any():
            break
        eps[bad] = rng.standard_normal(int(bad.sum())).astype(np.float32)
    else:
        raise RuntimeError("no moderate draw found")
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    eps[0, 0] = np.float32((sign * SATURATED - loc[0, 0]) / scale[0, 0])
    return eps


def flat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in arrays])


def record(torch, ref_dir: str, out: dict[str, np.ndarray]) -> None:
    """Runs the authors' three SAC-family agents and adds what they compute to ``out``."""
    sys.path.insert(0, str(Path(ref_dir).resolve()))
    import torch.distributions.normal as tnormal
    import torch.nn.functional as F

    real_mse, real_rsample = F.mse_loss, tnormal.Normal.rsample
    seen = _Seen()

    class CpuTorch(cpu_torch(torch)):  # type: ignore[misc]
        @staticmethod
        def mean(*a, **k):  # their loss values and the rectifier
            value = torch.mean(*a, **k)
            seen.means.append(float(value))
            return value

    def mse(x, y):
        loss = real_mse(x, y)
        seen.mse.append((y.detach().numpy().copy(), float(loss)))
        return loss

    for name, (cfg_mod, parser_name, agent_mod, agent_cls, safetygym) in AGENTS.items():
        rng = np.random.default_rng(100 + SEEDS[name])

        def rsample(self, sample_shape=(), _rng=rng):
            """Normal.rsample (loc + eps scale) with recorded draws eps (see draws())."""
            shape = tuple(self._extended_shape(torch.Size(sample_shape)))
            loc = np.broadcast_to(self.loc.detach().numpy(), shape)
            scale = np.broadcast_to(self.scale.detach().numpy(), shape)
            eps = draws(_rng, loc, scale)
            seen.draws.append(eps)
            return self.loc + torch.from_numpy(eps.copy()) * self.scale

        module = importlib.import_module(agent_mod)
        module.torch = CpuTorch()
        argv, sys.argv = sys.argv, [parser_name]
        try:
            args = getattr(importlib.import_module(cfg_mod), parser_name)()  # their defaults
        finally:
            sys.argv = argv
        args.hidden_size = HIDDEN
        args.cost_lim = COST_LIMITS[name]
        if safetygym:  # as main.py sets them for a Safety-Gym task
            args.constraint_type, args.safetygym, args.epoch_length = "safetygym", True, 400
        torch.manual_seed(SEEDS[name])
        space = SimpleNamespace(
            shape=(ACT,), low=LOW.astype(np.float32), high=HIGH.astype(np.float32)
        )
        agent = getattr(module, agent_cls)(OBS, space, args)
        p = f"{name}/"
        out[p + "target_cost"] = np.array(agent.target_cost, np.float64)
        out[p + "safetygym"] = np.array(bool(args.safetygym))
        out[p + "cost_lim"] = np.array(args.cost_lim, np.float64)
        out[p + "k"] = np.array(args.k, np.float64)
        out[p + "c"] = np.array(args.c, np.float64)
        out[p + "ens"] = np.array(args.qc_ens_size)
        nets = {
            "critic": agent.critic,
            "qc": agent.safety_critics,
            "policy": agent.policy,
            "critic_targ": agent.critic_target,
            "qc_targ": agent.safety_critic_targets,
        }

        # Each network's parameters are stored as one flat array (fewer arrays, a smaller file),
        # in the order of its state_dict, which ``layout/<net>`` lists as "name:shape".
        for net_name in ("critic", "qc", "policy"):
            sd = nets[net_name].state_dict()
            assert list(sd) == [k for k, _ in nets[net_name].named_parameters()]
            out[f"{p}layout/{net_name}"] = np.array(
                [f"{k}:{','.join(str(d) for d in v.shape)}" for k, v in sd.items()]
            )

        def save(prefix: str, targets: bool = True, _nets=nets, _agent=agent) -> None:
            for net_name, net in _nets.items():
                if not targets and net_name.endswith("_targ"):
                    continue
                out[prefix + net_name] = flat(net.state_dict().values())
            out[prefix + "log_alpha"] = _agent.log_alpha.detach().numpy().copy()
            out[prefix + "log_lam"] = _agent.log_lam.detach().numpy().copy()
            lam_state = _agent.log_lam_optimizer.state.get(_agent.log_lam, {})
            if lam_state:  # the dual step's Adam moments (its step is sign-like at first)
                out[prefix + "log_lam_adam_m"] = lam_state["exp_avg"].numpy().copy()
                out[prefix + "log_lam_adam_v"] = lam_state["exp_avg_sq"].numpy().copy()

        for online, target in (("critic", "critic_targ"), ("qc", "qc_targ")):
            a, b = nets[online].state_dict(), nets[target].state_dict()
            assert all(torch.equal(a[k], b[k]) for k in a), "targets start as copies"
        save(p + "init/", targets=False)

        # Hooks: the gradient each optimiser is handed, the cost critics' outputs, the samples.
        optimisers = {
            "critic": (agent.critic_optimizer, [agent.critic]),
            "qc": (agent.safety_critic_optimizer, [agent.safety_critics]),
            "policy": (agent.actor_optimizer, [agent.policy]),
            "log_alpha": (agent.log_alpha_optimizer, None),
            "log_lam": (agent.log_lam_optimizer, None),
        }
        for opt_name, (opt, _) in optimisers.items():
            real_step = opt.step

            def step(*a, _opt=opt, _real=real_step, _name=opt_name, **k):
                params = [q for g in _opt.param_groups for q in g["params"]]
                assert _name not in seen.grads, "one step per optimiser and update"
                seen.grads[_name] = [q.grad.detach().numpy().copy() for q in params]
                return _real(*a, **k)

            opt.step = step
        agent.safety_critics.register_forward_hook(
            lambda mod, inp, outp: seen.qc.append(outp.detach().numpy()[..., 0].copy())
        )
        real_sample = agent.policy.sample

        def sample(state, _real=real_sample):
            action, log_prob, mean = _real(state)
            seen.samples.append(log_prob.detach().numpy()[:, 0].copy())
            return action, log_prob, mean

        agent.policy.sample = sample

        for u in range(UPDATES):
            q = f"{p}u{u}/"
            state = rng.standard_normal((BATCH, OBS)).astype(np.float32)
            action = rng.uniform(LOW, HIGH, (BATCH, ACT)).astype(np.float32)
            reward = rng.standard_normal(BATCH).astype(np.float32)
            cost = rng.uniform(0, 1, BATCH).astype(np.float32)
            next_state = rng.standard_normal((BATCH, OBS)).astype(np.float32)
            mask = (rng.uniform(size=BATCH) > 0.25).astype(np.float32)
            batch = dict(
                state=state,
                action=action,
                reward=reward,
                cost=cost,
                next_state=next_state,
                mask=mask,
            )
            for k, v in batch.items():
                out[q + "batch/" + k] = v
            alpha = float(agent.alpha.detach())
            lam = float(agent.lam)
            seen.__init__()
            F.mse_loss, tnormal.Normal.rsample = mse, rsample
            try:
                agent.update_parameters(
                    (state, action, np.stack([reward, cost], axis=1), next_state, mask), u
                )
            finally:
                F.mse_loss, tnormal.Normal.rsample = real_mse, real_rsample
            assert len(seen.draws) == 2 and len(seen.samples) == 2 and len(seen.qc) == 3
            assert len(seen.mse) == 3 and len(seen.means) == 4
            for i, d in enumerate(seen.draws):
                out[f"{q}draw{i}"] = d
            (y_r, l_q1), (_, l_q2), (y_c, l_qc) = seen.mse
            out[q + "y_r"] = y_r[:, 0]
            out[q + "loss_q"] = np.array(l_q1 + l_q2, np.float32)
            out[q + "y_c"] = y_c[..., 0]
            out[q + "loss_qc"] = np.array(l_qc, np.float32)
            out[q + "log_prob"] = seen.samples[1]
            out[q + "qc_actor"], out[q + "qc_replay"] = seen.qc[1], seen.qc[2]
            rect = float(agent.rect)
            out[q + "alpha"] = np.array(alpha, np.float32)
            out[q + "lam"] = np.array(lam, np.float32)
            out[q + "rect"] = np.array(rect, np.float32)
            qc_actor = torch.from_numpy(seen.qc[1])
            std, mean = torch.std_mean(qc_actor, dim=0)
            qc_bar = mean + (args.k * std if args.qc_ens_size > 1 else 0.0)
            out[q + "penalty"] = np.array(float(((lam - rect) * qc_bar).mean()), np.float32)
            out[q + "rect_check"] = np.array(seen.means[0] * args.c, np.float32)
            for i, key in enumerate(("actor_loss", "alpha_loss", "lam_loss")):
                out[q + key] = np.array(seen.means[i + 1], np.float32)
            for opt_name, (_, net_list) in optimisers.items():
                grads = seen.grads[opt_name]
                if net_list is None:
                    out[f"{q}grad/{opt_name}"] = grads[0]
                    continue
                shapes = [tuple(v.shape) for net in net_list for v in net.parameters()]
                assert [g.shape for g in grads] == shapes
                out[f"{q}grad/{opt_name}"] = flat(grads)
            save(q + "after/")


if __name__ == "__main__":
    main()
