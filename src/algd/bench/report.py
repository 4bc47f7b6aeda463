"""``algd report RESULTS_DIR``: tables and plots over a folder of finished runs.

Runs are grouped by (env, algorithm); seeds are the runs of a group. Per group:
- final deterministic evaluation return and cost (the cost the limit is stated in): mean and
  95% confidence interval across seeds (Student t);
- the share of all evaluations (every seed, every evaluation) over the limit;
- cumulative cost paid by the training rollouts (safety while learning), mean across seeds;
- the multiplier's variability: std of lambda over the second half of training, mean across seeds;
- wall time per run.
Plots (PNG and SVG): evaluation return and cost curves with across-seed bands (min to max) and
the limit drawn, multiplier traces (of the multipliers that moved), average violation
max(0, cost - limit) of the evaluations, and per-quarter box plots of the training rollouts'
episode costs in the limit's units (discounted where the limit is on the discounted cost).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from algd.errors import AlgdError, RunDirError
from algd.logs import cost_name
from algd.outputs import StagedFolder

# The columns the report and the plots read from each CSV log.
COLUMNS = {
    "eval": ("step", "return_mean", "cost_vs_limit"),
    "episodes": ("step", "cost"),
    "metrics": ("step",),
}


def read_csv(path: Path, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A CSV log's columns as float arrays ({} when the file is missing or has no rows); a
    damaged file (not UTF-8 CSV, a row wider than the header, a non-number, a missing
    ``required`` column) is one RunDirError naming it."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        if any(None in row for row in rows):
            raise ValueError("a row has more fields than the header")
        missing = [c for c in required if rows and c not in rows[0]]
        if missing:
            raise ValueError(f"no column '{missing[0]}'")
        return {k: np.array([_number(r[k]) for r in rows]) for k in (rows[0] if rows else ())}
    except (OSError, UnicodeDecodeError, csv.Error, ValueError) as exc:
        reason = str(exc).splitlines()[0][:100] if str(exc) else type(exc).__name__
        raise RunDirError(f"{path} is damaged ({reason}); remove or repair the run") from None


def _number(text: str | None) -> float:
    return np.nan if text in ("", None) else float(str(text))


def find_runs(root: Path) -> list[Path]:
    """Finished run directories (with summary.json) under root, at any depth."""
    return sorted(p.parent for p in root.rglob("summary.json"))


def find_failures(root: Path) -> list[dict[str, Any]]:
    """The runs under root that diverged (failure.json, no summary): env, algo, seed, the step
    and the reason, in path order."""
    out = []
    for path in sorted(root.rglob("failure.json")):
        if (path.parent / "summary.json").exists():
            continue
        record = read_json(path, ("env", "algo", "seed", "error"))
        keys = ("env", "algo", "seed", "env_steps", "error")
        out.append({k: record.get(k) for k in keys})
    return out


def _ci95(values: list[float]) -> tuple[float, float]:
    x = np.asarray(values, float)
    if len(x) < 2:
        return float(x.mean()), float("nan")
    from scipy import stats

    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)


SUMMARY_KEYS = ("algo", "env", "seed", "cost_limit", "cost_limit_kind", "wall_s")


def read_json(path: Path, keys: tuple[str, ...]) -> dict[str, Any]:
    """A JSON object holding ``keys``; anything else is one clear RunDirError."""
    try:
        data = json.loads(path.read_bytes().decode())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        raise RunDirError(f"{path} is not a readable JSON file; remove or repair it") from None
    missing = [k for k in keys if k not in data] if isinstance(data, dict) else list(keys)
    if missing:
        raise RunDirError(
            f"{path} is not an algd run file (no '{missing[0]}'); remove or repair it"
        )
    return data


def variant(run: Path, algo: str) -> str:
    """' (TAG)' for a run of a grid's sweep (OUT/ENV/ALGO/TAG/sSEED), so that each setting of
    the sweep gets its own row; '' otherwise."""
    if run.parent.name != algo and run.parent.parent.name == algo:
        return f" ({run.parent.name})"
    return ""


def load_run(run: Path) -> dict[str, Any]:
    summary = read_json(run / "summary.json", SUMMARY_KEYS)
    config = read_json(run / "config.json", ("total_steps",))
    logs = {name: read_csv(run / f"{name}.csv", COLUMNS[name]) for name in COLUMNS}
    return {
        "dir": run,
        "algo": summary["algo"] + variant(run, summary["algo"]),
        "env": summary["env"],
        "seed": summary["seed"],
        "limit": summary["cost_limit"],
        "kind": summary["cost_limit_kind"],
        "total": config["total_steps"],
        "wall_s": summary["wall_s"],
        **logs,
    }


def lambda_spread(step: np.ndarray, lam: np.ndarray, total: int) -> tuple[float, float]:
    """The multiplier's standard deviation over the second half of a run, and its standard
    deviation about its least-squares line there: a multiplier that climbs or decays steadily
    has a large first and a small second; one that oscillates has both large. NaN where the
    second half has fewer than 3 logged values."""
    late = step >= total / 2
    if late.sum() < 3:
        return float("nan"), float("nan")
    x, y = step[late].astype(np.float64), lam[late].astype(np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    return float(np.std(y)), float(np.std(y - (slope * x + intercept)))


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        groups[(r["env"], r["algo"])].append(r)
    table = []
    for (env, algo), members in sorted(groups.items()):
        limit = members[0]["limit"]
        final_ret = [float(r["eval"]["return_mean"][-1]) for r in members if r["eval"]]
        final_cost = [float(r["eval"]["cost_vs_limit"][-1]) for r in members if r["eval"]]
        all_costs = np.concatenate([r["eval"]["cost_vs_limit"] for r in members if r["eval"]])
        train_cost = [float(np.nansum(r["episodes"].get("cost", np.zeros(1)))) for r in members]
        spreads = [
            lambda_spread(r["metrics"]["step"], r["metrics"]["lambda"], r["total"])
            for r in members
            if r["metrics"]
        ]
        late = [
            r["eval"]["cost_vs_limit"][r["eval"]["step"] > 0.75 * r["total"]]
            for r in members
            if r["eval"]
        ]
        late_costs = np.concatenate(late) if late else np.zeros(0)
        ret_mean, ret_ci = _ci95(final_ret)
        cost_mean, cost_ci = _ci95(final_cost)
        table.append(
            {
                "env": env,
                "algo": algo,
                "seeds": len(members),
                "limit": limit,
                "return_mean": ret_mean,
                "return_ci95": ret_ci,
                "cost_mean": cost_mean,
                "cost_ci95": cost_ci,
                "over_limit_share": float(np.mean(all_costs > limit)),
                "final_under_limit_seeds": int(sum(c <= limit for c in final_cost)),
                "last_quarter_under_share": (
                    float(np.mean(late_costs <= limit)) if late_costs.size else float("nan")
                ),
                "training_cost_mean": float(np.mean(train_cost)),
                "lambda_std_second_half": _nanmean([a for a, _ in spreads]),
                "lambda_detrended_std_second_half": _nanmean([b for _, b in spreads]),
                "wall_s_mean": float(np.mean([r["wall_s"] for r in members])),
            }
        )
    return table


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


FEW_SEEDS = " (2 seeds)"  # marks a t-interval over fewer than three seeds


def markdown(table: list[dict[str, Any]]) -> str:
    def pm(mean: float, ci: float, seeds: int) -> str:
        if math.isnan(ci):
            return f"{mean:.2f}"
        return f"{mean:.2f} +- {ci:.2f}" + (FEW_SEEDS if seeds < 3 else "")

    lines = [
        "| env | algorithm | seeds | final return (95% CI) | final cost (95% CI) | limit | "
        "evals over limit | training cost | lambda std, 2nd half | lambda std about trend | "
        "wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row['env']} | {row['algo']} | {row['seeds']} | "
            f"{pm(row['return_mean'], row['return_ci95'], row['seeds'])} | "
            f"{pm(row['cost_mean'], row['cost_ci95'], row['seeds'])} | "
            f"{row['limit']:g} | {row['over_limit_share']:.0%} | {row['training_cost_mean']:.1f} | "
            f"{row['lambda_std_second_half']:.4f} | "
            f"{row['lambda_detrended_std_second_half']:.4f} | {row['wall_s_mean']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def safety_markdown(table: list[dict[str, Any]]) -> str:
    """Whether each algorithm kept its evaluated policy under the limit: the seeds whose final
    evaluation is under it, the share of evaluations under it over the last quarter of the
    runs, and the final return beside them."""
    lines = [
        "",
        "Under the limit (final evaluation per seed; every evaluation after 3/4 of the steps):",
        "",
        "| env | algorithm | seeds under the limit at the end | evaluations under it, last "
        "quarter | final return (mean) | lambda std about trend |",
        "|---|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row['env']} | {row['algo']} | {row['final_under_limit_seeds']} of "
            f"{row['seeds']} | {row['last_quarter_under_share']:.0%} | {row['return_mean']:.2f} | "
            f"{row['lambda_detrended_std_second_half']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def notes_markdown(table: list[dict[str, Any]], plots: list[str]) -> str:
    """What the report's columns mean, and its figures."""
    lines = [
        "",
        "Columns: *final return* and *final cost* are the means over seeds of each seed's last",
        "evaluation (deterministic policy), with a 95% Student-t interval over seeds; *limit* is",
        "the env's cost limit, in the units the final cost is given in (the discounted cost",
        "where the limit is on it, the episode's cost otherwise); *evals over limit* is the share",
        "of all evaluations over it; *training cost* is the cost the training episodes paid,",
        "summed over a run and averaged over seeds; the two *lambda std* columns are the",
        "multiplier's spread over the second half of training, plain and about its",
        "least-squares line (a steady climb has a small second one, an oscillation a large one);",
        "*wall s* is the mean wall-clock time per run.",
    ]
    if any(row["seeds"] < 3 for row in table):
        lines += [
            "",
            f"An interval marked{FEW_SEEDS} comes from two seeds: a t-interval that wide says",
            "little (it can reach below zero for a cost); run more seeds before reading it.",
        ]
    if plots:
        lines += ["", "Figures:", ""]
        lines += [f"![{name}]({name})" for name in plots if name.endswith(".png")]
    return "\n".join(lines) + "\n"


