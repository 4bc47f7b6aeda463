"""Parity fixtures for the HJ and PPO-Lag baselines from the authors' PyTorch code.

This script runs the authors' HJ agent (``agents/hardhjb/``) and PPO-Lag agent
(``agents/ppolag/``) from their development repository (commit
278e338114e6ef4d5d8e925c917fa19b20d088b9) on small problems and writes their inputs, weights,
random draws and results to ``tests/fixtures/parity_hj_ppo.npz``.
``tests/test_parity_hj_ppo.py`` loads the same weights into algd, replays the same data and
draws through algd's own update, and compares. Neither PyTorch nor the authors' code is a
dependency of algd or of its tests: only this script needs them.

To regenerate the fixture (on any CPU):

    python3 -m venv /tmp/ptv && /tmp/ptv/bin/pip install torch==2.13.0 'numpy<2'
    # a checkout of the authors' development repository at the commit above, in /tmp/ref/CAL
    /tmp/ptv/bin/python scripts/parity_hj_ppo.py --ref /tmp/ref/CAL \\
        --out tests/fixtures/parity_hj_ppo.npz

Both agents run at their configuration's defaults (``configs/hardhjb.py``,
``configs/ppolag.py``, read through the authors' own parsers), with small networks and the
sizes below changed. Observations have 5 dimensions, actions 2 in the box [-1, 2] x [-1, 1]
(scale (1.5, 1), bias (0.5, 0)).

What it records, prefix ``hj/``:

- ``init/``: every network's weights (torch layout): critic, critic_target, safety_critic,
  safety_critic_target, policy, lambda_net; and log_alpha. The safety critic's (and its
  target's) output bias is raised by 1 before anything runs, so that Q_h straddles the
  threshold 1 and the reachability target's max switches branch within the batch;
- ``saturated/``: log pi(a|s) and its gradient w.r.t. every policy parameter from a copy of
  the initial policy whose first action component saturates (pre-tanh u in 5..6.4), where the
  authors' log(scale (1 - y^2) + 1e-6) differs from the exact log-det;
- ``N_UPDATES`` consecutive ``update_parameters(batch, updates=u)`` calls, u = 0, 1, 2 (the
  targets move after u = 0 and u = 2, not after u = 1), each with its own batch
  (``u{u}/batch/...``, costs in [0, 2.5] with zeros, so that some exceed the threshold) and
  its draws (``u{u}/draw{i}``: the reward target's a' ~ pi(.|s'), the safety target's
  a'' ~ pi(.|s'), the actor's a ~ pi(.|s), each the standard-normal noise of
  Normal.rsample); per update: the regression targets and losses of the reward critics
  (``y_r``, ``loss_q``) and of the safety critic (``y_h``, ``loss_qh``), the actor's and
  lambda(s)'s losses, every gradient handed to each optimiser (``grad/<net>/...``, log_alpha's
  included), and after the update every parameter (``after/<net>/...``, targets included),
  log_alpha and the mean of lambda(s) over the batch's states.

Prefix ``ppo_lag/``: one ``update_parameters`` call on a 40-step rollout with one episode end
(``rollout/...``), minibatch 16, 2 epochs (6 gradient steps): the initial weights (policy,
value_r, value_c, log_lam; the policy's log-std bias lowered by 1 before anything runs, so that
the second epoch's ratios leave [0.8, 1.2] and the clipping binds), the draws (``draw{i}``: torch.randperm of each epoch), the old
log-probabilities, the reward and cost advantages and returns, the episode-cost estimate, the
multiplier's gradient and log lambda after its step, per gradient step the losses (actor,
vf_coef x reward value's, cost_vf_coef x cost value's) and every gradient each optimiser is
handed (clipped, as the optimiser sees it), and every parameter after the update.

Every random draw the agents make (``torch.randn``/``randn_like``/``randint`` and, here,
Normal.rsample's standard normal and ``torch.randperm``) is replaced by a draw from a seeded
NumPy generator and recorded in order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_parity import Recorder, fixture_main  # noqa: E402

COMMIT = "278e338114e6ef4d5d8e925c917fa19b20d088b9"
OBS, ACT, HIDDEN, BATCH = 5, 2, 32, 16
LOW, HIGH = np.array([-1.0, -1.0], np.float32), np.array([2.0, 1.0], np.float32)
N_UPDATES = 3
# PPO-Lag: rollout length, where its episode ends, minibatch, epochs, episode length, limit.
T, EPISODE_END, MINIBATCH, EPOCHS, EPISODE, COST_LIMIT = 40, 24, 16, 2, 40, 3.0


class DrawRecorder(Recorder):
    """Recorder, also replacing Normal.rsample's standard normal and torch.randperm."""

    def __init__(self, torch, seed: int) -> None:
        super().__init__(torch, seed)
        import torch.distributions.normal as normal

        self.normal = normal
        self.real_extra = (normal._standard_normal, torch.randperm)

    def standard_normal(self, shape, dtype=None, device=None):
        return self.randn(tuple(shape))

    def randperm(self, n, **kw):
        value = self.rng.permutation(int(n)).astype(np.int64)
        self.draws.append(value)
        return self.torch.from_numpy(value.copy())

    def __enter__(self):
        super().__enter__()
        self.normal._standard_normal, self.torch.randperm = self.standard_normal, self.randperm
        return self

    def __exit__(self, *exc):
        self.normal._standard_normal, self.torch.randperm = self.real_extra
        super().__exit__(*exc)


