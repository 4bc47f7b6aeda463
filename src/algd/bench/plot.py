"""``algd plot RUN_DIR...``: the curves of one run or a few, finished or still training.

Three panels against environment steps: the deterministic evaluations' return, their cost in
the units the limit is stated in (the limit drawn; evaluations over it marked), and the
multiplier lambda from the metrics log. One line per run, labelled ``algo seed`` (with the run's
folder where two labels would collide). PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from algd.bench.report import COLUMNS, lambda_axis, read_csv, read_json
from algd.errors import AlgdError, RunDirError
from algd.outputs import StagedFolder

FILES = ("plot.png", "plot.svg")


def _limit(run: Path, cfg: Any) -> tuple[float, str]:
    """The run's cost limit and its kind: from summary.json, else from its env."""
    summary = run / "summary.json"
    if summary.is_file():
        data = read_json(summary, ("cost_limit", "cost_limit_kind"))
        return float(data["cost_limit"]), str(data["cost_limit_kind"])
    from algd.envs import env_for

    env = env_for(cfg)
    env.close()
    return env.spec.cost_limit, env.spec.cost_limit_kind


def load(run: Path) -> dict[str, Any]:
    from algd.rundir import is_group_dir, load_run_config

    if is_group_dir(run):
        raise RunDirError(f"{run} is a group of seeds; give its seeds' folders ({run}/s*)")
    cfg = load_run_config(run)
    limit, kind = _limit(run, cfg)
    logs = {name: read_csv(run / f"{name}.csv", COLUMNS[name]) for name in ("eval", "metrics")}
    return {
        "dir": run,
        "env": cfg.env,
        "algo": cfg.algo,
        "seed": cfg.seed,
        "limit": limit,
        "kind": kind,
        **logs,
    }


def _draw_env(
    axes: tuple[Any, Any, Any], env: str, runs: list[tuple[dict[str, Any], str]]
) -> list[dict[str, Any]]:
    """One env's runs: evaluation return, evaluation cost against its limit, lambda."""
    ax_ret, ax_cost, ax_lam = axes
    drawn, lambdas = [], []
    for r, label in runs:
        ev, metrics = r["eval"], r["metrics"]
        if ev:
            line = ax_ret.plot(ev["step"], ev["return_mean"], marker=".", label=label)[0]
            cost = ev["cost_vs_limit"]
            ax_cost.plot(ev["step"], cost, marker=".", color=line.get_color(), label=label)
            over = cost > r["limit"]
            ax_cost.scatter(ev["step"][over], cost[over], marker="x", color="red", zorder=3)
        if metrics and "lambda" in metrics:
            ax_lam.plot(metrics["step"], metrics["lambda"], label=label)
            lambdas.append(metrics["lambda"])
        drawn.append(
            {
                "run_dir": str(r["dir"]),
                "env": env,
                "label": label,
                "evaluations": int(len(ev.get("step", []))) if ev else 0,
                "final_return": float(ev["return_mean"][-1]) if ev else None,
                "final_cost": float(ev["cost_vs_limit"][-1]) if ev else None,
                "limit": r["limit"],
            }
        )
    for value, kind in sorted({(r["limit"], r["kind"]) for r, _ in runs}):
        ax_cost.axhline(value, color="black", linestyle="--", label=f"limit {value:g} ({kind})")
    lambda_axis(ax_lam, lambdas)
    for ax, title, unit in (
        (ax_ret, "evaluation return", "return"),
        (ax_cost, "evaluation cost (x: over the limit)", "cost, in the limit's units"),
        (ax_lam, "multiplier lambda", "lambda"),
    ):
        ax.set_title(f"{env}: {title}")
        ax.set_xlabel("environment steps")
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
    ax_cost.legend(fontsize=8)
    ax_ret.legend(fontsize=8)
    return drawn


def plot(run_dirs: list[str], out: str, overwrite: bool = False) -> dict[str, Any]:
    """Draw the runs' curves into ``out``/plot.png and .svg; returns what was drawn."""
    if not run_dirs:
        raise AlgdError("algd plot: give at least one RUN_DIR")
    runs = [load(Path(d)) for d in run_dirs]
    out_dir = Path(out)
    staged = StagedFolder(out_dir, overwrite, "plot", FILES)  # checked before drawing
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({r["env"] for r in runs})
    # One row of panels per env: its own title, limit line and scales.
    fig, axes = plt.subplots(len(envs), 3, figsize=(15, 4 * len(envs)), squeeze=False)
    drawn = []
    for row, env in zip(axes, envs):
        mine = [r for r in runs if r["env"] == env]
        labels = [f"{r['algo']} s{r['seed']}" for r in mine]
        if len(set(labels)) < len(labels):
            labels = [f"{label} ({r['dir'].name})" for label, r in zip(labels, mine)]
        drawn += _draw_env(tuple(row), env, list(zip(mine, labels)))
    fig.tight_layout()
    try:
        with staged as stage:
            for name in FILES:
                fig.savefig(stage / name, dpi=110)
    finally:
        plt.close(fig)
    return {"out": str(out_dir), "files": list(FILES), "runs": drawn}
