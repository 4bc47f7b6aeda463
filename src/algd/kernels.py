"""The compiled CPU kernel for a critic's value and action gradient at many actions.

ALGD's actor update evaluates every reward and cost critic, forward and backward to the action,
at the chain's final actions and the Monte-Carlo points (B (N + 1) points at reference settings).
That pass is about half of the update's arithmetic. ``_native/critic_kernel.cc`` computes it for
one two-hidden-layer critic in one call: row blocks whose intermediates stay in the core's cache,
the hidden layer's weights packed once per call, and both of XLA's CPU threads working on the
rows (docs/performance.md has the side-by-side figures).

The kernel is built from source for the machine it runs on (AVX-512 on x86-64; a C++17 compiler
and the XLA FFI headers that ship with jaxlib):

    .venv/bin/python -m algd.kernels build      # scripts/setup.sh does this

Agents use it where ``agent.critic_kernel`` allows (``auto``: when built and usable; ``native``:
required; ``xla``: never). :func:`critic_value_grad_reference` is the plain JAX computation it
replaces, which the tests compare it with.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from algd.errors import AlgdError
from algd.networks import apply_net

SOURCE = Path(__file__).parent / "_native" / "critic_kernel.cc"
TARGETS = {
    "value_grad": "algd_critic_value_grad",
    "value": "algd_critic_value",
    "min_grad": "algd_critic_min_grad",
    "train": "algd_critic_train",
}
ABI = 4
FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC", "-mavx512f", "-mfma", "-w")
ACTIVATIONS = {"relu": 0, "silu": 1}


class KernelError(AlgdError):
    """The compiled kernel is missing, cannot be built, or cannot run here."""


def cache_dir() -> Path:
    """Where built kernels live: ALGD_KERNEL_CACHE, default ~/.cache/algd/kernels."""
    where = os.environ.get("ALGD_KERNEL_CACHE")
    return Path(where) if where else Path.home() / ".cache" / "algd" / "kernels"


def library_path() -> Path:
    """The library for this source, jaxlib version and flags (a rebuild after any change)."""
    import jaxlib

    h = hashlib.sha256(SOURCE.read_bytes())
    h.update(f"{jaxlib.__version__} {' '.join(FLAGS)}".encode())
    return cache_dir() / f"critic_kernel_{h.hexdigest()[:16]}.so"


@lru_cache(maxsize=1)
def cpu_supported() -> bool:
    """x86-64 with AVX-512F and FMA (read from /proc/cpuinfo; False where it cannot be read)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return {"avx512f", "fma"} <= flags
    return False


def build(compiler: str | None = None, quiet: bool = False) -> Path:
    """Compile the kernel into the cache (atomically: a finished file or none). Returns its
    path; raises KernelError with the reason when it cannot be built here."""
    out = library_path()
    if out.exists():
        return out
    if not cpu_supported():
        raise KernelError("the critic kernel needs an x86-64 CPU with AVX-512F and FMA")
    cxx = compiler or os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise KernelError("no C++ compiler found (set CXX or install g++)")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=out.parent)
    os.close(fd)
    cmd = [cxx, *FLAGS, f"-I{jax.ffi.include_dir()}", str(SOURCE), "-o", tmp]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise KernelError(f"compiling the critic kernel failed: {last}")
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    if not quiet:
        print(f"built {out}")
    return out


@lru_cache(maxsize=1)
def _load() -> str | None:
    """Register the kernel with XLA once per process; None when usable, else the reason."""
    if not cpu_supported():
        return "this CPU lacks AVX-512F/FMA"
    path = library_path()
    if not path.exists():
        return "the kernel is not built (run: python -m algd.kernels build)"
    try:
        lib = ctypes.cdll.LoadLibrary(str(path))
        if lib.AlgdKernelAbi() != ABI:
            return f"{path} was built from another version of the kernel"
        for name, symbol in (
            (TARGETS["value_grad"], lib.AlgdCriticValueGrad),
            (TARGETS["value"], lib.AlgdCriticValue),
            (TARGETS["min_grad"], lib.AlgdCriticMinGrad),
            (TARGETS["train"], lib.AlgdCriticTrain),
        ):
            jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(symbol), platform="cpu")
    except (OSError, AttributeError) as exc:
        return f"loading {path} failed: {exc}"
    return None


def _require() -> None:
    reason = _load()
    if reason is not None:
        raise KernelError(reason)


def unavailable_reason(hidden: tuple[int, ...], activation: str) -> str | None:
    """None when the kernel can compute critics of these hidden widths and activation in this
    process (CPU backend, kernel built, two hidden layers, widths multiples of 32); otherwise
    why not."""
    if jax.default_backend() != "cpu":
        return f"the kernel is for the CPU backend (this process uses {jax.default_backend()})"
    if len(hidden) != 2 or any(w % 32 for w in hidden):
        return f"the kernel needs two hidden layers whose widths are multiples of 32 (got {hidden})"
    if activation not in ACTIVATIONS:
        return f"the kernel has no activation {activation!r}"
    return _load()


def resolve(choice: str, hidden: tuple[int, ...], activations: tuple[str, ...]) -> bool:
    """Whether to use the kernel for ``agent.critic_kernel`` = choice (auto / native / xla)."""
    if choice == "xla":
        return False
    reasons = [unavailable_reason(hidden, act) for act in activations]
    reason = next((r for r in reasons if r is not None), None)
    if reason is None:
        return True
    if choice == "native":
        raise KernelError(f"agent.critic_kernel=native, but {reason}")
    return False


