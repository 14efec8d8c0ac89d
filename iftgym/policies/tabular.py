"""A tabular softmax policy: one free logit per (input id, action), one table per seed.

A soft input (a mix of one-hot encodings) mixes the rows' logits linearly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from iftgym.policies.base import Policy, check_parameter_memory
from iftgym.validate import at_least, non_negative


class TabularPolicy(Policy):
    """``logits = encoding @ table[k]`` with one-hot encodings of ``n_ids`` input ids.

    Args:
        n_ids: number of input ids (Frozen Lake cells).
        n_actions: number of actions.
        seeds: K seeds, or their count.
        init_std: standard deviation of the initial logits (0 gives the uniform policy).
    """

    def __init__(self, n_ids: int, n_actions: int, seeds: int | Sequence[int] = 1, init_std: float = 0.0) -> None:
        super().__init__(seeds, n_actions)
        at_least("n_ids", n_ids, 1)
        non_negative("init_std", init_std)
        check_parameter_memory(f"TabularPolicy with {self.n_seeds} seeds on {n_ids} inputs",
                               self.n_seeds * n_ids * n_actions + n_ids**2, "lower seeds")  # fmt: skip
        tables = [
            torch.randn(n_ids, n_actions, generator=self.seed_generator(k)) * init_std for k in range(self.n_seeds)
        ]
        self.logits = nn.Parameter(torch.stack(tables))
        self.register_buffer("encodings", torch.eye(n_ids))
        self.init_std = float(init_std)

    def spec(self) -> dict:
        n_ids, n_actions = self.logits.shape[1:]
        return {"n_ids": n_ids, "n_actions": n_actions, "seeds": list(self.seeds), "init_std": self.init_std}

    def embedding_table(self) -> torch.Tensor:
        return self.encodings.expand(self.n_seeds, -1, -1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.einsum("kbtd,kda->kbta", self.seed_inputs(inputs), self.logits)

    def direct_id_logits(self) -> torch.Tensor:
        self.count_positions(self.logits.shape[1])  # a one-hot input picks its row of logits
        return self.logits
