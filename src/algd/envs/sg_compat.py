"""Safety-Gymnasium 1.0.0 (its last release, 2023) on today's stack: Python 3.11 to 3.13,
numpy 2, Gymnasium 1.x and MuJoCo 3 or newer. Three things break there, each fixed here alone:

1. Python 3.11's dataclasses reject unhashable defaults, and several of its asset dataclasses
   use numpy arrays as defaults (``ValueError: mutable default <class 'numpy.ndarray'>``).
   While its modules import, ``dataclasses._get_field`` turns an ndarray class default into
   ``field(default_factory=<copy>)`` (each instance gets its own copy, as the authors meant);
   the original function is restored afterwards.
2. Its package ``__init__`` registers every task through Gymnasium internals that Gymnasium 1.0
   removed (``gymnasium.wrappers.compatibility``, ``autoreset``, ``_check_metadata``...), and
   imports its multi-agent tasks (Gymnasium-Robotics, PettingZoo). algd uses neither that
   registry nor its wrappers: the package's modules import under an empty package (its
   ``__init__`` does not run), and :func:`make` builds a task from :data:`TASKS`, the same
   ids, classes, configurations and episode lengths as that registration. The time limit is
   algd's own (``SafeEnv.step``), as the registration's ``SafeTimeLimit`` was.
3. MuJoCo 3's bindings refuse a numpy integer array in ``MjModel.jnt()``, which the sensor
   setup of the Car, Racecar, Doggo and Ant robots passes (a one-element array): while a task
   is built, ``jnt()`` takes that element.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.util
import io
import re
import sys
import types
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from algd.errors import EnvError

INSTALL_HINT = "pip install 'algd[navigation]' && pip install --no-deps safety-gymnasium==1.0.0"

# The registration of Safety-Gymnasium 1.0.0, as a table: navigation tasks are its Builder with
# {"agent_name": robot} (and a floor for Race), velocity tasks one class per robot and version.
ROBOTS = ("Point", "Car", "Doggo", "Racecar", "Ant")
NAVIGATION = {  # task name -> (levels, episode steps, extra config)
    "Button": (3, 1000, {}),
    "Push": (3, 1000, {}),
    "Goal": (3, 1000, {}),
    "Circle": (3, 500, {}),
    "Race": (3, 500, {"floor_conf.type": "village"}),
    "FadingEasy": (3, 1000, {}),
    "FadingHard": (3, 1000, {}),
    "Run": (1, 1000, {}),
}
VELOCITY = {
    "Ant": "ant",
    "HalfCheetah": "half_cheetah",
    "Hopper": "hopper",
    "Humanoid": "humanoid",
    "Swimmer": "swimmer",
    "Walker2d": "walker2d",
}
_NAV_ID = re.compile(r"^Safety(?P<robot>[A-Z][a-z]+)(?P<task>[A-Za-z]+?)(?P<level>\d)-v0$")
_VEL_ID = re.compile(r"^Safety(?P<robot>[A-Za-z0-9]+)Velocity-v(?P<version>[01])$")


def safety_gym_ids() -> list[str]:
    """Every state-based task id Safety-Gymnasium 1.0.0 registers (no Vision, Debug or
    Gymnasium variants), sorted."""
    ids = [
        f"Safety{robot}{task}{level}-v0"
        for robot in ROBOTS
        for task, (levels, _, _) in NAVIGATION.items()
        for level in range(levels)
    ]
    ids += [f"Safety{robot}Velocity-v{v}" for robot in VELOCITY for v in (0, 1)]
    return sorted(ids)


def episode_steps(env_id: str) -> int:
    """The registered episode length of a task id."""
    m = _NAV_ID.match(env_id)
    return NAVIGATION[m["task"]][1] if m and m["task"] in NAVIGATION else 1000


def make(env_id: str, **kwargs: Any) -> Any:
    """A Safety-Gymnasium task by its registered id, without a time limit (``kwargs``: the
    constructor's, e.g. render_mode, width, height, camera_name)."""
    if env_id not in safety_gym_ids():
        raise EnvError(f"unknown Safety-Gymnasium id '{env_id}'")
    package = import_safety_gymnasium()
    nav = _NAV_ID.match(env_id)
    with _int_joint_ids(), _quiet(), quiet_simulator_notices():
        if nav is not None:
            config = {"agent_name": nav["robot"], **NAVIGATION[nav["task"]][2]}
            return package.builder.Builder(task_id=env_id, config=config, **kwargs)
        vel = _VEL_ID.match(env_id)
        assert vel is not None  # every listed id is one of the two kinds
        robot, version = vel["robot"], vel["version"]
        module = _import(
            f"safety_gymnasium.tasks.safe_velocity.safety_{VELOCITY[robot]}_velocity_v{version}"
        )
        return getattr(module, f"Safety{robot}VelocityEnv")(**kwargs)


_package: types.ModuleType | None = None


def import_safety_gymnasium() -> types.ModuleType:
    """The ``safety_gymnasium`` package with its Builder imported, its ``__init__`` not run
    (see the module docstring); an EnvError with the install command if it is missing."""
    global _package
    if _package is None:
        spec = importlib.util.find_spec("safety_gymnasium")
        if spec is None or spec.submodule_search_locations is None:
            raise EnvError(f"Safety-Gymnasium is not installed ({INSTALL_HINT})")
        package = types.ModuleType("safety_gymnasium")
        package.__path__ = list(spec.submodule_search_locations)
        package.__file__ = spec.origin  # its world.py finds its assets beside this file
        package.__spec__ = spec
        sys.modules["safety_gymnasium"] = package
        try:
            _import("safety_gymnasium.builder")
        except Exception:
            for name in [m for m in sys.modules if m.split(".")[0] == "safety_gymnasium"]:
                del sys.modules[name]
            raise
        _package = package
    return _package


def _import(name: str) -> types.ModuleType:
    """Import a module of the package with the dataclass fix (item 1) in place."""
    original = dataclasses._get_field  # type: ignore[attr-defined]
    dataclasses._get_field = _ndarray_safe_get_field(original)  # type: ignore[attr-defined]
    try:
        with _quiet():
            return importlib.import_module(name)
    finally:
        dataclasses._get_field = original  # type: ignore[attr-defined]


def _ndarray_safe_get_field(original: Any) -> Any:
    def _get_field(cls: type, a_name: str, a_type: Any, *args: Any, **kwargs: Any) -> Any:
        default = cls.__dict__.get(a_name, dataclasses.MISSING)
        if isinstance(default, np.ndarray):
            setattr(cls, a_name, dataclasses.field(default_factory=default.copy))
        return original(cls, a_name, a_type, *args, **kwargs)

    return _get_field


@contextlib.contextmanager
def _int_joint_ids() -> Iterator[None]:
    """While a task is built, ``MjModel.jnt(id)`` also takes a one-element integer array
    (item 3)."""
    import mujoco

    real = mujoco.MjModel.jnt

    def jnt(self: Any, key: Any = "") -> Any:
        if not isinstance(key, str):
            key = int(np.asarray(key).reshape(-1)[0])
        return real(self, key)

    mujoco.MjModel.jnt = jnt
    try:
        yield
    finally:
        mujoco.MjModel.jnt = real


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Without the notices its modules and Gymnasium's space checks print on import and
    construction (none that a user can act on)."""
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        yield


@contextlib.contextmanager
def quiet_simulator_notices() -> Iterator[None]:
    """Build a velocity task without two notices about what the protocols keep on purpose:
    Gymnasium's that its -v4 tasks have a -v5 (the paper's are the -v3/-v4 dynamics), and
    MuJoCo's that their XML's ``settotalmass`` attribute is deprecated. Other MuJoCo warnings
    pass through."""
    import mujoco

    quiet_gymnasium()  # its import adds warning filters of its own: before ours
    previous = mujoco.get_mju_user_warning()

    def warn(message: str) -> None:
        if "is deprecated" in message:
            return
        if previous is not None:
            previous(message)
        else:
            print(f"WARNING: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(warn)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is out of date.*")
            yield
    finally:
        mujoco.set_mju_user_warning(previous)


def quiet_gymnasium() -> types.ModuleType:
    """Import gymnasium without third-party plugin notices on stderr."""
    with contextlib.redirect_stderr(io.StringIO()):
        import gymnasium
    return gymnasium