class Taps:
    """Records what the optimisers are handed and the losses back-propagated, in order."""

    def __init__(self, torch, optimisers: dict[str, Any]) -> None:
        self.torch = torch
        self.steps: dict[str, list[list[np.ndarray]]] = {}
        self.losses: list[float] = []
        self.real_backward = torch.Tensor.backward
        for name, opt in optimisers.items():
            self.watch(name, opt)

    def watch(self, name: str, opt) -> None:
        real = opt.step
        self.steps[name] = []

        def step(*a, **k):
            params = [q for g in opt.param_groups for q in g["params"]]
            self.steps[name].append([q.grad.detach().numpy().copy() for q in params])
            return real(*a, **k)

        opt.step = step

    def __enter__(self):
        taps, real = self, self.real_backward

        def backward(tensor, *a, **k):
            taps.losses.append(float(tensor.detach()))
            return real(tensor, *a, **k)

        self.torch.Tensor.backward = backward
        return self

    def __exit__(self, *exc):
        self.torch.Tensor.backward = self.real_backward

    def take(self) -> tuple[dict[str, list[list[np.ndarray]]], list[float]]:
        steps, losses = self.steps, self.losses
        self.steps, self.losses = {k: [] for k in steps}, []
        return steps, losses


def parser_defaults(parse) -> argparse.Namespace:
    """The authors' configuration defaults, read through their own parser."""
    argv, sys.argv = sys.argv, [sys.argv[0]]
    try:
        return parse()
    finally:
        sys.argv = argv


def box():
    return argparse.Namespace(shape=(ACT,), low=LOW.copy(), high=HIGH.copy())


def save_net(out: dict[str, np.ndarray], prefix: str, net) -> None:
    for k, v in net.state_dict().items():
        out[f"{prefix}/{k}"] = v.detach().numpy().copy()


def save_grads(out: dict[str, np.ndarray], prefix: str, net, grads: list[np.ndarray]) -> None:
    names = [k for k, _ in net.named_parameters()]
    assert len(names) == len(grads)
    for k, g in zip(names, grads):
        out[f"{prefix}/{k}"] = g


