"""``algd landscape``: the energies L and L_A over a 2-D action square, made checkable.

From a trained run's critics and multiplier at one state: heatmaps of the standard Lagrangian
L = -Q + lambda (Qc_bar - h) and the augmented Lagrangian L_A, the feasibility boundary
Qc_bar = h, the actions sampled by one or more runs' policies at that state, and curvature
diagnostics from the action-Hessian of each energy at every grid point: the share where it is
indefinite (one positive, one negative eigenvalue), the share where it is not positive
semi-definite, and the mean smallest eigenvalue. The augmented term adds
rho grad Qc_bar grad Qc_bar^T where lambda + rho (Qc_bar - h) > 0, so L_A should be indefinite
on no larger a share of the grid than L.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd.errors import AlgdError
from algd.lagrangian import augmented_energy, lagrangian_energy
from algd.outputs import StagedFolder


def _energies(agent: Any, state: Any, obs: np.ndarray, lam: float) -> tuple[Any, Any, Any]:
    """Functions a (2,) -> L, L_A, Qc_bar at the fixed state."""
    obs_j = jnp.asarray(obs)[None]
    lam_j = jnp.float32(lam)

    def parts(a: jax.Array) -> tuple[jax.Array, jax.Array]:
        q = agent.q_all(state.q, obs_j, a[None]).min(0)[0]
        qc_bar = agent.qc_bar(state.qc, obs_j, a[None])[0]
        return q, qc_bar

    def energy_l(a: jax.Array) -> jax.Array:
        q, qc = parts(a)
        return lagrangian_energy(q, qc, lam_j, agent.h)

    def energy_la(a: jax.Array) -> jax.Array:
        q, qc = parts(a)
        return augmented_energy(q, qc, lam_j, agent.h, agent.a.lagrangian.rho)

    return energy_l, energy_la, lambda a: parts(a)[1]


def curvature(hessians: np.ndarray) -> dict[str, float]:
    """Diagnostics of (G, 2, 2) symmetric Hessians."""
    eig = np.linalg.eigvalsh(hessians)
    scale = np.maximum(np.abs(eig).max(axis=-1), 1e-12)
    tol = 1e-6 * scale
    indefinite = (eig[:, 0] < -tol) & (eig[:, 1] > tol)
    not_psd = eig[:, 0] < -tol
    return {
        "indefinite_share": float(indefinite.mean()),
        "not_psd_share": float(not_psd.mean()),
        "mean_min_eigenvalue": float(eig[:, 0].mean()),
    }


FILES = ("landscape.png", "landscape.svg", "landscape.json")


def landscape(
    run_dirs: list[str],
    out_dir: str,
    grid: int = 81,
    samples: int = 1000,
    seed: int = 0,
    lam: float | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Energies of ``run_dirs[0]``'s critics; sampled actions of every run. Writes
    landscape.png, landscape.svg and landscape.json into ``out_dir``."""
    from algd.api import load_agent
    from algd.envs import env_for

    _check_args(grid, samples, seed)
    staged = StagedFolder(Path(out_dir), overwrite, "landscape", FILES)  # checked first
    runs = [load_agent(d) for d in run_dirs]
    cfg, agent, state, _ = runs[0]
    _check_first(cfg, agent)
    env = env_for(cfg)
    obs, _ = env.reset(seed)
    env.close()
    lam_used = float(state.mult.lam) if lam is None else float(lam)
    energy_l, energy_la, qc_bar = _energies(agent, state, obs, lam_used)

    low, high = np.asarray(agent.spec.act_low), np.asarray(agent.spec.act_high)
    xs = np.linspace(low[0], high[0], grid)
    ys = np.linspace(low[1], high[1], grid)
    points = jnp.asarray(
        np.stack(np.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2), jnp.float32
    )
    values = {}
    diagnostics: dict[str, Any] = {
        "env": cfg.env,
        "critics_from": run_dirs[0],
        "lambda": lam_used,
        "rho": agent.a.lagrangian.rho,
        "h": agent.h,
        "grid": grid,
    }
    for name, fn in (("L", energy_l), ("L_A", energy_la)):
        values[name] = np.asarray(jax.vmap(fn)(points)).reshape(grid, grid)
        hess = np.asarray(jax.vmap(jax.hessian(fn))(points))
        diagnostics[name] = curvature(hess)
    qc_grid = np.asarray(jax.vmap(qc_bar)(points)).reshape(grid, grid)
    diagnostics["feasible_share"] = float((qc_grid <= agent.h).mean())
    sampled = _sampled(run_dirs, runs, obs, samples, seed, qc_bar, agent.h, diagnostics)
    with staged as stage:
        _plot(stage, xs, ys, values, qc_grid, agent.h, sampled, diagnostics)
        (stage / "landscape.json").write_text(json.dumps(diagnostics, indent=2) + "\n")
    return diagnostics


