"""Videos of evaluation episodes, rendered off-screen (no display needed).

MuJoCo renders through EGL by default here (``MUJOCO_GL=egl``, with Mesa's software renderer on
a machine without a GPU); a ``MUJOCO_GL`` already set (``osmesa``, ``glfw``) is respected. Each
frame carries a band with the step, the step's reward and cost, the episode's running cost and
the limit: the band turns red once the episode is over its limit, and the frame gets a red
border on every step that costs something.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from algd.errors import AlgdError, EnvError
from algd.outputs import StagedFolder, check_file

BAND = 32  # pixels of the text band above each frame
SIZE = (480, 480)  # width, height of the simulator's frame
FPS = 30
RED, WHITE, GREEN = (220, 40, 40), (240, 240, 240), (60, 180, 75)


def headless_backend() -> str:
    """The OpenGL backend MuJoCo will use (set before MuJoCo is first imported)."""
    return os.environ.setdefault("MUJOCO_GL", "egl")


def annotate(frame: np.ndarray, text: str, over_limit: bool, step_cost: float) -> np.ndarray:
    """The frame with a text band on top (red when over the limit) and a red border where the
    step cost something."""
    from PIL import Image, ImageDraw

    h, w = frame.shape[:2]
    canvas = Image.new("RGB", (w, h + BAND), (20, 20, 20))
    canvas.paste(Image.fromarray(np.ascontiguousarray(frame[..., :3])), (0, BAND))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle([0, 0, w, BAND - 1], fill=RED if over_limit else (30, 30, 30))
    draw.text((6, 9), text, fill=WHITE)
    if step_cost > 0:
        draw.rectangle([0, BAND, w - 1, h + BAND - 1], outline=RED, width=4)
    else:
        draw.rectangle([0, BAND, w - 1, h + BAND - 1], outline=GREEN, width=1)
    return np.asarray(canvas)


class VideoWriter:
    """Frames of the episodes to one .mp4 file, or one file per episode in a folder; staged
    beside their place and moved in only when complete (algd.outputs' rules: ``overwrite``
    replaces the video's own files, never anything else). The output is checked when the
    writer is made; nothing is written before the first frame."""

    def __init__(self, out: Path, overwrite: bool, episodes: int = 0) -> None:
        if out.suffix not in ("", ".mp4"):
            raise AlgdError(f"--video {out}: give an .mp4 file or a folder")
        self.out, self.one_file = out, out.suffix == ".mp4"
        if self.one_file:
            check_file(out, overwrite, "video")
        names = [out.name] if self.one_file else [_episode_name(e) for e in range(episodes)]
        folder = out.parent if self.one_file else out
        self._folder = StagedFolder(folder, overwrite, "video", names)
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401  (the encoder imageio uses)
        except ImportError as exc:
            raise AlgdError(
                f"video needs imageio and imageio-ffmpeg ({exc.name} is not installed): run "
                "bash scripts/setup.sh"
            ) from None
        self._imageio = imageio
        self._writer: Any = None
        self._episode = -1
        self.frames: list[int] = []

    def _open(self, episode: int) -> None:
        if self._writer is not None and not self.one_file:
            self._writer.close()
            self._writer = None
        if self._writer is None:
            stage = self._folder.stage if self.frames else self._folder.open()
            name = self.out.name if self.one_file else _episode_name(episode)
            self._writer = self._imageio.get_writer(
                stage / name, fps=FPS, codec="libx264", macro_block_size=16
            )
        self._episode = episode
        self.frames.append(0)

    def add(self, episode: int, frame: np.ndarray) -> None:
        if episode != self._episode:
            self._open(episode)
        if self.frames[-1] == 0:  # the writer may start ffmpeg here
            with _no_fork_warning():
                self._writer.append_data(frame)
        else:
            self._writer.append_data(frame)
        self.frames[-1] += 1

    def close(self) -> list[str]:
        """Finish the files and put them in place; returns their paths."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return [str(p) for p in self._folder.commit()]

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the partial file is removed either way
                self._writer.close()
        self._folder.discard()


@contextlib.contextmanager
def _no_fork_warning() -> Iterator[None]:
    """imageio starts ffmpeg as a subprocess, and JAX warns of every fork of a process that
    runs it; ffmpeg is exec'd at once, so the warning does not apply."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
        yield


def _episode_name(episode: int) -> str:
    return f"episode_{episode:03d}.mp4"


def _overlay(env: Any, writer: VideoWriter, gamma_c: float, backend: str) -> Any:
    """The evaluation's observer: renders each step's frame with its text (episode, step,
    reward, cost, the episode's cost in the limit's units against the limit) into ``writer``."""
    spec = env.spec
    discounted = spec.cost_limit_kind == "discounted"
    running = {"disc": 0.0}

    def observe(ep: int, t: int, reward: float, cost: float, ep_cost: float) -> None:
        running["disc"] = 0.0 if t == 0 else running["disc"] + gamma_c ** (t - 1) * cost
        judged = running["disc"] if discounted else ep_cost
        kind = "disc. cost" if discounted else "cost"
        text = (
            f"ep {ep}  step {t}  reward {reward:+.3f}  cost {cost:.2f}  "
            f"episode {kind} {judged:.2f} / limit {spec.cost_limit:g}"
        )
        try:
            frame = env.render()
        except EnvError:
            raise
        except Exception as exc:  # the GL stack raises many types
            raise AlgdError(
                f"video: off-screen rendering failed with MUJOCO_GL={backend} "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                "EGL needs libEGL and Mesa's drivers (Debian/Ubuntu: apt-get install libegl1 "
                "libegl-mesa0 libgl1-mesa-dri), or set MUJOCO_GL=osmesa with libosmesa6"
            ) from None
        writer.add(ep, annotate(frame, text, judged > spec.cost_limit, cost))

    return observe


def record(
    run_dir: str | Path,
    out: str | Path,
    episodes: int,
    seed: int | None = None,
    overwrite: bool = False,
    stochastic: bool = False,
    evaluation: int | None = None,
) -> dict[str, Any]:
    """Evaluate run ``run_dir`` (as ``algd eval``: deterministic actions unless ``stochastic``)
    for ``episodes`` episodes and write their frames to ``out`` (an .mp4, or a folder: one file
    per episode); which episodes as in :func:`algd.api.evaluate_run`."""
    backend = headless_backend()
    from algd.api import load_agent, which_evaluation
    from algd.envs import env_for
    from algd.evaluate import evaluate

    writer = VideoWriter(Path(out), overwrite, episodes)  # checks the output before loading
    cfg, agent, state, meta = load_agent(run_dir)
    env = env_for(cfg, render_size=SIZE)
    spec = env.spec
    gamma_c = cfg.agent.gamma_c
    observe = _overlay(env, writer, gamma_c, backend)
    try:
        result = evaluate(
            agent,
            state,
            env,
            episodes,
            cfg.seed if seed is None else seed,
            which_evaluation(meta, seed, evaluation),
            gamma_c,
            observer=observe,
            deterministic=not stochastic,
        )
        files = writer.close()
    except BaseException:
        writer.abort()
        raise
    finally:
        env.close()
    return {
        "run_dir": str(run_dir),
        "env_steps": meta["loop"]["env_step"],
        "episodes": episodes,
        "policy": "stochastic" if stochastic else "deterministic",
        "cost_limit": spec.cost_limit,
        **result,
        "video": files,
        "frames": writer.frames,
        "mujoco_gl": backend,
    }
