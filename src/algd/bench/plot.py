"""``algd plot RUN_DIR...``: the curves of one run or a few, finished or still training.

Three panels against environment steps: the deterministic evaluations' return, their cost in
the units the limit is stated in (the limit drawn; evaluations over it marked), and the
multiplier lambda from the metrics log. One line per run, labelled ``algo seed`` (with the run's
folder where two labels would collide). PNG and SVG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from algd.bench.report import COLUMNS, read_csv, read_json
from algd.errors import AlgdError, RunDirError
from algd.outputs import StagedFolder, check_folder

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
    return {"dir": run, "algo": cfg.algo, "seed": cfg.seed, "limit": limit, "kind": kind, **logs}


def plot(run_dirs: list[str], out: str, overwrite: bool = False) -> dict[str, Any]:
    """Draw the runs' curves into ``out``/plot.png and .svg; returns what was drawn."""
    if not run_dirs:
        raise AlgdError("algd plot: give at least one RUN_DIR")
    runs = [load(Path(d)) for d in run_dirs]
    out_dir = Path(out)
    check_folder(out_dir, FILES, overwrite, "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['algo']} s{r['seed']}" for r in runs]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({r['dir'].name})" for label, r in zip(labels, runs)]
    fig, (ax_ret, ax_cost, ax_lam) = plt.subplots(1, 3, figsize=(15, 4))
    limits = sorted({(r["limit"], r["kind"]) for r in runs})
    drawn = []
    for r, label in zip(runs, labels):
        ev, metrics = r["eval"], r["metrics"]
        if ev:
            line = ax_ret.plot(ev["step"], ev["return_mean"], marker=".", label=label)[0]
            cost = ev["cost_vs_limit"]
            ax_cost.plot(ev["step"], cost, marker=".", color=line.get_color(), label=label)
            over = cost > r["limit"]
            ax_cost.scatter(ev["step"][over], cost[over], marker="x", color="red", zorder=3)
        if metrics and "lambda" in metrics:
            ax_lam.plot(metrics["step"], metrics["lambda"], label=label)
        drawn.append(
            {
                "run_dir": str(r["dir"]),
                "label": label,
                "evaluations": int(len(ev.get("step", []))) if ev else 0,
                "final_return": float(ev["return_mean"][-1]) if ev else None,
                "final_cost": float(ev["cost_vs_limit"][-1]) if ev else None,
                "limit": r["limit"],
            }
        )
    for value, kind in limits:
        ax_cost.axhline(value, color="black", linestyle="--", label=f"limit {value:g} ({kind})")
    ax_ret.set_title("evaluation return")
    ax_cost.set_title("evaluation cost (x: over the limit)")
    ax_lam.set_title("multiplier lambda")
    for ax in (ax_ret, ax_cost, ax_lam):
        ax.set_xlabel("environment steps")
        ax.grid(alpha=0.3)
    ax_cost.legend(fontsize=8)
    ax_ret.legend(fontsize=8)
    fig.tight_layout()
    try:
        with StagedFolder(out_dir, overwrite, "plot", FILES) as stage:
            for name in FILES:
                fig.savefig(stage / name, dpi=110)
    finally:
        plt.close(fig)
    return {"out": str(out_dir), "files": list(FILES), "runs": drawn}
