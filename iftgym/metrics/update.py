"""Update fields: what one optimiser step of a rule does to log π(a|s) at every state and action, and why.

For a rule, a policy (K seeds) and the rule's data, :func:`update_field` measures and predicts the change one
optimiser step makes to ``log pi(a|s)`` at every probed state (by default every input id: on Frozen Lake every cell):

* **measured**: the step applied to a deep copy of the policy, the rule and the optimiser state (the original is left
  untouched), ``log pi'(a|s) - log pi(a|s)``;
* **predicted**, to first order: ``J(s, a) . delta``, ``J`` the gradient of ``log pi(a|s)`` in the policy's weights and
  ``delta`` the weight change the optimiser actually made (``-lr g`` for plain SGD; for Adam its preconditioned step,
  about ``lr sign(g)`` on a fresh optimiser), computed exactly by two reverse passes (:func:`directional`);
* **contributions**: the prediction split by the loss term each part of the gradient comes from. The rule's gradient
  enters the network through the logits of every position it reads, ``g = sum_p (dz_p/dtheta)^T dL/dz_p``, exactly
  (the chain rule); grouping the positions by their input id (the cell the action is taken in) gives one term per
  source cell, ``g_c``. For SFT ``g_c`` is the gradient of that cell's loss terms; for IFT it also carries what
  flows through the propagation weights into that position. Each term moves the weights by the optimiser's linear
  response at fixed preconditioner, ``-P * g_c`` (:func:`gradient_scale`: ``lr`` for SGD; for Adam ``lr (1 - beta1) /
  (1 - beta1^t) / (sqrt(v_t / (1 - beta2^t)) + eps)`` with the step's own second moment ``v_t``), so the terms are
  linear in the gradient and sum to the step's gradient part; ``rest`` is what the step does apart from this
  step's gradient (momentum from earlier steps, weight decay; zero up to rounding on a fresh optimiser without
  weight decay). ``contributions.sum(1) + rest == predicted`` holds to float64 rounding by construction.

On the tabular policy each cell has its own logits, so a term moves only its own cell (exact locality); an MLP or GRU
carries it to other cells, which is what :meth:`UpdateField.carried` shows. IFT's temporal residual connection mixes
a predicted successor's encoding into a step's input, so even on the tabular policy its terms reach the successor
cells of wrong predictions.

:func:`mse_change_shares` turns a field into the first-order change of the MSE to the optimal policy on the cells
no demonstration acts in (``mse_rest`` of :mod:`iftgym.metrics.decompose`), split by source cell;
:func:`alignment` is the cosine between two rules' fields; :mod:`iftgym.explain.update` draws them.
"""

from __future__ import annotations

import copy
import itertools
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jvp, vmap
from torch.nn.attention import SDPBackend, sdpa_kernel

from iftgym.loop import OPTIMIZERS
from iftgym.metrics.decompose import cell_errors, demonstrated_cells
from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.registry import make_rule
from iftgym.types import PairBatch, StepBatch, TrainingData
from iftgym.validate import non_negative, one_of, positive
from iftgym.world import World, seed_generators
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP

FIELDS = ("predicted", "measured")


@dataclass(frozen=True)
class UpdateField:
    """One optimiser step's change of ``log pi(a|s)``, seed by seed (see the module doc). Arrays are float64.

    Attributes:
        rule, optimizer, lr: what took the step (``optimizer`` the class name, ``lr`` its first group's rate).
        seeds: the policy's seeds (axis 0 of every array).
        states: ``(N, T)`` input ids of the probed states; the field is read at each one's last step (for a Markov
            policy ``T = 1``: the state is its id).
        logps: ``(K, N, A)`` ``log pi(a|s)`` before the step.
        measured: ``(K, N, A)`` the change the step made, measured on a copy.
        predicted: ``(K, N, A)`` its first-order prediction ``J . delta``.
        sources: ``(C,)`` the input ids (cells) whose loss terms moved the weights, ascending; empty when the
            field was computed without the split.
        contributions: ``(K, C, N, A)`` the part of ``predicted`` from each source's term.
        rest: ``(K, N, A)`` the part from anything but this step's gradient (momentum, weight decay, rounding).
        markov: whether the policy is Markov (its field over cells is its whole policy's change).
    """

    rule: str
    optimizer: str
    lr: float
    seeds: tuple[int, ...]
    states: np.ndarray
    logps: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    sources: np.ndarray
    contributions: np.ndarray
    rest: np.ndarray
    markov: bool = True

    def values(self, which: str = "predicted") -> np.ndarray:
        """``(K, N, A)``: the ``"predicted"`` or the ``"measured"`` change."""
        one_of("which", which, FIELDS)
        return self.predicted if which == "predicted" else self.measured

    def own(self) -> np.ndarray:
        """``(K, N, A)``: the part of each state's predicted change that comes from its own input id's loss terms
        (zero where that id is no source)."""
        index = {int(c): i for i, c in enumerate(self.sources)}
        own = np.zeros_like(self.predicted)
        for n, state in enumerate(self.states[:, -1]):
            if int(state) in index:
                own[:, n] = self.contributions[:, index[int(state)], n]
        return own

    def carried(self) -> np.ndarray:
        """``(K, N, A)``: the part of each state's predicted change carried from other ids' loss terms (the
        network's generalisation; zero on the tabular policy, apart from IFT's mixed inputs)."""
        return self.contributions.sum(1) - self.own()

    def moved_by(self, state: int) -> CellSources:
        """Which loss terms moved the probed state at index ``state`` (:class:`CellSources`, means over seeds)."""
        if isinstance(state, bool) or not isinstance(state, int | np.integer) or not 0 <= state < len(self.states):
            raise IndexError(f"state={state!r} is not a probed state: expected an integer 0 <= state < "
                             f"{len(self.states)}")  # fmt: skip
        total = self.predicted[:, state].mean(0)
        parts = self.contributions[:, :, state].mean(0)
        rest = self.rest[:, state].mean(0)
        size = float(total @ total)
        shares = (parts @ total / size, float(rest @ total / size)) if size > 0 else (np.full(len(parts), np.nan),
                                                                                       float("nan"))  # fmt: skip
        return CellSources(int(self.states[state, -1]), total, self.sources.copy(), parts, rest, *shares)

    def summary(self) -> FieldSummary:
        """The mean over seeds of what its picture shows (:class:`FieldSummary`)."""
        return FieldSummary(self.rule, self.optimizer, self.lr, self.seeds, self.states, self.predicted.mean(0),
                            self.measured.mean(0), self.own().mean(0), self.carried().mean(0), self.markov)  # fmt: skip