def failures_markdown(failures: list[dict[str, Any]]) -> str:
    """The diverged runs as a markdown table ('' when none); the table above counts finished
    seeds only."""
    if not failures:
        return ""
    lines = [
        "",
        "Runs that diverged (not in the table above):",
        "",
        "| env | algorithm | seed | steps done | reason |",
        "|---|---|---|---|---|",
    ]
    for f in failures:
        lines.append(
            f"| {f['env']} | {f['algo']} | {f['seed']} | {f['env_steps']} | {f['error']} |"
        )
    return "\n".join(lines) + "\n"


REPORT_FILES = ("report.md", "report.json")


def report(results_dir: str, out_dir: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    root = Path(results_dir)
    if not root.is_dir():
        raise RunDirError(f"{root} is not a directory")
    runs = [load_run(p) for p in find_runs(root)]
    if not runs:
        raise AlgdError(f"no finished runs (with summary.json) under {root}")
    out = Path(out_dir) if out_dir else root / "report"
    failures = find_failures(root)
    names = [
        *REPORT_FILES,
        *(["failures.json"] if failures else []),
        *(f"{env}.{ext}" for env in sorted({r["env"] for r in runs}) for ext in ("png", "svg")),
    ]
    staged = StagedFolder(out, overwrite, "report", names)  # checked before any figure
    table = summarise(runs)
    text = markdown(table) + safety_markdown(table) + failures_markdown(failures)
    with staged as stage:
        plots = _plots(runs, stage)
        (stage / "report.md").write_text(
            f"# algd report: {root}\n\n{text}{notes_markdown(table, plots)}"
        )
        (stage / "report.json").write_text(json.dumps(table, indent=2) + "\n")
        if failures:
            (stage / "failures.json").write_text(json.dumps(failures, indent=2) + "\n")
    return {
        "table": table,
        "markdown": text,
        "files": sorted([*REPORT_FILES, *(["failures.json"] if failures else []), *plots]),
        "plots": plots,
    }


def quarter_costs(run: dict[str, Any]) -> list[np.ndarray]:
    """A run's training-episode costs in each quarter of its budget, in the units its limit is
    stated in: the discounted cost where the limit is on it, the episode's sum otherwise."""
    ep = run["episodes"]
    if not ep:
        return [np.zeros(0)] * 4
    column = "discounted_cost" if run["kind"] == "discounted" else "cost"
    quarter = np.ceil(ep["step"] / (run["total"] / 4)).astype(int) - 1
    return [ep[column][quarter == q] for q in range(4)]


def _band(
    runs: list[dict[str, Any]], key: str, column: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max across seeds on the common steps of ``column`` in CSV ``key``."""
    series = [r[key] for r in runs if r[key] and column in r[key]]
    n = min(len(s["step"]) for s in series)
    steps = series[0]["step"][:n]
    values = np.stack([s[column][:n] for s in series])
    return steps, values.mean(0), values.min(0), values.max(0)


def _plots(runs: list[dict[str, Any]], out: Path) -> list[str]:
    """One figure per env (PNG and SVG): returns, costs, multipliers, violations, and the
    training episodes' cost per quarter."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    by_env: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for r in runs:
        by_env[r["env"]][r["algo"]].append(r)
    for env, algos in sorted(by_env.items()):
        fig = _env_figure(plt, env, algos)
        for ext in ("png", "svg"):
            name = f"{env}.{ext}"
            fig.savefig(out / name, dpi=110)
            written.append(name)
        plt.close(fig)
    return written


def _env_figure(plt: Any, env: str, algos: dict[str, list[dict[str, Any]]]) -> Any:
    first = next(iter(algos.values()))[0]
    limit, kind = first["limit"], first["kind"]
    fig = plt.figure(figsize=(15, 8), constrained_layout=True)
    grid = fig.add_gridspec(2, 3)
    ax_ret, ax_cost, ax_lam = (fig.add_subplot(grid[0, i]) for i in range(3))
    ax_viol, ax_box = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1:])
    box_data: list[list[float]] = []
    box_labels: list[str] = []
    box_colors: list[str] = []
    for k, (algo, members) in enumerate(sorted(algos.items())):
        color = f"C{k % 10}"  # one colour per algorithm in every panel
        _draw_algo((ax_ret, ax_cost, ax_lam, ax_viol), algo, members, color, limit)
        per_run = [quarter_costs(r) for r in members]
        for q in range(4):
            costs = [c for quarters in per_run for c in quarters[q].tolist()]
            box_data.append(costs or [np.nan])
            box_labels.append(f"{algo} Q{q + 1}")
            box_colors.append(color)
    ax_cost.axhline(limit, color="black", linestyle="--", label="limit")
    units = cost_name(kind)
    lambda_axis(ax_lam, [r["metrics"]["lambda"] for m in algos.values() for r in m if r["metrics"]])
    boxes = ax_box.boxplot(box_data, tick_labels=box_labels, patch_artist=True)
    for box, median, color in zip(boxes["boxes"], boxes["medians"], box_colors):
        box.set_facecolor(color)
        box.set_alpha(0.35)
        median.set_color(color)
        median.set_linewidth(2)
    ax_box.axhline(limit, color="black", linestyle="--")
    ax_box.tick_params(axis="x", labelsize=7, labelrotation=90)
    ax_viol.tick_params(axis="x", labelrotation=45)
    for ax, title, ylabel in (
        (ax_ret, "evaluation return (mean, min-max over seeds)", "return"),
        (ax_cost, "evaluation cost vs limit", f"{units} per episode"),
        (ax_lam, "multiplier lambda (mean, min-max)", "lambda"),
        (ax_viol, "average violation of the evaluations", f"{units} over the limit"),
        (ax_box, f"training-rollout episode {units} per quarter of the run", units),
    ):
        ax.set_title(f"{env}: {title}", fontsize=10)
        ax.set_ylabel(ylabel)
    for ax in (ax_ret, ax_cost, ax_lam):
        ax.set_xlabel("environment steps")
        ax.legend(fontsize=8)
    fig.suptitle(env)
    return fig


