"""A config as data: its JSON form, dotted-key overrides (the keys of the command line's
flags), and the older flat form of the agent's fields, which reads into the families."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from algd.config.agent import FAMILIES, AgentConfig
from algd.config.train import TrainConfig
from algd.errors import AlgdError, ConfigError
from algd.suggest import did_you_mean

# Agent fields that a family renamed: the flat name (configs written before the families,
# their flags) -> the family's own.
RENAMED: dict[str, tuple[str, str]] = {
    "diffusion": ("diffusion", "process"),
    "hj_threshold": ("hj", "threshold"),
    "hj_lambda_hidden": ("hj", "lambda_hidden"),
    "hj_lambda_lr": ("hj", "lambda_lr"),
    "ppo_rollout": ("ppo", "rollout"),
    "ppo_epoch_flush": ("ppo", "epoch_flush"),
    "ppo_epochs": ("ppo", "epochs"),
    "ppo_minibatch": ("ppo", "minibatch"),
    "ppo_clip": ("ppo", "clip"),
    "ppo_budget": ("ppo", "budget"),
}


def _flat_names() -> dict[str, tuple[str, str]]:
    """Every family field by its flat name: flat name -> (family, field)."""
    old = {path: name for name, path in RENAMED.items()}
    return {
        old.get((family, f.name), f.name): (family, f.name)
        for family, cls in FAMILIES.items()
        for f in dataclasses.fields(cls)
    }


FLAT_NAMES = _flat_names()
# What a field added to the config had been before it existed: a run's config.json written
# before then lacks the field, and reads with this value, so that the run resumes, evaluates and
# reports as it trained. A config file the user writes gets the current defaults instead.
LEGACY_FIELDS: dict[str, Any] = {"replacement": True}
LEGACY_AGENT_FIELDS: dict[str, tuple[str, str, Any]] = {
    "cost_init": ("critics", "cost_init", "truncated"),
    "log_prob": ("sac", "log_prob", "exact"),
    "ve_single_level": ("diffusion", "ve_single_level", "sigma_max"),
}


def is_flat_name(name: str, value: Any = None) -> bool:
    """Whether agent key ``name`` (with ``value``) is a flat name of a family field: a family's
    own name holding a group of fields is not (``diffusion: {...}``; ``diffusion: ddpm`` is)."""
    return name in FLAT_NAMES and not (name in FAMILIES and isinstance(value, dict))


def nest_agent(data: dict[str, Any]) -> dict[str, Any]:
    """An agent mapping with flat names (``rho``, ``ppo_rollout``) as the families' nested
    mapping (``lagrangian: {rho}``, ``ppo: {rollout}``); nested groups are kept."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if is_flat_name(key, value):
            family, name = FLAT_NAMES[key]
            out.setdefault(family, {})[name] = value
        elif key in FAMILIES and isinstance(value, dict):
            out.setdefault(key, {}).update(value)
        else:
            out[key] = value
    return out


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _coerce(cls: type, data: dict[str, Any], prefix: str) -> dict[str, Any]:
    known = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(prefix + key, "unknown field" + did_you_mean(key, known))
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


def agent_from_dict(data: Any) -> AgentConfig:
    """An AgentConfig from its mapping: fields nested by family, or flat names (``rho``,
    ``ppo_rollout``: the form before the families), or both."""
    if not isinstance(data, dict):
        raise ConfigError("agent", "must be a JSON object")
    nested = nest_agent(data)
    groups = {}
    for family, cls in FAMILIES.items():
        group = nested.pop(family, {})
        if not isinstance(group, dict):
            raise ConfigError(f"agent.{family}", "must be a JSON object")
        groups[family] = cls(**_coerce(cls, group, f"agent.{family}."))
    return AgentConfig(**_coerce(AgentConfig, nested, "agent."), **groups)


def from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig from its JSON form (validates; unknown fields are an error). The
    agent's fields may be nested by family or flat (the form before the families)."""
    if not isinstance(data, dict):
        raise ConfigError("<root>", "config must be a JSON object")
    top = _coerce(TrainConfig, {k: v for k, v in data.items() if k != "agent"}, "")
    try:
        return TrainConfig(**top, agent=agent_from_dict(data.get("agent", {})))
    except TypeError as exc:
        raise ConfigError("<root>", str(exc)) from None


