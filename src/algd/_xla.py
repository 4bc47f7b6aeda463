"""The one place that sets XLA options and the compilation cache.

XLA's concurrency-optimised CPU scheduler slows the small, compute-bound ALGD update on a 2-core
CPU (measured: about 10% fewer updates/s and twice the single-state action latency), so it is
switched off unless ALGD_XLA_TUNING=0. XLA reads XLA_FLAGS once, when jax is first imported, so
this module is imported by ``algd/__init__.py`` before anything imports jax.
"""

from __future__ import annotations

import os
from pathlib import Path

_SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"

if os.environ.get("ALGD_XLA_TUNING", "1") != "0":
    _flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_enable_concurrency_optimized_scheduler" not in _flags:
        os.environ["XLA_FLAGS"] = f"{_flags} {_SCHEDULER_FLAG}".strip()


def enable_compilation_cache() -> None:
    """Use a persistent XLA compilation cache (ALGD_COMPILE_CACHE, default ~/.cache/algd/xla).

    First compiles cost 4-6 s per process; processes that repeat a compile reuse it from disk.
    Set ALGD_COMPILE_CACHE=off to disable.
    """
    where = os.environ.get("ALGD_COMPILE_CACHE", str(Path.home() / ".cache" / "algd" / "xla"))
    if where == "off":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
