"""The step contract on real Safety-Gymnasium, Gymnasium MuJoCo and built-in tasks."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from algd.envs import SafeEnv, list_env_ids, make_env
from algd.envs.base import EnvSpec
from algd.envs.gym_cost import velocity_cost
from algd.envs.toy import ring_cost, ring_reward
from algd.errors import EnvError


def check_contract(env: SafeEnv, steps: int = 20) -> list[tuple]:
    obs, info = env.reset(seed=3)
    assert obs.dtype == np.float32 and obs.shape == (env.spec.obs_dim,)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(steps):
        a = rng.uniform(env.spec.act_low, env.spec.act_high)
        result = env.step(a)
        assert len(result) == 6
        obs, reward, cost, terminated, truncated, info = result
        assert obs.shape == (env.spec.obs_dim,) and obs.dtype == np.float32
        assert isinstance(reward, float) and isinstance(cost, float)
        assert cost >= 0.0
        assert isinstance(terminated, bool) and isinstance(truncated, bool)
        out.append(result)
        if terminated or truncated:
            break
    return out


@pytest.mark.parametrize(
    ("env_id", "obs_dim"),
    [("SafetyPointButton1-v0", 76), ("SafetyCarButton1-v0", 88), ("SafetyHopperVelocity-v1", 11)],
)
def test_safety_gymnasium_contract(env_id: str, obs_dim: int) -> None:
    env = make_env(env_id)
    assert env.spec.obs_dim == obs_dim
    assert env.spec.cost_limit == 25.0 and env.spec.cost_limit_kind == "episode"
    check_contract(env)
    env.close()


def test_safety_gymnasium_tasks_leave_its_multi_agent_part_unimported() -> None:
    """Safety-Gymnasium's own ``__init__`` imports its multi-agent tasks, and with them
    Gymnasium-Robotics, which prints a notice about its Adroit tasks on every import. algd
    builds the single-agent tasks without that ``__init__``: nothing of the multi-agent part is
    imported, and nothing is printed."""
    code = (
        "import sys\n"
        "from algd.envs import make_env\n"
        "env = make_env('SafetyPointGoal1-v0'); env.reset(seed=0); env.step(env.spec.act_low)\n"
        "print([m for m in sys.modules if 'safe_multi_agent' in m\n"
        "       or m.split('.')[0] in ('gymnasium_robotics', 'pettingzoo')])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n" and done.stderr == "", (done.stdout, done.stderr)


def test_safety_gymnasium_costs_appear_and_resets_are_seeded() -> None:
    env = make_env("SafetyPointGoal1-v0")
    obs_a, _ = env.reset(seed=11)
    obs_b, _ = env.reset(seed=11)
    obs_c, _ = env.reset(seed=12)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert not np.array_equal(obs_a, obs_c)
    env.close()


def test_episode_length_override_truncates() -> None:
    env = make_env("SafetyPointButton1-v0", episode_length=7)
    env.reset(seed=0)
    flags = [env.step(np.zeros(2))[4] for _ in range(7)]
    assert flags == [False] * 6 + [True]
    assert env.spec.max_episode_steps == 7
    env.close()


def test_velocity_cost_formula() -> None:
    assert velocity_cost({"x_velocity": 3.0, "y_velocity": 4.0}) == pytest.approx(5.0)
    assert velocity_cost({"x_velocity": -2.5}) == pytest.approx(2.5)


def _position(sim, where: str) -> np.ndarray:
    """The point each MuJoCo task measures its velocity at (x, y)."""
    if where == "root":
        return sim.data.qpos[:2].copy()
    if where == "torso":
        return sim.get_body_com("torso")[:2].copy()
    mass = sim.model.body_mass[:, None]
    return (np.sum(mass * sim.data.xipos, axis=0) / mass.sum())[:2].copy()


@pytest.mark.parametrize(
    ("env_id", "obs_dim", "limit", "planar", "where"),
    [
        ("PaperHopperVelocity-v0", 11, 82.748, False, "root"),
        ("PaperHalfCheetahVelocity-v0", 17, 151.989, False, "root"),
        ("PaperAntVelocity-v0", 27, 103.115, True, "torso"),
        ("PaperHumanoidVelocity-v0", 45, 20.140, True, "mass_center"),
    ],
)
def test_paper_velocity_protocol(
    env_id: str, obs_dim: int, limit: float, planar: bool, where: str
) -> None:
    """Cost = planar speed, computed here by hand from simulator positions before and after."""
    env = make_env(env_id)
    assert env.spec.obs_dim == obs_dim
    assert env.spec.cost_limit == limit and env.spec.cost_limit_kind == "discounted"
    env.reset(seed=0)
    sim = env.unwrapped  # type: ignore[attr-defined]
    rng = np.random.default_rng(1)
    for _ in range(5):
        before = _position(sim, where)
        _, _, cost, *_ = env.step(rng.uniform(env.spec.act_low, env.spec.act_high))
        vx, vy = (_position(sim, where) - before) / sim.dt
        expected = math.hypot(vx, vy) if planar else abs(vx)
        assert cost == pytest.approx(expected, rel=1e-6, abs=1e-9)
    env.close()


def test_toy_ring_values_and_state() -> None:
    env = make_env("ToyRing-v0")
    env.reset(seed=0)
    _, r, c, term, trunc, _ = env.step(np.array([0.0, 0.75]))
    assert r == pytest.approx(1.0 + 0.3 * 0.75) and c == pytest.approx(1.0)
    _, r, c, *_ = env.step(np.array([0.6, 0.0]))
    assert r == pytest.approx(1.0 - 4 * 0.15**2) and c == 0.0
    assert ring_cost(np.array([0.2, 0.0])) == pytest.approx(0.5)
    assert ring_reward(np.array([[0.0, 0.0]]))[0] == pytest.approx(1.0 - 4 * 0.75**2)
    snap = env.get_state()
    nxt = env.step(np.zeros(2))[0]
    env.set_state(snap)
    np.testing.assert_array_equal(env.step(np.zeros(2))[0], nxt)
    assert not term and not trunc


def test_toy_unconstrained_optimum_violates_limit() -> None:
    """Grid search: the best action overall is in the hazard band; the best safe ones are two
    mirror-image modes."""
    xs = np.linspace(-1, 1, 401)
    grid = np.stack(np.meshgrid(xs, xs, indexing="ij"), -1).reshape(-1, 2)
    r, c = ring_reward(grid), ring_cost(grid)
    best = grid[np.argmax(r)]
    assert ring_cost(best) > 0.9  # unconstrained optimum: ~100 cost per 100-step episode
    safe = np.where(c <= 0.0, r, -np.inf)
    top = grid[np.argsort(safe)[-2:]]
    assert np.sign(top[0, 0]) != np.sign(top[1, 0])
    assert safe.max() > np.max(r) - 0.05


def test_unknown_env_id() -> None:
    with pytest.raises(EnvError, match="unknown env id 'NoSuchEnv-v0'"):
        make_env("NoSuchEnv-v0")
    with pytest.raises(EnvError, match="'SafetyPointButton9-v0': no such Safety-Gymnasium task"):
        make_env("SafetyPointButton9-v0")


def test_env_without_cost_signal() -> None:
    with pytest.raises(EnvError, match="Pendulum-v1 reports no cost signal"):
        make_env("Pendulum-v1")


class _Faulty(SafeEnv):
    def __init__(self, what: str) -> None:
        super().__init__(EnvSpec("Faulty-v0", 2, 1, (-1.0,), (1.0,), 10, 1.0, "episode"))
        self.what = what

    def _reset(self, seed: int) -> np.ndarray:
        return np.zeros(2)

    def _step(self, action: np.ndarray):
        obs = np.array([0.0, np.nan if self.what == "obs" else 0.0])
        reward = np.inf if self.what == "reward" else 0.0
        cost = np.nan if self.what == "cost" else 0.0
        return obs, reward, cost, False, False, {}


@pytest.mark.parametrize("what", ["obs", "reward", "cost"])
def test_non_finite_values_are_named(what: str) -> None:
    env = _Faulty(what)
    env.reset(0)
    label = {"obs": "observation", "reward": "reward", "cost": "cost"}[what]
    with pytest.raises(EnvError, match=f"env Faulty-v0 returned a non-finite {label}"):
        env.step(np.zeros(1))


def test_list_env_ids_covers_required_tasks() -> None:
    ids = set(list_env_ids())
    required = {
        "SafetyPointButton1-v0",
        "SafetyCarButton1-v0",
        "SafetyPointButton2-v0",
        "SafetyCarButton2-v0",
        "SafetyPointPush1-v0",
        "SafetyPointGoal1-v0",
        "SafetyHopperVelocity-v1",
        "SafetyHalfCheetahVelocity-v1",
        "SafetyAntVelocity-v1",
        "SafetyHumanoidVelocity-v1",
        "ToyRing-v0",
        "PaperAntVelocity-v0",
    }
    assert required <= ids
    assert not any("Vision" in i for i in ids)


def test_reference_episode_ends_follow_the_authors_samplers() -> None:
    """Navigation: a met goal stops the reward critic only, nothing stops the cost critics;
    paper velocity tasks: the time limit stops both; elsewhere: true terminations only. With
    bootstrap=terminated every env stops both critics at terminations only."""
    from algd.training.member import episode_end

    nav = make_env("SafetyPointButton1-v0")
    vel = make_env("PaperHopperVelocity-v0")
    toy = make_env("ToyRing-v0")
    goal = {"goal_met": True}
    assert episode_end(nav, "reference", False, False, goal) == (True, False)
    assert episode_end(nav, "reference", True, False, {}) == (True, False)
    assert episode_end(nav, "reference", False, True, {}) == (False, False)
    assert episode_end(vel, "reference", False, True, {}) == (True, True)
    assert episode_end(vel, "reference", False, False, {}) == (False, False)
    assert episode_end(toy, "reference", False, True, {}) == (False, False)
    assert episode_end(toy, "reference", True, False, {}) == (True, True)
    for env in (nav, vel, toy):
        assert episode_end(env, "terminated", False, True, goal) == (False, False)
        assert episode_end(env, "terminated", True, False, goal) == (True, True)
        env.close()


def test_safety_gymnasium_reports_a_met_goal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The navigation rule reads info['goal_met'], which Safety-Gymnasium sets when its task's
    goal is achieved (and then draws a new goal): it reaches algd's step contract."""
    env = make_env("SafetyPointGoal1-v0")
    env.reset(0)
    _, _, _, _, _, info = env.step(np.zeros(env.spec.act_dim))
    assert "goal_met" not in info
    task_cls = type(env.unwrapped.task)  # type: ignore[attr-defined]
    monkeypatch.setattr(task_cls, "goal_achieved", property(lambda self: True))
    _, _, _, terminated, _, info = env.step(np.zeros(env.spec.act_dim))
    env.close()
    assert info.get("goal_met") is True and not terminated


def test_fixed_navigation_layout() -> None:
    """layout=fixed: every episode of a run starts from one layout drawn from the run's seed
    (another seed, another layout); random: a new layout per reset. Only navigation tasks."""
    from algd.config import TrainConfig
    from algd.envs import env_for

    def starts(cfg: TrainConfig) -> list[np.ndarray]:
        env = env_for(cfg)
        out = [env.reset(seed)[0] for seed in (1, 2)]
        env.close()
        return out

    fixed = TrainConfig(env="SafetyPointGoal1-v0", layout="fixed", seed=0)
    a, b = starts(fixed)
    np.testing.assert_array_equal(a, b)
    other, _ = starts(TrainConfig(env="SafetyPointGoal1-v0", layout="fixed", seed=1))
    assert not np.array_equal(a, other)
    c, d = starts(TrainConfig(env="SafetyPointGoal1-v0", layout="random"))
    assert not np.array_equal(c, d)
    with pytest.raises(EnvError, match="navigation tasks only"):
        env_for(TrainConfig(env="ToyRing-v0", layout="fixed"))