def lambda_axis(ax: Any, series: list[np.ndarray]) -> None:
    """A multiplier axis with readable ticks: linear while lambda stays under 1, symmetric-log
    (linear under 0.01) once it spans decades."""
    from matplotlib.ticker import MaxNLocator

    top = max((float(np.nanmax(s)) for s in series if len(s)), default=0.0)
    if top > 1.0:
        ax.set_yscale("symlog", linthresh=1e-2)
    else:
        ax.yaxis.set_major_locator(MaxNLocator(5))


def _draw_algo(
    axes: tuple[Any, ...], algo: str, members: list[dict[str, Any]], color: str, limit: float
) -> None:
    """One algorithm's curves (return, cost, multiplier) and violation bar."""
    ax_ret, ax_cost, ax_lam, ax_viol = axes
    steps, mean, lo, hi = _band(members, "eval", "return_mean")
    ax_ret.plot(steps, mean, label=algo, color=color)
    ax_ret.fill_between(steps, lo, hi, alpha=0.2, color=color)
    steps, mean, lo, hi = _band(members, "eval", "cost_vs_limit")
    ax_cost.plot(steps, mean, label=algo, color=color)
    ax_cost.fill_between(steps, lo, hi, alpha=0.2, color=color)
    viol = np.mean([np.maximum(0.0, r["eval"]["cost_vs_limit"] - limit).mean() for r in members])
    ax_viol.bar(algo, viol, color=color)
    # A multiplier that never moved (SAC's) is left out of the multiplier panel.
    if all(r["metrics"] for r in members) and any(
        np.ptp(r["metrics"]["lambda"]) > 0 for r in members
    ):
        steps, mean, lo, hi = _band(members, "metrics", "lambda")
        ax_lam.plot(steps, mean, label=algo, color=color)
        ax_lam.fill_between(steps, lo, hi, alpha=0.2, color=color)
