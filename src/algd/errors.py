"""User-facing errors. The CLI prints each as one line and exits with code 2."""


class AlgdError(Exception):
    """A problem the user can fix (bad config, unknown id, bad checkpoint, faulty env)."""


class ConfigError(AlgdError):
    """A config field holds an invalid value."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"config field '{field}': {problem}")
        self.field = field


class EnvError(AlgdError):
    """An environment id is unknown or an environment misbehaves."""


class CheckpointError(AlgdError):
    """A checkpoint is missing, truncated, corrupt or does not match the run."""


class RunDirError(AlgdError):
    """A run directory cannot be created, resumed or read."""


class NumericalError(AlgdError):
    """A loss, gradient or parameter became non-finite during training."""


class WriteError(AlgdError):
    """A file could not be written (disk full, permissions, read-only file system)."""


class Stopped(Exception):
    """SIGINT or SIGTERM arrived before a run directory was created (nothing was written)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by signal {signum} before the run started; nothing was written")
        self.signum = signum
