from __future__ import annotations

import os
from pathlib import Path

# Share compiled XLA programs between the test process and the CLI subprocesses it starts.
os.environ.setdefault(
    "ALGD_COMPILE_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "xla")
)

from algd.xla import enable_compilation_cache  # noqa: E402

enable_compilation_cache()