def record_hj(torch, ref: Path, out: dict[str, np.ndarray]) -> None:
    from agents.hardhjb import hardhjb
    from configs.hardhjb import HJBParser

    p = "hj/"
    args = parser_defaults(HJBParser)
    args.hidden_size = HIDDEN
    torch.manual_seed(0)
    agent = hardhjb.HJBAgent(OBS, box(), args)
    assert agent.safety_threshold == 1.0 and not hasattr(args, "safety_threshold")
    with torch.no_grad():
        agent.safety_critic.linear3.bias += 1.0
    agent.safety_critic_target.load_state_dict(agent.safety_critic.state_dict())
    nets = {
        "critic": agent.critic,
        "critic_target": agent.critic_target,
        "safety_critic": agent.safety_critic,
        "safety_critic_target": agent.safety_critic_target,
        "policy": agent.policy,
        "lambda_net": agent.lambda_net,
    }

    def save_state(prefix: str) -> None:
        for name, net in nets.items():
            save_net(out, f"{prefix}/{name}", net)
        out[f"{prefix}/log_alpha"] = agent.log_alpha.detach().numpy().copy()

    save_state(p + "init")
    out[p + "n_updates"] = np.array(N_UPDATES)
    record_saturated_log_prob(torch, agent, out)
    optimisers = {
        "critic": agent.critic_optimizer,
        "safety_critic": agent.safety_critic_optimizer,
        "policy": agent.actor_optimizer,
        "log_alpha": agent.log_alpha_optimizer,
        "lambda_net": agent.lambda_optimizer,
    }
    taps = Taps(torch, optimisers)
    seen: list[tuple[np.ndarray, float]] = []
    real_mse = hardhjb.F.mse_loss

    def mse(x, y):
        loss = real_mse(x, y)
        seen.append((y.detach().numpy()[:, 0].copy(), float(loss.detach())))
        return loss

    rng = np.random.default_rng(1)
    rec = DrawRecorder(torch, seed=2)
    hardhjb.F.mse_loss = mse
    try:
        for u in range(N_UPDATES):
            q = f"{p}u{u}/"
            state = rng.standard_normal((BATCH, OBS)).astype(np.float32)
            action = rng.uniform(LOW, HIGH, (BATCH, ACT)).astype(np.float32)
            reward = rng.standard_normal(BATCH).astype(np.float32)
            cost = (rng.uniform(0, 2.5, BATCH) * (rng.uniform(size=BATCH) > 0.3)).astype(np.float32)
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
            memory = (state, action, np.stack([reward, cost], 1), next_state, mask)
            with rec, taps:
                agent.update_parameters(memory, u)
            draws = rec.take()
            assert [d.shape for d in draws] == [(BATCH, ACT)] * 3
            for i, d in enumerate(draws):
                out[f"{q}draw{i}"] = d
            steps, losses = taps.take()
            assert len(losses) == 5  # critic, safety critic, actor, alpha, lambda(s)
            out[q + "loss_actor"] = np.array(losses[2], np.float32)
            out[q + "loss_lambda"] = np.array(losses[4], np.float32)
            (y_r, l_q1), (y_r2, l_q2), (y_h, l_qh) = seen
            seen.clear()
            assert np.array_equal(y_r, y_r2)
            out[q + "y_r"], out[q + "loss_q"] = y_r, np.array(l_q1 + l_q2, np.float32)
            out[q + "y_h"], out[q + "loss_qh"] = y_h, np.array(l_qh, np.float32)
            for name, grads in steps.items():
                (g,) = grads
                if name == "log_alpha":
                    out[q + "grad/log_alpha"] = g[0][0]
                else:
                    save_grads(out, f"{q}grad/{name}", nets[name], g)
            save_state(q + "after")
            with torch.no_grad():
                lam = torch.nn.functional.softplus(agent.lambda_net(torch.from_numpy(state)))
            out[q + "lambda_mean"] = lam.mean().numpy()
            print(
                f"hj update {u}: Q_h(s',a'') > h on "
                f"{np.mean(y_h > (1 - args.safety_gamma) * cost + args.safety_gamma * cost):.2f}"
                f" of the batch, losses {losses}"
            )
    finally:
        hardhjb.F.mse_loss = real_mse


def record_saturated_log_prob(torch, agent, out: dict[str, np.ndarray]) -> None:
    """log pi(a|s) of the authors' actor where the first action component saturates (the
    pre-tanh u near 5-6, where their 1e-6 inside the log changes the log-det's gradient by
    0.5-3%), and its gradient: a copy of the initial policy with that component's mean bias
    raised by 5.5 and its log-std bias lowered by 1."""
    import copy

    p = "hj/saturated/"
    policy = copy.deepcopy(agent.policy)
    with torch.no_grad():
        policy.mean_linear.bias[0] += 5.5
        policy.log_std_linear.bias -= 1.0
    save_net(out, p + "policy", policy)
    state = np.random.default_rng(5).standard_normal((BATCH, OBS)).astype(np.float32)
    out[p + "state"] = state
    rec = DrawRecorder(torch, seed=6)
    with rec:
        _, log_prob, _ = policy.sample(torch.from_numpy(state))
    (draw,) = rec.take()
    out[p + "draw"] = draw
    out[p + "log_prob"] = log_prob.detach().numpy()[:, 0].copy()
    policy.zero_grad()
    log_prob.sum().backward()
    for k, v in policy.named_parameters():
        out[f"{p}grad/{k}"] = v.grad.numpy().copy()
    with torch.no_grad():
        mean, log_std = policy(torch.from_numpy(state))
        u = (mean + log_std.exp() * torch.from_numpy(draw))[:, 0].numpy()
    print(f"hj saturated log-prob: u in [{u.min():.2f}, {u.max():.2f}]")


