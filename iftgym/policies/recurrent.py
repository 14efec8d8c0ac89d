"""A Frozen Lake policy with memory: a GRU over the one-hot encodings of the cells visited so far, K seeds batched.

The paper's MLP sees only the current cell, so IFT's temporal residual connection — mixing where the model's own
prediction leads into one step's input — cannot reach the later steps as it does in a language model, whose next
prediction reads the whole prefix. This policy reads the whole history, so it can. Each seed's weights are
initialised like ``torch.nn.GRU`` (uniform in ``±1/sqrt(hidden)``) from its own generator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from iftgym.policies.base import Policy, check_parameter_memory
from iftgym.validate import at_least


class GRUPolicy(Policy):
    """``h_t = GRU(x_t, h_{t-1})``, ``logits_t = W h_t + b`` per seed, ``x_t`` the one-hot encoding of step t's cell.

    Args:
        n_ids: number of input ids (Frozen Lake cells).
        n_actions: number of actions.
        hidden: width of the recurrent state.
        seeds: K seeds, or their count.
    """

    markov = False

    def __init__(self, n_ids: int, n_actions: int, hidden: int = 64, seeds: int | Sequence[int] = 1) -> None:
        super().__init__(seeds, n_actions)
        at_least("n_ids", n_ids, 1)
        at_least("hidden", hidden, 1)
        weights = n_ids * 3 * hidden + hidden * 3 * hidden + 6 * hidden + hidden * n_actions + n_actions
        check_parameter_memory(f"GRUPolicy with {self.n_seeds} seeds x hidden={hidden} on {n_ids} inputs",
                               self.n_seeds * weights + n_ids**2, "lower seeds or hidden")  # fmt: skip
        self.hidden = hidden
        bound = 1.0 / math.sqrt(hidden)
        shapes = {"w_x": (n_ids, 3 * hidden), "b_x": (3 * hidden,), "w_h": (hidden, 3 * hidden),
                  "b_h": (3 * hidden,), "w_out": (hidden, n_actions), "b_out": (n_actions,)}  # fmt: skip
        per_seed = []
        for k in range(self.n_seeds):
            generator = self.seed_generator(k)
            per_seed.append([(torch.rand(shape, generator=generator) * 2 - 1) * bound for shape in shapes.values()])
        for name, parts in zip(shapes, zip(*per_seed)):
            setattr(self, name, nn.Parameter(torch.stack(parts)))
        self.register_buffer("encodings", torch.eye(n_ids))

    def spec(self) -> dict:
        return {
            "n_ids": self.w_x.shape[1],
            "n_actions": self.n_actions,
            "hidden": self.hidden,
            "seeds": list(self.seeds),
        }

    def embedding_table(self) -> torch.Tensor:
        return self.encodings.expand(self.n_seeds, -1, -1)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.seed_inputs(inputs)
        gates_x = torch.einsum("kbtd,kdg->kbtg", x, self.w_x) + self.b_x[:, None, None]
        h = x.new_zeros(*x.shape[:2], self.hidden)
        states = []
        for t in range(x.shape[2]):  # the recurrence: step t's state carries everything before it
            h = self._cell(gates_x[:, :, t], h)
            states.append(h)
        return torch.einsum("kbth,kha->kbta", torch.stack(states, 2), self.w_out) + self.b_out[:, None, None]

    def step(self, inputs: torch.Tensor, state: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        self.count_positions(inputs.shape[-2])
        gates_x = torch.einsum("kbd,kdg->kbg", inputs, self.w_x) + self.b_x[:, None]
        h = self._cell(gates_x, inputs.new_zeros(*inputs.shape[:2], self.hidden) if state is None else state)
        return torch.einsum("kbh,kha->kba", h, self.w_out) + self.b_out[:, None], h

    def _cell(self, gates_x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """One GRU step: the new state ``(K, B, H)`` from the input's gate pre-activations and the old state."""
        H = self.hidden
        gates_h = torch.einsum("kbh,khg->kbg", h, self.w_h) + self.b_h[:, None]
        reset = torch.sigmoid(gates_x[..., :H] + gates_h[..., :H])
        update = torch.sigmoid(gates_x[..., H : 2 * H] + gates_h[..., H : 2 * H])
        candidate = torch.tanh(gates_x[..., 2 * H :] + reset * gates_h[..., 2 * H :])
        return (1 - update) * candidate + update * h