FORWARD_PARAMS = ("wa", "w1", "b1", "w2", "b2")


def _member_params(params: dict[str, Any], member: int) -> list[jax.Array]:
    """One member's parameters that the forward kernels take (its action rows of the first
    layer, then the later layers), in the kernel's argument order."""
    return [params[f"m{member}_{n}"] for n in FORWARD_PARAMS]


def _call(
    feats: jax.Array,
    actions: jax.Array,
    params: dict[str, Any],
    member: int,
    activation: str,
    grad: bool,
) -> Any:
    _require()
    s, act_dim = actions.shape[-2], actions.shape[-1]
    p = actions.size // act_dim
    value = jax.ShapeDtypeStruct((p,), jnp.float32)
    gradient = jax.ShapeDtypeStruct((p, act_dim), jnp.float32)
    outputs = (value, gradient) if grad else (value,)
    name = TARGETS["value_grad" if grad else "value"]
    return jax.ffi.ffi_call(name, outputs)(
        feats.reshape(s, -1),
        actions.reshape(p, act_dim),
        *_member_params(params, member),
        act=np.int32(ACTIVATIONS[activation]),
    )


def critic_value_grad(
    feats: jax.Array, actions: jax.Array, params: dict[str, Any], member: int, activation: str
) -> tuple[jax.Array, jax.Array]:
    """Q_j and dQ_j/da of critic ``member`` of a :class:`~algd.networks.CriticEnsemble`.

    feats (S, H0) is the member's state part (``state_features``); actions (*N, S, A) are N
    actions at each of the S states. Returns Q (*N, S) and its gradient (*N, S, A). Not
    differentiable (the actor update uses these as values).
    """
    q, g = _call(feats, actions, params, member, activation, grad=True)
    return q.reshape(actions.shape[:-1]), g.reshape(actions.shape)


def critic_value(
    feats: jax.Array, actions: jax.Array, params: dict[str, Any], member: int, activation: str
) -> jax.Array:
    """Q_j alone (*N, S), as :func:`critic_value_grad` without the gradient (critic targets and
    the multiplier's pass). Not differentiable."""
    (q,) = _call(feats, actions, params, member, activation, grad=False)
    return q.reshape(actions.shape[:-1])


def critic_min_value_grad(
    feats: tuple[jax.Array, ...],
    actions: jax.Array,
    params: dict[str, Any],
    activation: str,
) -> tuple[jax.Array, jax.Array]:
    """Both members' values Q (2, *N, S) of a two-member ensemble and the action gradient of
    their minimum (*N, S, A), the reward critics' part of the energy's gradient. The gradient
    is what reverse mode gives for ``Q.min(0)``: the smaller member's, half of each on a tie,
    not a number where either value is not; the larger member's backward pass is skipped. feats
    are the two members' state parts; not differentiable."""
    _require()
    s, act_dim = actions.shape[-2], actions.shape[-1]
    p = actions.size // act_dim
    outputs = (
        jax.ShapeDtypeStruct((2, p), jnp.float32),
        jax.ShapeDtypeStruct((p, act_dim), jnp.float32),
    )
    q, g = jax.ffi.ffi_call(TARGETS["min_grad"], outputs)(
        feats[0].reshape(s, -1),
        feats[1].reshape(s, -1),
        actions.reshape(p, act_dim),
        *_member_params(params, 0),
        *_member_params(params, 1),
        act=np.int32(ACTIVATIONS[activation]),
    )
    return q.reshape(2, *actions.shape[:-1]), g.reshape(actions.shape)


PARAM_NAMES = ("ws", "wa", "b0", "w1", "b1", "w2", "b2")


def critic_loss_grad(
    obs: jax.Array,
    actions: jax.Array,
    targets: jax.Array,
    params: dict[str, Any],
    member: int,
    activation: str,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """mean_r (Q_j(s_r, a_r) - y_r)^2 of critic ``member`` at obs (B, O), actions (B, A) and
    targets y (B,), and its gradient with respect to each of the member's parameters (a dict
    keyed like ``params``). The same values as ``jax.value_and_grad`` of that loss, up to float
    rounding; not differentiable itself."""
    _require()
    names = [f"m{member}_{n}" for n in PARAM_NAMES]
    outs = (jax.ShapeDtypeStruct((1,), jnp.float32),) + tuple(
        jax.ShapeDtypeStruct(params[n].shape, jnp.float32) for n in names
    )
    loss, *grads = jax.ffi.ffi_call(TARGETS["train"], outs)(
        obs,
        actions,
        targets,
        *(params[n] for n in names),
        act=np.int32(ACTIVATIONS[activation]),
    )
    return loss[0], dict(zip(names, grads))


def critic_value_grad_reference(
    net: Any, params: dict[str, Any], feats: tuple[jax.Array, ...], actions: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The same values through JAX for every member: Q (E, *N, S) and dQ/da (E, *N, S, A)."""
    lead = tuple(f.reshape((1,) * (actions.ndim - f.ndim) + f.shape) for f in feats)

    def member(j: int) -> tuple[jax.Array, jax.Array]:
        def q(a: jax.Array) -> jax.Array:
            return apply_net(net, params, lead, a, method="from_features")[j]

        val, pull = jax.vjp(q, actions)
        return val, pull(jnp.ones_like(val))[0]

    vals, grads = zip(*(member(j) for j in range(len(feats))))
    return jnp.stack(vals), jnp.stack(grads)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["build"]:
        print("usage: python -m algd.kernels build", file=sys.stderr)
        return 2
    try:
        build()
    except KernelError as exc:
        print(f"algd: critic kernel not built: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