@dataclass(frozen=True)
class CellSources:
    """What moved one state in an :class:`UpdateField` (:meth:`UpdateField.moved_by`), means over seeds.

    Attributes:
        state: the state's input id (on Frozen Lake its cell).
        total: ``(A,)`` the predicted change of ``log pi(a|state)``.
        sources: ``(C,)`` the input ids whose loss terms moved the weights (the field's).
        parts: ``(C, A)`` each source's part of ``total``.
        rest: ``(A,)`` the part from anything but this step's gradient (momentum, weight decay).
        shares: ``(C,)`` each source's share of the change, its part projected on ``total``: ``parts @ total /
            |total|^2``; with ``rest_share`` they sum to 1 (NaN where ``total`` is zero).
        rest_share: the rest's share.
    """

    state: int
    total: np.ndarray
    sources: np.ndarray
    parts: np.ndarray
    rest: np.ndarray
    shares: np.ndarray
    rest_share: float

    def own_share(self) -> float:
        """The share of the state's own loss terms (0 where it is no source)."""
        return float(self.shares[self.sources == self.state].sum())


@dataclass(frozen=True)
class FieldSummary:
    """An :class:`UpdateField` reduced to its mean over seeds: what its update map shows, small enough for
    ``results.json`` (``iftgym compare --update-maps`` keeps one per rule and training point, and ``iftgym plot``
    draws them). :func:`draw_update_map` draws it as it draws a field (seed axis of one: the mean).

    Attributes:
        rule, optimizer, lr, seeds, states, markov: as the field's.
        predicted, measured, own_part, carried_part: ``(N, A)`` the means over seeds of the field's predicted and
            measured changes and of :meth:`UpdateField.own` and :meth:`UpdateField.carried`.
    """

    rule: str
    optimizer: str
    lr: float
    seeds: tuple[int, ...]
    states: np.ndarray
    predicted: np.ndarray
    measured: np.ndarray
    own_part: np.ndarray
    carried_part: np.ndarray
    markov: bool = True

    def values(self, which: str = "predicted") -> np.ndarray:
        """``(1, N, A)``: the mean ``"predicted"`` or ``"measured"`` change."""
        one_of("which", which, FIELDS)
        return (self.predicted if which == "predicted" else self.measured)[None]

    def own(self) -> np.ndarray:
        """``(1, N, A)``: the mean part from each state's own loss terms."""
        return self.own_part[None]

    def carried(self) -> np.ndarray:
        """``(1, N, A)``: the mean part carried from other states' terms."""
        return self.carried_part[None]

    def own_fraction(self, cells: np.ndarray | None = None) -> float | None:
        """``Σ|own| / Σ(|own| + |carried|)`` over the ``cells`` (a boolean mask; default all), summed over actions:
        the own share that its picture's title and bars show; ``None`` where the split is zero."""
        cells = np.ones(len(self.states), bool) if cells is None else np.asarray(cells, bool)
        own, carried = np.abs(self.own_part[cells]).sum(), np.abs(self.carried_part[cells]).sum()
        return float(own / (own + carried)) if own + carried > 0 else None

    def as_json(self) -> dict:
        """JSON-ready: the four ``(N, A)`` arrays as lists (the other attributes are the caller's to keep)."""
        return {"predicted": self.predicted.tolist(), "measured": self.measured.tolist(),
                "own": self.own_part.tolist(), "carried": self.carried_part.tolist()}  # fmt: skip

    @classmethod
    def from_json(
        cls, data: Mapping[str, list], rule: str, optimizer: str = "", lr: float = float("nan"), markov: bool = True
    ) -> FieldSummary:
        """Read :meth:`as_json`'s arrays back (states: every id, in order; seeds: unknown, one mean)."""
        arrays = {key: np.asarray(data[key], dtype=float) for key in ("predicted", "measured", "own", "carried")}
        states = np.arange(len(arrays["predicted"]))[:, None]
        return cls(rule, optimizer, lr, (), states, arrays["predicted"], arrays["measured"], arrays["own"],
                   arrays["carried"], markov)  # fmt: skip


AnyField = UpdateField | FieldSummary


