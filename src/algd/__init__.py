"""algd: safe reinforcement learning with diffusion policies guided by the augmented Lagrangian."""

__version__ = "0.1.0"
