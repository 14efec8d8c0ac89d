"""The paper's Frozen Lake policy: a two-layer fully connected network on the one-hot state, K seeds batched.

Each seed's weights are initialised like ``torch.nn.Linear`` from its own generator, so seed s starts from the same
weights whether it is trained alone or beside others.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from iftgym.policies.base import Policy, check_parameter_memory
from iftgym.validate import at_least


def _linear_init(fan_in: int, fan_out: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    bound = 1.0 / math.sqrt(fan_in)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    weight = (torch.rand(fan_in, fan_out, generator=generator) * 2 - 1) * bound
    bias = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
    return weight, bias


class MLPPolicy(Policy):
    """``logits = W2 relu(W1 x + b1) + b2`` per seed, ``x`` the one-hot encoding of the input id.

    Args:
        n_ids: number of input ids (Frozen Lake cells).
        n_actions: number of actions.
        hidden: width of the hidden layer.
        seeds: K seeds, or their count.
    """

    def __init__(self, n_ids: int, n_actions: int, hidden: int = 64, seeds: int | Sequence[int] = 1) -> None:
        super().__init__(seeds, n_actions)
        at_least("n_ids", n_ids, 1)
        at_least("hidden", hidden, 1)
        check_parameter_memory(f"MLPPolicy with {self.n_seeds} seeds x hidden={hidden} on {n_ids} inputs",
                               self.n_seeds * (n_ids * hidden + hidden + hidden * n_actions + n_actions) + n_ids**2,
                               "lower seeds or hidden")  # fmt: skip
        self.hidden = hidden
        layers = []
        for k in range(self.n_seeds):
            gen = self.seed_generator(k)
            layers.append((*_linear_init(n_ids, hidden, gen), *_linear_init(hidden, n_actions, gen)))
        w1, b1, w2, b2 = (torch.stack(parts) for parts in zip(*layers))
        self.w1, self.b1, self.w2, self.b2 = (nn.Parameter(p) for p in (w1, b1, w2, b2))
        self.register_buffer("encodings", torch.eye(n_ids))

    def spec(self) -> dict:
        return {
            "n_ids": self.w1.shape[1],
            "n_actions": self.n_actions,
            "hidden": self.hidden,
            "seeds": list(self.seeds),
        }

    def embedding_table(self) -> torch.Tensor:
        return self.encodings.expand(self.n_seeds, -1, -1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.seed_inputs(inputs)
        h = torch.relu(torch.einsum("kbtd,kdh->kbth", x, self.w1) + self.b1[:, None, None])
        return torch.einsum("kbth,kha->kbta", h, self.w2) + self.b2[:, None, None]

    def direct_id_logits(self) -> torch.Tensor:
        # a one-hot input picks a row of w1: the same numbers as forward() on the encodings, without the product
        self.count_positions(self.w1.shape[1])
        h = torch.relu(self.w1 + self.b1[:, None])
        return torch.einsum("kth,kha->kta", h, self.w2) + self.b2[:, None]
