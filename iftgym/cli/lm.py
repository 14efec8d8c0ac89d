"""``iftgym lm``: the token world's short name for ``iftgym compare --world tokens`` — the same experiment and code
path (TinyGPT or a Hugging Face model on a token task with any rule; reference rows, paired statistics, exact match
and the exact probability of the target, preference strips, with ``--update-maps`` update strips (each rule's next
step at three training points: the most raised and lowered tokens and the loss weight at each answer position, in
``OUT/<task>-update.png``), a live metrics log and, with ``--save``, the trained models), with ``--algo`` for
``--algos`` and its output in ``runs/lm``. Under ``torchrun --nproc_per_node=N -m iftgym
lm ...`` the processes share every minibatch (rank 0 writes)."""

from __future__ import annotations

import argparse

from iftgym.cli.common import add_settings
from iftgym.cli.compare import add_run_arguments, run


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``iftgym lm`` and its options: ``iftgym compare``'s but the world's, and no Frozen Lake setting."""
    from iftgym.experiments.config import FROZEN_LAKE, CompareConfig
    from iftgym.settings import settings_of

    lm = sub.add_parser("lm", help="train language models on a token task with any rule (iftgym compare --world "
                        "tokens): exact match, paired statistics, preference strips, saved models")  # fmt: skip
    grid = [f.name for f in settings_of(CompareConfig) if f.metadata["world"] == FROZEN_LAKE]
    add_settings(lm, CompareConfig, skip=["world", "world_args", "hidden", *grid], aliases={"algos": "--algo"})
    add_run_arguments(lm, "runs/lm", grid=False)
    lm.set_defaults(run=run, fixed={"world": "tokens"})
