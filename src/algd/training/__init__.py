"""Training: the group loop and its two kinds of step, runs and groups, pre-flight checks.

- :mod:`algd.training.loop`: :class:`GroupLoop`, a group of seeds of one configuration and
  the cadence of its steps (act, step, log, evaluate, checkpoint);
- :mod:`algd.training.offpolicy` / :mod:`algd.training.onpolicy`: the two loops over it
  (replay and UTD updates; rollouts);
- :mod:`algd.training.member`: one seed on the host and its checkpointed loop state;
- :mod:`algd.training.runs`: creating, continuing and resuming runs and groups;
- :mod:`algd.training.preflight`: what is checked before a run directory exists;
- :mod:`algd.training.records`, :mod:`algd.training.runlogs`: records and log files.
"""

from algd.training.runs import make_loop, resume, run_members, train, train_seeds

__all__ = ["make_loop", "resume", "run_members", "train", "train_seeds"]
