"""Typed run configuration: the single source of defaults, validated on construction.

- :mod:`algd.config.train`: :class:`TrainConfig`, one training run;
- :mod:`algd.config.agent`: :class:`AgentConfig`, the learner, one nested group per family;
- :mod:`algd.config.fields`: the ranges fields state where they are declared;
- :mod:`algd.config.io`: the JSON form, dotted-key overrides and the older flat form.

Field docstrings are the CLI's ``--help``. The defaults are ALGD's (the authors' settings);
each algorithm's own are registered with it (``algd.agents.REGISTRY``), and
:func:`algd.presets.make_config` builds a run's config from them, a named preset and
overrides given as dotted keys (``agent.lagrangian.rho``), the same keys as the command line's
flags. A run's ``config.json`` holds every value.
"""

from algd.config.agent import (
    FAMILIES,
    AgentConfig,
    CriticsConfig,
    DiffusionConfig,
    HJConfig,
    LagrangianConfig,
    MultiplierKind,
    PPOConfig,
    SACConfig,
)
from algd.config.io import (
    agent_from_dict,
    apply_overrides,
    dotted_path,
    from_dict,
    parse_seeds,
    parse_sets,
    run_config_from_dict,
    run_settings,
    to_dict,
    to_json,
)
from algd.config.train import TrainConfig, validate

__all__ = [
    "FAMILIES",
    "AgentConfig",
    "CriticsConfig",
    "DiffusionConfig",
    "HJConfig",
    "LagrangianConfig",
    "MultiplierKind",
    "PPOConfig",
    "SACConfig",
    "TrainConfig",
    "agent_from_dict",
    "apply_overrides",
    "dotted_path",
    "from_dict",
    "parse_seeds",
    "parse_sets",
    "run_config_from_dict",
    "run_settings",
    "to_dict",
    "to_json",
    "validate",
]