def _check_args(grid: int, samples: int, seed: int) -> None:
    if grid < 5 or samples < 1:
        raise AlgdError("landscape: --grid must be >= 5 and --samples >= 1")
    if not 0 <= seed < 2**31:
        raise AlgdError(f"landscape: --seed must be in [0, 2^31) (got {seed})")


def _check_first(cfg: Any, agent: Any) -> None:
    """The first run gives the critics: an off-policy agent on a 2-D action space."""
    from algd.agents.base import OffPolicyAgent

    if not isinstance(agent, OffPolicyAgent):
        raise AlgdError(
            f"landscape reads the Q and Qc critics of the first run; {cfg.algo} has none "
            "(give an off-policy run first)"
        )
    if agent.act_dim != 2:
        raise AlgdError(f"landscape needs a 2-D action space; {cfg.env} has {agent.act_dim}")


def _sampled(
    run_dirs: list[str],
    runs: list[Any],
    obs: np.ndarray,
    samples: int,
    seed: int,
    qc_bar: Any,
    h: float,
    diagnostics: dict[str, Any],
) -> dict[str, np.ndarray]:
    """``samples`` stochastic actions of each run's policy at ``obs`` (by label), each run's
    feasible share and mean action added to ``diagnostics["samples"]``."""
    sampled = {}
    key = jax.random.PRNGKey(seed)
    for run_dir, (rcfg, ragent, rstate, _) in zip(run_dirs, runs):
        batch = jnp.tile(jnp.asarray(obs), (samples, 1))
        acts = np.asarray(ragent.policy(rstate.actor, batch, key, False))
        qc_acts = np.asarray(jax.vmap(qc_bar)(jnp.asarray(acts)))
        sampled[f"{rcfg.algo} ({Path(run_dir).name})"] = acts
        diagnostics.setdefault("samples", {})[run_dir] = {
            "algo": rcfg.algo,
            "feasible_share": float((qc_acts <= h).mean()),
            "mean": acts.mean(0).tolist(),
        }
    return sampled


def _plot(
    out: Path,
    xs: np.ndarray,
    ys: np.ndarray,
    values: dict[str, np.ndarray],
    qc_grid: np.ndarray,
    h: float,
    sampled: dict[str, np.ndarray],
    diagnostics: dict[str, Any],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8), constrained_layout=True)
    markers = ["o", "x", "^", "s"]
    for ax, name in zip(axes, ("L", "L_A")):
        mesh = ax.pcolormesh(xs, ys, values[name], shading="auto", cmap="viridis")
        fig.colorbar(mesh, ax=ax)
        ax.contour(xs, ys, qc_grid, levels=[h], colors="white", linewidths=1.5)
        for i, (label, acts) in enumerate(sampled.items()):
            ax.scatter(acts[:, 0], acts[:, 1], s=4, alpha=0.35, marker=markers[i % 4], label=label)
        share = diagnostics[name]["indefinite_share"]
        ax.set_title(f"{name} (Hessian indefinite on {share:.0%} of the grid)")
        ax.set_xlabel("a[0]")
        ax.set_ylabel("a[1]")
    axes[1].legend(loc="lower left", fontsize=8, markerscale=3)
    fig.suptitle(
        f"{diagnostics['env']}: lambda = {diagnostics['lambda']:.3g}, "
        f"white line: Qc_bar = h = {h:.3g}"
    )
    fig.savefig(out / "landscape.png", dpi=120)
    fig.savefig(out / "landscape.svg")
    plt.close(fig)
