"""The command line's parsing: each subcommand's flags through tyro (user mistakes as one-line
:class:`UsageError`), and ``algd train``'s two passes (the flags that choose the defaults, a
config file, then every flag over those defaults)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import sys
from pathlib import Path
from typing import Any, TypeVar

import tyro

from algd import helptext
from algd.commands import Train, command_run, train_command
from algd.config import FAMILIES
from algd.config.io import FLAT_NAMES, is_flat_name
from algd.errors import AlgdError

T = TypeVar("T")


class UsageError(AlgdError):
    pass


def _one_line(text: str) -> str:
    """tyro's boxed error message as one line: the lines between its first two rules."""
    lines = [line.strip(" │╭╮╰╯─") for line in text.splitlines()]
    rules = [i for i, line in enumerate(lines) if line.startswith("---") or not line]
    body = []
    for line in lines[rules[0] + 1 :] if rules else lines:
        if line.startswith("---") or not line:
            break
        body.append(line)
    message = " ".join(body) or "invalid arguments"
    # tyro lists its guesses under "Perhaps you meant:", one flag and its help per entry.
    if "Perhaps you meant:" in lines:
        after = lines[lines.index("Perhaps you meant:") + 1 :]
        flag = next((line.split()[0] for line in after if line.startswith("--")), None)
        if flag:
            message += f" (did you mean {flag}?)"
    return message


def parse(cls: type[T], command: str, args: list[str], default: T | None = None) -> T:
    """tyro's parse of ``args`` into ``cls``; a mistake raises UsageError (one line), --help
    prints and exits 0."""
    captured = io.StringIO()
    kwargs: dict[str, Any] = {} if default is None else {"default": default}
    width = helptext.width()
    try:
        with (
            contextlib.redirect_stderr(captured),
            contextlib.redirect_stdout(captured),
            helptext.rendered_at(width),
        ):
            ns = tyro.cli(cls, args=args, prog=f"algd {command}", **kwargs)
    except SystemExit as exc:
        if exc.code == 0:
            sys.stdout.write(helptext.reflow(captured.getvalue(), width))
            raise
        raise UsageError(f"algd {command}: {_one_line(captured.getvalue())}") from None
    _check_finite(ns, command)
    return ns


