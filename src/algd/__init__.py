"""algd: safe reinforcement learning with diffusion policies guided by the augmented Lagrangian."""

from algd import _xla as _xla  # sets XLA options; must run before jax is first imported

__version__ = "0.1.0"
