"""The persistent XLA compilation cache the command line uses.

``import algd`` changes no process-wide setting, and algd sets no XLA option: the one it used to
set on import (``--xla_cpu_multi_thread_eigen=false``) measured no faster on the current code
(docs/performance.md), so it was dropped.
"""

from __future__ import annotations

import os
from pathlib import Path


def enable_compilation_cache() -> None:
    """Use a persistent XLA compilation cache (ALGD_COMPILE_CACHE, default ~/.cache/algd/xla).

    First compiles cost several seconds per process; processes that repeat a compile reuse it
    from disk. Set ALGD_COMPILE_CACHE=off to disable. The CLI calls this; a library user may.
    """
    where = os.environ.get("ALGD_COMPILE_CACHE", str(Path.home() / ".cache" / "algd" / "xla"))
    if where == "off":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
