"""XLA options the command line sets, and the compilation cache.

``import algd`` changes no process-wide setting. The ``algd`` command (cli.main), before it
imports JAX, adds the options below to ``XLA_FLAGS`` unless ALGD_XLA_TUNING=0 or the user's
``XLA_FLAGS`` already names them; a library user opts in with :func:`tune_cpu_flags` before
importing JAX. docs/performance.md has the measurements.

``--xla_cpu_multi_thread_eigen=false``: the ALGD update is many medium-sized matrix products
that do not depend on each other (six critics, forward and backward); running each one
single-threaded and letting XLA's scheduler run independent ones on different cores beats
splitting every product across the cores on the 2-core CPUs measured. It is a CPU option: GPU
backends ignore it.
"""

from __future__ import annotations

import os
from pathlib import Path

TUNED_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)


def tune_cpu_flags() -> None:
    """Add TUNED_FLAGS to XLA_FLAGS (no effect once JAX has been imported)."""
    if os.environ.get("ALGD_XLA_TUNING", "1") == "0":
        return
    flags = os.environ.get("XLA_FLAGS", "")
    for flag in TUNED_FLAGS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags


def enable_compilation_cache() -> None:
    """Use a persistent XLA compilation cache (ALGD_COMPILE_CACHE, default ~/.cache/algd/xla).

    First compiles cost several seconds per process; processes that repeat a compile reuse it
    from disk. Set ALGD_COMPILE_CACHE=off to disable.
    """
    where = os.environ.get("ALGD_COMPILE_CACHE", str(Path.home() / ".cache" / "algd" / "xla"))
    if where == "off":
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
