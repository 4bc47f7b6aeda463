"""The one place that sets XLA options and the compilation cache.

XLA reads XLA_FLAGS once, when jax is first imported, so this module is imported by
``algd/__init__.py`` before anything imports jax. Set ALGD_XLA_TUNING=0 to leave XLA_FLAGS alone.

The one option set here: ``--xla_cpu_multi_thread_eigen=false``. The ALGD update is many
medium-sized matrix products that do not depend on each other (six critics, forward and
backward); running each single-threaded and letting XLA's scheduler run independent ones on
different cores beat splitting every product across both cores. Measured on the 2-core CPU
this project targets, interleaved runs of the reference-setting update (4 rounds each):
median 30.1 updates/s with this option, 27.9 with XLA's defaults, 26.7 with the concurrency-
optimised scheduler switched off instead (docs/performance.md).
"""

from __future__ import annotations

import os
from pathlib import Path

TUNED_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)

if os.environ.get("ALGD_XLA_TUNING", "1") != "0":
    _flags = os.environ.get("XLA_FLAGS", "")
    for _flag in TUNED_FLAGS:
        if _flag.split("=")[0] not in _flags:
            _flags = f"{_flags} {_flag}".strip()
    os.environ["XLA_FLAGS"] = _flags


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