# -- the optimiser's linear response -----------------------------------------------------------------------------
def gradient_scale(optimizer: torch.optim.Optimizer, fresh: set[int]) -> dict[int, torch.Tensor]:
    """``{id(param): P}``: after a step of ``optimizer``, the factor by which that step moved each weight per unit of
    its gradient, at the step's own preconditioner (``delta = -P * g + rest``). ``fresh`` holds the ids of the
    weights that had no optimiser state before the step (SGD's first momentum step is undamped). Plain and
    momentum SGD (not Nesterov), Adam and AdamW (also AMSGrad) are known; anything else is a ``ValueError``."""
    scales: dict[int, torch.Tensor] = {}
    kind = type(optimizer)
    if kind not in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        raise ValueError(f"optimizer {kind.__name__} is not supported: expected SGD, Adam or AdamW")
    for group in optimizer.param_groups:
        if group.get("maximize") or group.get("nesterov"):
            raise ValueError("an optimizer with maximize=True or nesterov=True is not supported")
        lr = float(group["lr"])
        for param in group["params"]:
            state = optimizer.state.get(param)
            if param.grad is None or (kind is not torch.optim.SGD and not state):
                continue
            if kind is torch.optim.SGD:
                momentum, dampening = group["momentum"], group["dampening"]
                factor = 1.0 if momentum == 0 or id(param) in fresh else 1.0 - dampening
                scales[id(param)] = torch.full_like(param, lr * factor)
                continue
            beta1, beta2 = group["betas"]
            t = float(state["step"])
            second = state["max_exp_avg_sq"] if group.get("amsgrad") else state["exp_avg_sq"]
            denom = second.sqrt() / (1 - beta2**t) ** 0.5 + group["eps"]
            scales[id(param)] = lr * (1 - beta1) / (1 - beta1**t) / denom
    return scales


# -- the field ---------------------------------------------------------------------------------------------------
class _Readout(nn.Module):
    """``log pi(a|s)`` at the last step of each probed state, or at the ``(row, step)`` pairs ``reads`` ``(P, 2)``
    of the states (a token sequence's answer positions), as a module (for :func:`torch.func.functional_call`)."""

    def __init__(self, policy: Policy, states: torch.Tensor, reads: torch.Tensor | None = None) -> None:
        super().__init__()
        self.policy, self.states, self.reads = policy, states, reads

    def forward(self) -> torch.Tensor:
        logits = self.policy.logits_at(self.states)
        logits = logits[:, :, -1] if self.reads is None else logits[:, self.reads[:, 0], self.reads[:, 1]]
        return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float64)), dim=-1)


BATCHED_TANGENTS = 20_000_000  # at most this many tangent numbers in all: the directions' passes run as one (vmap)


def directional(
    policy: Policy,
    states: torch.Tensor,
    directions: Sequence[dict[str, torch.Tensor]],
    reads: torch.Tensor | None = None,
) -> list:
    """``log pi`` at the states (at their last steps, or at ``reads``: see :class:`_Readout`) and, for each direction
    (a tangent per named weight), its derivative along it: by two reverse passes (:func:`_double_backward`); where an
    operation has no second derivative, forward-mode passes, all directions in one batched pass (``vmap``) where
    their tangents are small, else one pass per direction; or, where an operation has no forward-mode derivative
    either (the CPU's fused attention of TinyGPT), one reverse-mode pass per probed output."""
    readout = _Readout(policy, states, reads)
    if not directions:  # log pi alone
        with torch.no_grad():
            return [readout()]
    names = [name for name, _ in policy.named_parameters()]
    primals = tuple(param.detach() for _, param in policy.named_parameters())
    try:
        # the math attention kernel has second derivatives (the CPU's fused one has none): same numbers, 17x faster on
        # a TinyGPT than one reverse pass per probed output
        with sdpa_kernel([SDPBackend.MATH]):
            return _double_backward(readout, [param for _, param in policy.named_parameters()], names, directions)
    except (RuntimeError, NotImplementedError):  # an operation without a second derivative
        pass

    def logps(*weights: torch.Tensor) -> torch.Tensor:
        return functional_call(readout, {f"policy.{n}": w for n, w in zip(names, weights)}, ())

    with torch.no_grad():
        base = logps(*primals)
    tangents = [tuple(d.get(name, torch.zeros_like(p)).to(p.dtype) for name, p in zip(names, primals))
                for d in directions]  # fmt: skip
    try:
        with warnings.catch_warnings():  # torch's first forward-mode pass loads decompositions with torch.jit.script
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.*", category=DeprecationWarning)
            if len(tangents) > 1 and len(tangents) * sum(p.numel() for p in primals) <= BATCHED_TANGENTS:
                try:
                    stacked = [torch.stack(parts) for parts in zip(*tangents)]
                    return [base, *vmap(lambda *tangent: jvp(logps, primals, tangent)[1])(*stacked).unbind()]
                except (RuntimeError, NotImplementedError):  # an operation without a batching rule: one by one
                    pass
            return [base, *(jvp(logps, primals, tangent)[1] for tangent in tangents)]
    except NotImplementedError:
        return [base, *_reverse_directional(policy, readout, tangents)]