def record_ppo(torch, ref: Path, out: dict[str, np.ndarray]) -> None:
    from agents.ppolag import ppolag
    from configs.ppolag import PPOLagParser

    p = "ppo_lag/"
    args = parser_defaults(PPOLagParser)
    # As main_on_policy.py sets them on a Safety-Gym task, with a short episode.
    args.hidden_size, args.minibatch_size, args.ppo_epochs = HIDDEN, MINIBATCH, EPOCHS
    args.safetygym, args.epoch_length, args.cost_lim = True, EPISODE, COST_LIMIT
    torch.manual_seed(0)
    agent = ppolag.PPOLagAgent(OBS, box(), args)
    assert agent.clip_eps == 0.2 and agent.entropy_coef == 0.0 and agent.target_kl is None
    with torch.no_grad():  # a narrower policy, so that the second epoch's ratios leave 1 +- 0.2
        agent.policy.log_std_linear.bias -= 1.0
    nets = {"policy": agent.policy, "value_r": agent.value_r, "value_c": agent.value_c}

    def save_state(prefix: str) -> None:
        for name, net in nets.items():
            save_net(out, f"{prefix}/{name}", net)
        out[f"{prefix}/log_lam"] = np.float32(agent.log_lam.detach().numpy())

    save_state(p + "init")
    rng = np.random.default_rng(3)
    obs = rng.standard_normal((T + 1, OBS)).astype(np.float32)
    next_obs = obs[1:].copy()
    next_obs[EPISODE_END] = rng.standard_normal(OBS)  # the episode's last state
    action = rng.uniform(LOW, HIGH, (T, ACT)).astype(np.float32)
    action[3] = HIGH  # an action on the box's edge: log pi at the clamped atanh
    reward = rng.standard_normal(T).astype(np.float32)
    cost = (rng.uniform(size=T) < 0.3).astype(np.float32)
    mask = np.ones(T, np.float32)
    mask[EPISODE_END] = 0.0
    rollout = dict(
        obs=obs[:T], action=action, reward=reward, cost=cost, next_obs=next_obs, mask=mask
    )
    for k, v in rollout.items():
        out[p + "rollout/" + k] = v

    optimisers = {
        "log_lam": agent.log_lam_optimizer,
        "policy": agent.actor_optimizer,
        "value_r": agent.vr_optimizer,
        "value_c": agent.vc_optimizer,
    }
    taps = Taps(torch, optimisers)
    gae_out: list[tuple[np.ndarray, np.ndarray]] = []
    real_gae = agent._gae

    def gae(*a, **k):
        adv, ret = real_gae(*a, **k)
        gae_out.append((adv.numpy()[:, 0].copy(), ret.numpy()[:, 0].copy()))
        return adv, ret

    agent._gae = gae
    logps: list[np.ndarray] = []
    real_log_prob = agent.policy.log_prob

    def log_prob(*a, **k):
        value = real_log_prob(*a, **k)
        logps.append(value.detach().numpy()[:, 0].copy())
        return value

    agent.policy.log_prob = log_prob
    rec = DrawRecorder(torch, seed=4)
    memory = (obs[:T], action, np.stack([reward, cost], 1), next_obs, mask)
    with rec, taps:
        info = agent.update_parameters(memory, 0)
    draws = rec.take()
    assert [d.shape for d in draws] == [(T,)] * EPOCHS
    out[p + "n_draws"] = np.array(len(draws))
    for i, d in enumerate(draws):
        out[f"{p}draw{i}"] = d
    steps, losses = taps.take()
    n_steps = EPOCHS * -(-T // MINIBATCH)
    assert len(losses) == 1 + 3 * n_steps and len(steps["policy"]) == n_steps
    out[p + "old_logp"] = logps[0]
    (adv_r, ret_r), (adv_c, ret_c) = gae_out
    out[p + "adv_r"], out[p + "ret_r"], out[p + "adv_c"], out[p + "ret_c"] = (
        adv_r,
        ret_r,
        adv_c,
        ret_c,
    )
    out[p + "jc_hat"] = np.float32(info["jc_hat"])
    out[p + "target_cost"] = np.float32(info["target_cost"])
    out[p + "grad/log_lam"] = np.float32(steps["log_lam"][0][0])
    out[p + "n_steps"] = np.array(n_steps)
    out[p + "losses"] = np.array(losses[1:], np.float32).reshape(n_steps, 3)
    for j in range(n_steps):
        for name in ("policy", "value_r", "value_c"):
            save_grads(out, f"{p}step{j}/grad/{name}", nets[name], steps[name][j])
    save_state(p + "after")
    print(f"ppo_lag: jc_hat {info['jc_hat']:.3f}, budget {info['target_cost']:.3f}")


def record(torch, ref_dir: str, out: dict[str, np.ndarray]) -> None:
    """Record the authors' HJ and PPO-Lag agents (a checkout at ``ref_dir``) into ``out``."""
    ref = Path(ref_dir).resolve()
    sys.path.insert(0, str(ref))
    out["commit"] = np.array(COMMIT)
    torch.set_num_threads(1)
    record_hj(torch, ref, out)
    record_ppo(torch, ref, out)


def main() -> None:
    fixture_main(__doc__, "parity_hj_ppo", record)


if __name__ == "__main__":
    main()