def run_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """:func:`from_dict` for a config that a run wrote (config.json, a checkpoint's or a policy
    file's copy): a field it lacks takes its value from before the field existed."""
    if not isinstance(data, dict) or not isinstance(data.get("agent", {}), dict):
        return from_dict(data)
    agent = nest_agent(data.get("agent", {}))
    for family, name, value in LEGACY_AGENT_FIELDS.values():
        group = agent.setdefault(family, {})
        if isinstance(group, dict):
            group.setdefault(name, value)
    return from_dict({**LEGACY_FIELDS, **data, "agent": agent})


def to_json(cfg: TrainConfig) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


# The fields a continued run may differ in from its start: where it is, its budget, how it
# reports (a group's seeds differ in seed alone).
RESUME_FREE = frozenset(
    ("run_dir", "seed", "total_steps", "overwrite", "progress")
    + ("wandb", "wandb_project", "wandb_group", "wandb_mode")
)


def run_settings(cfg: TrainConfig) -> dict[str, Any]:
    """What a checkpoint records of its run's config: every field but ``RESUME_FREE``, with
    dotted keys (agent.lagrangian.rho), as JSON reads them back."""

    def flat(data: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                out.update(flat(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = value
        return out

    fixed = {k: v for k, v in to_dict(cfg).items() if k not in RESUME_FREE}
    return json.loads(json.dumps(flat(fixed, "")))


def dotted_path(dotted: str, value: Any = None) -> list[str]:
    """A dotted key's path in the nested config: ``agent.rho`` (a flat agent name) is
    ``agent.lagrangian.rho``; dashes read as underscores."""
    parts = str(dotted).replace("-", "_").split(".")
    if len(parts) == 2 and parts[0] == "agent" and is_flat_name(parts[1], value):
        return ["agent", *FLAT_NAMES[parts[1]]]
    return parts


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any]) -> TrainConfig:
    """``cfg`` with fields replaced by dotted keys (``total_steps``, ``agent.lagrangian.rho``,
    or a flat agent name, ``agent.rho``), the keys of the command line's flags; lists become
    tuples. Raises ConfigError for an unknown key or a bad value."""
    data = to_dict(cfg)
    for dotted, value in overrides.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)  # a whole sub-config (agent=AgentConfig(...))
        if dotted == "agent" and isinstance(value, dict):
            value = nest_agent(value)
        *parents, name = dotted_path(dotted, value)
        node = data
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(dotted, "unknown field" + did_you_mean(part, node))
            node = node[part]
        if name not in node:
            raise ConfigError(dotted, "unknown field" + did_you_mean(name, node))
        if isinstance(node[name], dict) != isinstance(value, dict):
            kind = "a group of fields" if isinstance(node[name], dict) else "one value"
            raise ConfigError(dotted, f"takes {kind}")
        node[name] = _merge(node[name], value) if isinstance(value, dict) else value
    return from_dict(data)


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``old`` with ``new``'s values, group by group."""
    out = dict(old)
    for key, value in new.items():
        both = isinstance(out.get(key), dict) and isinstance(value, dict)
        out[key] = _merge(out[key], value) if both else value
    return out


# How `algd train --help` spells these values (JSON's true, false and null work as well).
FLAG_WORDS: dict[str, Any] = {"True": True, "False": False, "None": None}


def parse_sets(items: list[str], flag: str = "--set") -> dict[str, Any]:
    """``KEY=VALUE`` items as overrides: a JSON value where the text parses as JSON (numbers,
    lists, true/false, null), the train flags' True, False and None, else the text itself."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise AlgdError(f"{flag} takes KEY=VALUE (got '{item}')")
        if raw in FLAG_WORDS:
            out[key] = FLAG_WORDS[raw]
            continue
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def parse_seeds(text: str, flag: str = "--seeds") -> list[int]:
    """Seeds from ``0,1,2``, a range ``0-4`` (both ends included) or a mix (``0-2,7``)."""
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, sep, last = part.partition("-")
        try:
            if sep and first:
                lo, hi = int(first), int(last)
                if hi < lo:
                    raise ValueError
                seeds.extend(range(lo, hi + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise AlgdError(
                f"{flag} takes comma-separated integers or ranges such as 0-4 (got '{text}')"
            ) from None
    if not seeds:
        raise AlgdError(f"{flag} names no seed (got '{text}')")
    if len(set(seeds)) != len(seeds):
        raise AlgdError(f"{flag} names a seed twice (got '{text}')")
    return seeds