def _double_backward(
    readout: _Readout, params: list[nn.Parameter], names: list[str], directions: Sequence[dict[str, torch.Tensor]]
) -> list:
    """:func:`directional` by two reverse passes: ``u -> J^T u``, the gradient of ``<out, u>`` in the weights, is
    linear in ``u``, so the gradient of ``<J^T u, v>`` in ``u`` is ``J v``. Every gradient is of a scalar (no
    ``grad_outputs``): torch's first forward-mode pass in a process compiles decompositions with TorchScript and its
    first gradient with ``grad_outputs`` imports sympy for a shape check, about 0.3 s and 0.4 s that a compare worker
    would pay for three fields."""
    with torch.enable_grad():
        out = readout()
        u = torch.zeros_like(out, requires_grad=True)
        vjp = torch.autograd.grad(_scalar(out, u), params, create_graph=True, allow_unused=True)
        used = [(g, name) for g, name in zip(vjp, names) if g is not None]
        derivatives = []
        for direction in directions:
            terms = [_scalar(g, direction[name].to(g.dtype)) for g, name in used if name in direction]
            change = torch.autograd.grad(sum(terms), u, retain_graph=True, allow_unused=True)[0] if terms else None
            derivatives.append(torch.zeros_like(out.detach()) if change is None else change.detach())
    return [out.detach(), *derivatives]