def _check_finite(ns: Any, command: str) -> None:
    """A number flag is finite: nan or inf would pass every range check after it."""
    if not dataclasses.is_dataclass(ns):
        return
    for f in dataclasses.fields(ns):
        value = getattr(ns, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            flag = "--" + f.name.replace("_", "-")
            raise UsageError(f"algd {command}: {flag} must be a finite number (got {value})")


def load_config_file(path: str) -> dict[str, Any]:
    """A JSON or YAML file of config fields -> overrides for make_config."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except OSError as exc:
        raise UsageError(f"--config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(
            f"--config {path}: not a UTF-8 text file (a config is JSON or YAML text; a "
            "checkpoint or a policy file is not one)"
        ) from None
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        reason = str(exc).splitlines()[0]
        raise UsageError(f"--config {path}: not valid JSON or YAML ({reason})") from None
    if not isinstance(data, dict):
        raise UsageError(f"--config {path}: must hold a mapping of config fields")
    # Where a run goes and whether it may replace one are said on the command line. Nested
    # groups (agent: {...}) and dotted keys are both overrides config.apply_overrides takes.
    return {k: v for k, v in data.items() if k not in ("run_dir", "overwrite")}


def pre_parse(args: list[str]) -> argparse.Namespace:
    """The flags that choose where the defaults come from (or which run to resume)."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for flag in ("--algo", "--env", "--preset", "--config", "--resume"):
        pre.add_argument(flag)
    pre.add_argument("--total-steps", "--total_steps", dest="total_steps")
    pre.add_argument("--quiet", action="store_true")
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            known, _ = pre.parse_known_args(args)
    except argparse.ArgumentError as exc:
        flag = (exc.argument_name or "a flag").split("/")[0]
        if "ignored explicit argument" in exc.message:
            raise UsageError(f"algd train: {flag} takes no value ({exc.message})") from None
        raise UsageError(f"algd train: {flag} is missing its value") from None
    except SystemExit:
        raise UsageError("algd train: a flag is missing its value") from None
    return known


def parse_train(
    args: list[str], known: argparse.Namespace | None = None, notes: list[str] | None = None
) -> Train:
    """Two passes: the flags that choose the defaults (algorithm, env, preset, config file),
    then every flag, over those defaults (so --help shows the defaults that apply). ``known``:
    the first pass's result, where the caller has it. Notes for the user (flags that have no
    effect, a preset meant for another env) go to ``notes``, or to stderr when it is None."""
    from algd.agents import get_algo
    from algd.presets import PRESETS, make_config

    known = pre_parse(args) if known is None else known
    overrides = load_config_file(known.config) if known.config else {}
    overrides.update({k: v for k, v in (("algo", known.algo), ("env", known.env)) if v})
    base = make_config(overrides, preset=known.preset)
    families = get_algo(base.algo).families
    args, unused = agent_flags(args, families)
    if any(a in ("-h", "--help") for a in args):  # the help shows the families the algo reads
        command = train_command(families)
        parse(command, "train", args, command(run=command_run(command, base)))
    ns = parse(Train, "train", args, Train(run=base))
    found = [
        f"algd train: note: {flag} does not apply to {base.algo} (it reads the agent's "
        f"{', '.join(families)} settings); it is kept in the config but has no effect"
        for flag in unused
    ]
    from algd.envs.safety_gym import is_navigation_id

    navigation = is_navigation_id(ns.run.env)
    if known.preset == "toy" and ns.run.env != "ToyRing-v0":
        instead = "--preset safe" if navigation else "--preset quick (minutes) or safe"
        found.append(
            f"algd train: note: --preset toy is tuned for the built-in ToyRing-v0 (discounts "
            f"0.9, a large multiplier step); on {ns.run.env} start from {instead} "
            "(docs/experiments.md)"
        )
    quick_steps = int(PRESETS["quick"]["total_steps"])
    if known.preset == "quick" and navigation and ns.run.total_steps <= quick_steps:
        found.append(
            f"algd train: note: in {quick_steps // 1000}k steps no navigation task learned in "
            "the quick preset's pilots (docs/experiments.md, 'A quick run on a real task'); on "
            f"{ns.run.env} this run shows the pipeline, not learning"
        )
    if notes is None:
        for line in found:
            print(line, file=sys.stderr)
    else:
        notes.extend(found)
    return ns


def agent_flags(args: list[str], families: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(``args`` with the agent's flat flags, ``--agent.rho`` (the names before the
    families), as their families' ``--agent.lagrangian.rho``; the flags of families not in
    ``families``)."""
    out, unused = [], []
    for arg in args:
        if arg.startswith("--agent."):
            flag, eq, value = arg.partition("=")
            parts = flag[len("--agent.") :].replace("-", "_").split(".")
            negated = len(parts) == 1 and parts[0].startswith("no_") and is_flat_name(parts[0][3:])
            name = parts[0][3:] if negated else parts[0]
            if len(parts) == 1 and is_flat_name(name):
                family, field = FLAT_NAMES[name]
                parts = [family, ("no_" if negated else "") + field]
                flag = "--agent." + ".".join(p.replace("_", "-") for p in parts)
            if len(parts) > 1 and parts[0] in FAMILIES and parts[0] not in families:
                unused.append(flag)
            arg = flag + eq + value
        out.append(arg)
    return out, unused


def resume_args(args: list[str], known: argparse.Namespace) -> int | None:
    """--resume takes --total-steps and --quiet only: the rest of the config is the run's."""
    allowed = ("--resume", "--quiet", "--total-steps", "--total_steps")
    given = [a.split("=")[0] for a in args if a.startswith("--")]
    extra = [a for a in given if a not in allowed]
    if extra:
        raise UsageError(
            f"algd train: --resume continues the saved config; {extra[0]} cannot change "
            "(only --total-steps can)"
        )
    if known.total_steps is None:
        return None
    try:
        return int(known.total_steps)
    except ValueError:
        raise UsageError(
            f"algd train: --total-steps takes an integer (got '{known.total_steps}')"
        ) from None
