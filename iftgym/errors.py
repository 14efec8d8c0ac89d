"""The failures of a run that had started with valid settings (bad settings are ``ValueError`` before any work)."""


class RunFailed(RuntimeError):
    """A run stopped part-way: training diverged, or memory ran out. The message says what, where and what was
    kept; the command line reports it in one line with exit status 1."""


class TrainingDiverged(RunFailed):
    """A loss became NaN or infinite: training stopped there."""