def _scalar(tensor: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``<tensor, weight>``: the scalar whose gradient is a vector-Jacobian product without ``grad_outputs``."""
    return (tensor * weight).sum()


def _reverse_directional(policy: Policy, readout: _Readout, tangents: list[tuple[torch.Tensor, ...]]) -> list:
    """:func:`directional`'s derivatives by reverse mode: the gradient of each probed ``log pi(a|s)`` summed over
    the seeds (seed k's weights, slice k of every weight, reach only seed k's outputs), dotted with each tangent."""
    params = list(policy.parameters())
    K = policy.n_seeds
    if any(p.dim() == 0 or p.shape[0] != K for p in params):
        raise ValueError(f"{type(policy).__name__} has a weight without a leading seed axis: its field needs "
                         "forward-mode derivatives, which one of its operations lacks")  # fmt: skip
    with torch.enable_grad():
        out = readout()
        flat = out.sum(0).reshape(-1)
        changes = [torch.zeros_like(out.detach()) for _ in tangents]
        for i in range(flat.numel()):
            grads = torch.autograd.grad(flat[i], params, retain_graph=True, allow_unused=True)
            n, a = divmod(i, out.shape[-1])
            for change, tangent in zip(changes, tangents):
                change[:, n, a] = sum((g.to(t.dtype) * t).reshape(K, -1).sum(-1).to(change.dtype)
                                      for g, t in zip(grads, tangent) if g is not None)  # fmt: skip
    return changes


def _one_hot_table(policy: Policy) -> bool:
    with torch.no_grad():
        table = policy.embedding_table()
    rows, width = table.shape[-2:]
    return rows == width and bool(torch.equal(table, torch.eye(rows, dtype=table.dtype, device=table.device)
                                              .expand_as(table)))  # fmt: skip


def update_field(
    rule: str | Rule,
    policy: Policy,
    world: World,
    data: TrainingData | StepBatch | PairBatch | None = None,
    *,
    lr: float | None = None,
    optimizer: str | torch.optim.Optimizer = "adam",
    weight_decay: float = 0.0,
    states: torch.Tensor | None = None,
    step: int = 0,
    seed: int = 0,
    split: bool = True,
) -> UpdateField:
    """The change one optimiser step of ``rule`` makes to ``log pi(a|s)`` of ``policy``, measured, predicted to
    first order and split by source cell (see the module doc). ``policy`` is left untouched.

    Args:
        rule, policy, world, data, lr, optimizer, weight_decay, step, seed: the step, as :func:`take_step` takes it.
        states: ``(N, T)`` input ids whose last step is probed (default: every input id, ``(n_ids, 1)``; for a
            policy with memory that is each cell as an episode's first step).
        split: also split the prediction by source cell (needs a one-hot encoding table, as every Frozen Lake
            policy has).
    """
    if split and not _one_hot_table(policy):
        raise ValueError(f"split=True names each loss term by its input id, which needs a one-hot encoding table; "
                         f"{type(policy).__name__} has a learned one: pass split=False")  # fmt: skip
    with torch.no_grad():
        n_ids = policy.embedding_table().shape[-2]
    states = torch.arange(n_ids)[:, None] if states is None else torch.as_tensor(states, dtype=torch.long)
    if states.dim() != 2 or states.numel() == 0 or states.min() < 0 or states.max() >= n_ids:
        raise ValueError(f"states must be (N, T) input ids in [0, {n_ids}), got shape {tuple(states.shape)}")
    states = states.to(policy.device)

    def sources(copied: Policy, loss: torch.Tensor, outputs: list) -> dict[int, dict[int, torch.Tensor]]:
        names = {id(p): name for name, p in copied.named_parameters()}
        return _source_gradients(loss, outputs, list(copied.parameters()), names) if split else {}

    taken = take_step(rule, policy, world, data, lr=lr, optimizer=optimizer, weight_decay=weight_decay, step=step,
                      seed=seed, inspect=sources)  # fmt: skip
    terms: dict[int, dict[int, torch.Tensor]] = taken.inspected
    directions = [taken.delta]
    for gradients in terms.values():
        directions.append({taken.names[pid]: -taken.scale[pid] * g for pid, g in gradients.items()
                           if pid in taken.scale})  # fmt: skip
    base, predicted, *parts = directional(policy, states, directions)
    with torch.no_grad():
        after = _Readout(taken.policy, states)()
    K, N, A = base.shape
    contributions = torch.stack(parts, 1) if parts else base.new_zeros(K, 0, N, A)
    return UpdateField(
        rule=taken.rule, optimizer=taken.optimizer, lr=taken.lr, seeds=tuple(policy.seeds),
        states=states.cpu().numpy(), logps=as_numpy(base), measured=as_numpy(after - base),
        predicted=as_numpy(predicted),
        sources=np.array(sorted(terms), dtype=int), contributions=as_numpy(contributions),
        rest=as_numpy(predicted) - as_numpy(contributions).sum(1), markov=policy.markov,
    )  # fmt: skip


@dataclass
class TakenStep:
    """One optimiser step of a rule, taken by :func:`take_step` on copies of the policy, the rule and the optimiser.

    Attributes:
        policy: the policy's copy after the step.
        rule, optimizer, lr: the rule's name, the optimiser's class name and its first group's learning rate.
        delta: each of the policy's weights' change, by name.
        scale: the step's :func:`gradient_scale`, by ``id`` of the copy's weights; ``names``: their names by ``id``.
        inspected: what ``take_step``'s ``inspect`` returned (``None`` without one).
    """

    policy: Policy
    rule: str
    optimizer: str
    lr: float
    delta: dict[str, torch.Tensor]
    scale: dict[int, torch.Tensor]
    names: dict[int, str]
    inspected: Any = None


@contextmanager
def forward_outputs(policy: Policy) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Inside the block, every forward pass of ``policy`` that records a graph appends its ``(logits, input
    encodings)`` to the list yielded."""
    outputs: list[tuple[torch.Tensor, torch.Tensor]] = []

    def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        if output.requires_grad:
            outputs.append((output, args[0]))

    hook = policy.register_forward_hook(record)
    try:
        yield outputs
    finally:
        hook.remove()


def take_step(
    rule: str | Rule,
    policy: Policy,
    world: World,
    data: TrainingData | StepBatch | PairBatch | None = None,
    *,
    lr: float | None = None,
    optimizer: str | torch.optim.Optimizer = "adam",
    weight_decay: float = 0.0,
    step: int = 0,
    seed: int = 0,
    watch: Callable[[Policy], AbstractContextManager[Any]] = forward_outputs,
    inspect: Callable[[Policy, torch.Tensor, Any], Any] | None = None,
) -> TakenStep:
    """One optimiser step of ``rule`` on copies of ``policy``, the rule and the optimiser (``policy`` is left
    untouched): what an update field is read from.

    Args:
        rule: a rule name or variant (``"ift(lam=0)"``), or a :class:`Rule`; a rule not yet set up is set up on a copy
            of the policy as :func:`iftgym.train` sets up its first stage (DPO's reference is then the policy
            itself); a set-up rule (a training run's, its reference kept) is copied as it is.
        policy: K seeds of a policy; a float64 policy gives float64-accurate fields.
        world: the world the rule trains in.
        data: demonstrations and/or pairs (``None``: ``world.training_data()``); the rule takes its kind, all of it.
        lr: the learning rate (default 0.01, or the given optimiser's own).
        optimizer: ``"adam"``, ``"adamw"`` or ``"sgd"`` (a fresh optimiser, as at the start of a stage), or a
            torch optimiser over ``policy``'s weights (and the rule's), whose state is copied: a step in the middle
            of training.
        weight_decay: for a fresh optimiser.
        step: the stage's optimiser step the rule believes it is at (IFT's lambda schedule).
        seed: the run seed the rule's generators are drawn from (as :func:`iftgym.train` does for stage 1).
        watch: a context manager around the rule's ``collect`` and ``loss`` on the copy (default
            :func:`forward_outputs`); ``inspect(copy, loss, watched)`` reads the ``(K,)`` loss and what ``watch``
            yielded before the backward pass (its result is :attr:`TakenStep.inspected`).
    """
    if lr is not None:
        positive("lr", lr)
    non_negative("weight_decay", weight_decay)
    rule = make_rule(rule) if isinstance(rule, str) else rule
    if not isinstance(rule, Rule):
        raise TypeError(f"rule={rule!r} is {type(rule).__name__}: expected a rule name or an iftgym Rule")
    given = optimizer if isinstance(optimizer, torch.optim.Optimizer) else None
    if given is None:
        one_of("optimizer", optimizer, OPTIMIZERS)

    copied, rule, given = copy.deepcopy((policy, rule, given))
    if not hasattr(rule, "generators"):  # not yet set up: as train() sets up its first stage
        rule.setup(copied, world, seed_generators(seed, copied.seeds, 0))
    if rule.data == "env":
        batch = None
    else:
        data = world.training_data() if data is None else data
        if not isinstance(data, TrainingData):
            data = TrainingData(pairs=data) if isinstance(data, PairBatch) else TrainingData(demos=data)
        batch = data.for_kind(rule.data, rule.name).to(copied.device)
    batch = rule.prepare(copied, batch)
    weights = [*copied.parameters(), *rule.parameters()]
    if given is None:
        given = OPTIMIZERS[optimizer](weights, lr=1e-2 if lr is None else lr, weight_decay=weight_decay)
    elif lr is not None:
        for group in given.param_groups:
            group["lr"] = lr

    with watch(copied) as watched:
        rule.collect(copied, step)
        loss, _ = rule.loss(copied, batch, step)
    if not (isinstance(loss, torch.Tensor) and loss.shape == (copied.n_seeds,) and loss.requires_grad):
        raise ValueError(f"rule {rule.name!r} gave no (K,) loss with a gradient")
    inspected = None if inspect is None else inspect(copied, loss, watched)
    given.zero_grad(set_to_none=True)
    fresh = {id(p) for p in weights if not given.state.get(p)}
    before = {name: p.detach().clone() for name, p in copied.named_parameters()}
    loss.sum().backward()
    given.step()
    rule.after_step(copied)
    delta = {name: p.detach() - before[name] for name, p in copied.named_parameters()}
    return TakenStep(copied, rule.name, type(given).__name__, float(given.param_groups[0]["lr"]), delta,
                     gradient_scale(given, fresh), {id(p): name for name, p in copied.named_parameters()},
                     inspected)  # fmt: skip


def as_numpy(tensor: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 numpy array (the fields' arrays)."""
    return tensor.detach().to(torch.float64).cpu().numpy()


def _source_gradients(
    loss: torch.Tensor,
    outputs: list[tuple[torch.Tensor, torch.Tensor]],
    params: list[nn.Parameter],
    names: dict[int, str],
) -> dict[int, dict[int, torch.Tensor]]:
    """``{source id: {id(param): g_c}}``: the gradient split by the input id of the position it enters through
    (each forward's logits; a position's id is the one with the largest weight in its one-hot encoding mix)."""
    if not outputs:
        return {}
    logits = [out for out, _ in outputs]
    cotangents = torch.autograd.grad(loss.sum(), logits, retain_graph=True, allow_unused=True)
    labelled = [(out, cot, inputs.argmax(-1)) for (out, inputs), cot in zip(outputs, cotangents) if cot is not None]
    sources = sorted({int(c) for _, cot, label in labelled
                      for c in label.expand(cot.shape[:-1])[cot.abs().amax(-1) > 0].unique().tolist()})  # fmt: skip
    gradients: dict[int, dict[int, torch.Tensor]] = {}
    for source in sources:
        weights = [cot * (label == source).unsqueeze(-1).to(cot.dtype) for _, cot, label in labelled]
        part = sum(_scalar(out, weight) for (out, _, _), weight in zip(labelled, weights))  # see _double_backward
        grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
        gradients[source] = {id(p): g for p, g in zip(params, grads) if g is not None and id(p) in names}
    return gradients


# -- numbers -----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MSEChange:
    """The first-order change one step makes to the MSE to the optimal policy on the untrained cells (``mse_rest``:
    the non-terminal cells no demonstration acts in), split by the source cells of an :class:`UpdateField`.

    Attributes:
        sources: ``(C,)`` the field's source cells; ``demonstrated``: ``(C,)`` which of them a demonstration acts in.
        change: ``(K,)`` the whole first-order change; ``by_source``: ``(K, C)`` each source's part; ``rest``:
            ``(K,)`` the part from anything but the step's gradient (``by_source.sum(1) + rest == change``).
        measured: ``(K,)`` the change the measured step made (first and higher orders).
        own, carried: ``(K,)`` the part of the gradient's change that comes from each untrained cell's own loss terms
            (a source that is itself an untrained cell: DPO's rejected route, PPO's sampled episodes) and the part
            carried from other cells' (``own + carried + rest == change``).
    """

    sources: np.ndarray
    demonstrated: np.ndarray
    change: np.ndarray
    by_source: np.ndarray
    rest: np.ndarray
    measured: np.ndarray
    own: np.ndarray
    carried: np.ndarray

    @property
    def shares(self) -> np.ndarray:
        """``(C,)``: each source's share of the change summed over seeds (NaN when the change is 0, as on the
        tabular policy under SFT)."""
        total = self.change.sum()
        return self.by_source.sum(0) / total if total != 0 else np.full(len(self.sources), np.nan)

    def share_of(self, part: np.ndarray) -> float | None:
        """A ``(K,)`` part's share of the change summed over seeds (``None`` when the change is 0)."""
        total = self.change.sum()
        return _finite(part.sum() / total) if total != 0 else None

    def as_json(self) -> dict:
        """JSON-ready: the means over seeds, each source's share and mean change by cell (where parts of opposite
        signs nearly cancel, shares are large: read them with the changes), the shares of the rest (momentum), of
        the untrained cells' own terms and of what is carried from other cells (the sources' shares and the rest's
        sum to 1, and so do own, carried and rest), and the per-seed changes."""
        return {
            "mse_rest_change": float(self.change.mean()),
            "mse_rest_change_measured": float(self.measured.mean()),
            "shares": {str(int(c)): _finite(s) for c, s in zip(self.sources, self.shares)},
            "by_source": {str(int(c)): float(v) for c, v in zip(self.sources, self.by_source.mean(0))},
            "demonstrated": [int(c) for c in self.sources[self.demonstrated]],
            "rest": float(self.rest.mean()),
            "rest_share": self.share_of(self.rest),
            "own": float(self.own.mean()),
            "own_share": self.share_of(self.own),
            "carried": float(self.carried.mean()),
            "carried_share": self.share_of(self.carried),
            "per_seed": {"change": self.change.tolist(), "by_source": self.by_source.tolist()},
        }


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def check_cell_field(field: UpdateField, model: FrozenLakeMDP) -> None:
    """Refuse a field that is not over every cell of ``model`` for a Markov policy."""
    if not field.markov:
        raise ValueError("the field's policy has memory: it has no policy matrix, so no MSE to the optimal one")
    if not np.array_equal(field.states, np.arange(model.n_states)[:, None]):
        raise ValueError(f"the field probes {len(field.states)} states: expected every cell of the map, in order "
                         "(the default states)")  # fmt: skip


def mse_change_shares(
    field: UpdateField, model: FrozenLakeMDP, demos: StepBatch | TrainingData | None = None
) -> MSEChange:
    """The first-order change of ``mse_rest`` (:func:`iftgym.metrics.decompose.decomposed_scores`) along the field,
    and each source cell's part (``demos``: what defines the demonstrated cells; default the model's own).

    A change ``d log pi`` moves the policy by ``d pi = pi * d log pi`` to first order; the error of a cell
    (:func:`~iftgym.metrics.decompose.cell_errors`) is quadratic in ``pi``, so its change along ``d pi`` is exactly
    the central difference ``(e(pi + t d pi) - e(pi - t d pi)) / 2t`` for any ``t`` (taken so that the perturbation is
    of order 1), linear in ``d pi``: the parts sum to the whole.
    """
    check_cell_field(field, model)
    demos = model.training_data().demos if demos is None else demos
    demos = demos.demos if isinstance(demos, TrainingData) else demos
    demonstrated = demonstrated_cells(model, demos)
    untrained = ~model.terminal & ~demonstrated
    if not untrained.any():
        raise ValueError("the demonstrations act in every non-terminal cell: no cell is untrained")
    probs = np.exp(field.logps)

    def mse_rest(policies: np.ndarray) -> np.ndarray:
        return cell_errors(model, policies)[..., untrained].mean(-1)

    def first_order(change: np.ndarray) -> np.ndarray:
        step = probs * change
        size = float(np.abs(step).max()) or 1.0  # exact for any size: differences of order 1 lose no digits
        return (mse_rest(probs + step / size) - mse_rest(probs - step / size)) * size / 2

    by_source = np.zeros((len(probs), len(field.sources)))  # no source: a step without gradient (PPO, no reward yet)
    for i in range(len(field.sources)):
        by_source[:, i] = first_order(field.contributions[:, i])
    measured = mse_rest(np.exp(field.logps + field.measured)) - mse_rest(probs)
    return MSEChange(
        sources=field.sources, demonstrated=demonstrated[field.sources], change=first_order(field.predicted),
        by_source=by_source, rest=first_order(field.rest), measured=measured, own=first_order(field.own()),
        carried=first_order(field.carried()),
    )  # fmt: skip


def alignment(
    first: UpdateField, second: UpdateField, cells: np.ndarray | None = None, which: str = "predicted"
) -> np.ndarray:
    """``(K,)``: per seed, the cosine between two fields' changes of ``log pi`` over every action of the ``cells``
    (a boolean mask over the probed states; default all of them). NaN for a seed whose change is zero there."""
    if first.seeds != second.seeds or not np.array_equal(first.states, second.states):
        raise ValueError(f"fields of rules {first.rule!r} and {second.rule!r} are not over the same seeds and states")
    return cosine(first.values(which), second.values(which), cells)


def cosine(first: np.ndarray, second: np.ndarray, cells: np.ndarray | None = None) -> np.ndarray:
    """``(K,)``: per seed, the cosine between two ``(K, N, A)`` changes over every action of the ``cells`` (a boolean
    mask over N; default all); NaN for a seed whose change is zero there (:func:`alignment` of two fields)."""
    if first.shape != second.shape:
        raise ValueError(f"changes of shapes {first.shape} and {second.shape} cannot be compared: expected one shape")
    cells = np.ones(first.shape[1], bool) if cells is None else np.asarray(cells, bool)
    a = first[:, cells].reshape(len(first), -1)
    b = second[:, cells].reshape(len(first), -1)
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (a * b).sum(-1) / norms, np.nan)


def update_numbers(
    fields: Mapping[str, UpdateField], model: FrozenLakeMDP, demos: StepBatch | TrainingData | None = None
) -> dict:
    """JSON-ready numbers of several rules' fields on one map (``results.json``): per rule the :class:`MSEChange`
    (:meth:`MSEChange.as_json`), and per pair of rules the mean over seeds of the cosine :func:`alignment` of their
    predicted fields over the non-terminal cells (``all``) and the untrained ones (``untrained``)."""
    demos = model.training_data().demos if demos is None else demos
    demos = demos.demos if isinstance(demos, TrainingData) else demos
    for first, second in itertools.combinations(fields.values(), 2):
        alignment(first, second)  # the same seeds and states
    pairs = pair_alignment({rule: field.predicted for rule, field in fields.items()}, model, demos)
    return {"mse": {rule: mse_change_shares(field, model, demos).as_json() for rule, field in fields.items()},
            "alignment": pairs}  # fmt: skip


def pair_alignment(changes: Mapping[str, np.ndarray], model: FrozenLakeMDP, demos: StepBatch | TrainingData) -> dict:
    """Per pair of ``(K, S, A)`` changes by label (``"a | b"``, in the order given), the mean over seeds of their
    :func:`cosine` over the non-terminal cells (``all``) and over the untrained ones (``untrained``); ``None`` where
    no seed has both changes non-zero there."""
    demos = demos.demos if isinstance(demos, TrainingData) else demos
    alive = ~model.terminal
    untrained = alive & ~demonstrated_cells(model, demos)
    pairs = {}
    with warnings.catch_warnings():  # every seed NaN: None
        warnings.simplefilter("ignore", RuntimeWarning)
        for (a, first), (b, second) in itertools.combinations(changes.items(), 2):
            pairs[f"{a} | {b}"] = {name: _finite(np.nanmean(cosine(first, second, cells)))
                                   for name, cells in (("all", alive), ("untrained", untrained))}  # fmt: skip
    return pairs


# -- over training: the snapshot hook ------------------------------------------------------------------------------
def training_points(steps: int) -> tuple[int, ...]:
    """The training points of a run of ``steps`` optimiser steps where ``iftgym compare --update-maps`` takes the
    update field: its start, middle and end (steps ``0``, ``steps // 2`` and ``steps``; distinct, ascending)."""
    return tuple(sorted({0, steps // 2, steps}))


def unsupported_policy(policy: Policy) -> str | None:
    """Why ``policy``'s update map over the cells cannot be taken (``None``: it can): a policy with memory has no
    change per cell, and the split by source cell needs a one-hot encoding table."""
    if not policy.markov:
        return (f"{type(policy).__name__} has memory: its change is not one per cell (update maps need a Markov "
                "policy: tabular or mlp)")  # fmt: skip
    if not _one_hot_table(policy):
        return f"{type(policy).__name__} learns its encoding table: its loss terms cannot be named by cell"
    return None


class PointRecorder:
    """A :func:`iftgym.train` snapshot hook (:class:`iftgym.loop.Snapshot`) that takes something of the step the loop
    is about to take at each of ``points`` (optimiser steps taken so far): a subclass's :meth:`record` appends it to
    :attr:`points` (once per step count), timed in :attr:`seconds`; a ``ValueError`` or ``NotImplementedError`` it
    raises, or a reason it sets in :attr:`skipped`, stops the recording. :meth:`result` is what ``iftgym compare``
    keeps per algorithm (``AlgorithmResult.update``): ``{"points": [...], "seconds": ...}``, or ``{"skipped": reason,
    "seconds": ...}`` (the time spent before the recording stopped, which the algorithm's wall time leaves out too)."""

    def __init__(self, points: Sequence[int]) -> None:
        self.wanted = set(points)
        self.points: list[dict] = []
        self.seconds = 0.0
        self.skipped: str | None = None

    def __call__(self, snapshot) -> None:
        done = {point["step"] for point in self.points}
        if snapshot.step not in self.wanted or snapshot.step in done or self.skipped is not None:
            return
        start = time.perf_counter()
        try:
            self.record(snapshot)
        except (ValueError, NotImplementedError) as err:
            self.skipped = f"rule {snapshot.rule.name!r} gives no update field: {str(err)[:200]}"
        finally:
            self.seconds += time.perf_counter() - start

    def record(self, snapshot) -> None:
        """Take the snapshot's step and append its JSON-ready point (with its ``"step"``) to :attr:`points`."""
        raise NotImplementedError(f"{type(self).__name__} does not define record()")

    def result(self) -> dict:
        """What ``iftgym compare`` keeps (see the class doc)."""
        if self.skipped is not None:
            return {"skipped": self.skipped, "seconds": self.seconds}
        return {"points": self.points, "seconds": self.seconds}


class UpdateRecorder(PointRecorder):
    """A :class:`PointRecorder` that takes, at each of ``points``, the :func:`update_field` of the step the loop is
    about to take — the live optimiser's state (Adam's moments) and the set-up rule of the stage active there (for a
    recipe at a stage boundary: the stage that starts), on the whole ``data`` — and keeps its numbers
    (:meth:`point`) and the field itself (:attr:`fields`: the explorer's update view reads them whole;
    :attr:`changes` are their per-seed predicted changes, for the cosines between rules). At the run's
    last step count it takes the step a further step of the last stage would make. Training is unchanged: the field
    is taken on copies. It is skipped where the policy or the rule cannot give a field.
    """

    def __init__(self, model: FrozenLakeMDP, data: TrainingData, points: Sequence[int], seed: int = 0) -> None:
        super().__init__(points)
        self.model, self.data, self.seed = model, data, seed
        self.fields: dict[int, UpdateField] = {}

    @property
    def changes(self) -> dict[int, np.ndarray]:
        """``{step: (K, N, A)}``: each recorded field's per-seed predicted change."""
        return {step: field.predicted for step, field in self.fields.items()}

    def record(self, snapshot) -> None:
        """The snapshot's :func:`update_field`, kept as :meth:`point` and in :attr:`fields`."""
        self.skipped = unsupported_policy(snapshot.policy)
        if self.skipped is None:
            field = update_field(snapshot.rule, snapshot.policy, self.model, self.data, seed=self.seed,
                                 optimizer=snapshot.optimizer, step=snapshot.stage_step)  # fmt: skip
            self.points.append(self.point(field, snapshot.step, snapshot.stage, snapshot.stage_step))
            self.fields[snapshot.step] = field

    def point(self, field: UpdateField, step: int, stage: int, stage_step: int) -> dict:
        """JSON-ready: where the field was taken (``step``; ``stage`` from 1 and its ``stage_step``), the rule, the
        optimiser and learning rate, the :class:`MSEChange` of the untrained cells (:meth:`MSEChange.as_json`), the
        own share of the mean field's change over the non-terminal cells (:meth:`FieldSummary.own_fraction`: what
        its picture's title says) and the mean field itself (:meth:`FieldSummary.as_json`)."""
        summary = field.summary()
        return {"step": step, "stage": stage + 1, "stage_step": stage_step, "rule": field.rule,
                "optimizer": field.optimizer, "lr": field.lr,
                "mse": mse_change_shares(field, self.model, self.data.demos).as_json(),
                "own_fraction": summary.own_fraction(~self.model.terminal), "field": summary.as_json()}  # fmt: skip


# -- pictures ----------------------------------------------------------------------------------------------------
