"""Update strips: what one optimiser step of a rule does to ``log pi(token | prefix)`` at every answer position of
a token sequence, and the weight the rule's loss put on each position's target token.

For a rule, a token-world policy (K seeds), the rule's data and a few shown examples (prompts with their target
answers), :func:`token_update` takes one optimiser step on copies (:func:`iftgym.metrics.update.take_step`, as the
grid's update field does) and reads, at every answer position of the shown sequences (teacher-forced: the prompt
and the target answer so far), over the whole vocabulary:

* **measured**: ``log pi'(v | prefix) - log pi(v | prefix)`` after the step;
* **predicted**: its first-order prediction ``J . delta`` along the weight change the optimiser actually made
  (:func:`iftgym.metrics.update.directional`);
* **weights**: the per-position loss weight, ``w_t = -dL / d log pi(a*_t | s*_t)``: the coefficient of the target's
  log-probability in the rule's gradient at the shown prefix ``s*_t``, summed over every time the step's batch
  reads that prefix and trains that target. It is found by autograd for any rule, a plugin's included: the loss's
  gradient reaches each position's logits ``z`` as ``dL/dz = c (e_a - p)`` when the loss reads that position only
  through the log-probability of its token ``a`` (every per-token loss does), so ``c = (dL/dz)_a / (1 - p_a)``, and
  ``w_t = -sum c`` over the batch's rows that share the prefix and take the target there. It is ``1 / (B n)`` for
  SFT (each of ``B`` sequences' mean over its ``n`` tokens), ``sg(p_t) / (B n)`` for DFT, IFT's propagation weight
  over ``B n`` (plus what flows through the weights, which IFT does not detach), and for GRPO the advantage over the
  batch's token count of every sampled answer that took the target there (0 where none did). A term of the loss
  that reads every token's probability (a full-vocabulary KL) has no single coefficient: this one reads it as if
  the target alone were trained.

:class:`TokenStrip` is one shown sequence reduced to its picture (the mean over seeds, the top reinforced and
suppressed tokens of each position), small enough for ``results.json``; :mod:`iftgym.explain.update_tokens`
draws it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from iftgym.metrics.update import FIELDS, PointRecorder, as_numpy, directional, forward_outputs, take_step
from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.types import TrainingData
from iftgym.validate import at_least, one_of
from iftgym.worlds.tokens.tasks import Example
from iftgym.worlds.tokens.tokenizer import prompt_text
from iftgym.worlds.tokens.world import TokenWorld

END = -1  # the "next input" after a sequence's last position: it ended there
TOP = 3  # tokens shown per position and direction


@dataclass(frozen=True)
class TokenUpdate:
    """One optimiser step's change of ``log pi(v | prefix)`` at every answer position of the shown sequences, seed
    by seed, and the loss weight of each position (see the module doc). Arrays are float64; a *read* is one answer
    position of one shown sequence, in order.

    Attributes:
        rule, optimizer, lr: what took the step (``optimizer`` the class name, ``lr`` its first group's rate).
        seeds: the policy's seeds (axis 0 of every array).
        prompts, answers: the shown examples' prompts (as text) and target answers.
        sequence, position: ``(P,)`` each read's shown sequence and its answer position there (from 0).
        targets: ``(P,)`` the target token id at each read.
        logps: ``(K, P, V)`` ``log pi(v | prefix)`` before the step.
        measured: ``(K, P, V)`` the change the step made, measured on a copy.
        predicted: ``(K, P, V)`` its first-order prediction ``J . delta``.
        weights: ``(K, P)`` the loss weight ``-dL / d log pi(target | prefix)`` at each read.
    """

    rule: str
    optimizer: str
    lr: float
    seeds: tuple[int, ...]
    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    sequence: np.ndarray
    position: np.ndarray
    targets: np.ndarray
    logps: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    weights: np.ndarray

    def values(self, which: str = "predicted") -> np.ndarray:
        """``(K, P, V)``: the ``"predicted"`` or the ``"measured"`` change."""
        one_of("which", which, FIELDS)
        return self.predicted if which == "predicted" else self.measured

    def target_values(self, which: str = "predicted") -> np.ndarray:
        """``(K, P)``: the change of each read's target token."""
        return np.take_along_axis(self.values(which), self.targets[None, :, None], -1)[..., 0]

    def agreement(self) -> dict[str, float | None]:
        """How well the prediction matches the measured step, over every seed, read and token: ``slope``, the
        least-squares ratio measured / predicted; ``cosine``; ``relative_error``, the largest difference over the
        largest predicted change (``None`` where the prediction is zero)."""
        measured, predicted = self.measured.ravel(), self.predicted.ravel()
        size = float(predicted @ predicted)
        if size == 0:
            return {"slope": None, "cosine": None, "relative_error": None}
        norms = float(np.linalg.norm(measured)) * size**0.5
        return {"slope": float(measured @ predicted) / size,
                "cosine": float(measured @ predicted) / norms if norms > 0 else None,
                "relative_error": float(np.abs(measured - predicted).max() / np.abs(predicted).max())}  # fmt: skip

    def strips(self, name: Callable[[int], str], top: int = TOP, which: str = "predicted") -> list[TokenStrip]:
        """One :class:`TokenStrip` per shown sequence (means over seeds), each position's ``top`` most reinforced
        and most suppressed tokens chosen on the ``which`` change; ``name`` gives a token id's text (a world's
        ``action_name``)."""
        at_least("top", top, 1)
        change = self.values(which).mean(0)
        target_change = {key: self.target_values(key).mean(0) for key in FIELDS}
        weights, probability = self.weights.mean(0), np.exp(self.logps).mean(0)
        strips = []
        for b, (prompt, answer) in enumerate(zip(self.prompts, self.answers)):
            reads = np.flatnonzero(self.sequence == b)
            order = np.argsort(-change[reads], axis=-1, kind="stable")
            reinforced = [[(name(int(v)), float(row[v])) for v in ranked[:top] if row[v] > 0]
                          for row, ranked in zip(change[reads], order)]  # fmt: skip
            suppressed = [[(name(int(v)), float(row[v])) for v in ranked[::-1][:top] if row[v] < 0]
                          for row, ranked in zip(change[reads], order)]  # fmt: skip
            strips.append(TokenStrip(
                rule=self.rule, prompt=prompt, answer=answer,
                tokens=tuple(name(int(v)) for v in self.targets[reads]),
                weights=weights[reads], weights_per_seed=self.weights[:, reads],
                probability=probability[reads, self.targets[reads]],
                predicted=target_change["predicted"][reads], measured=target_change["measured"][reads],
                reinforced=_pairs(reinforced), suppressed=_pairs(suppressed),
            ))  # fmt: skip
        return strips


def _pairs(rows: list[list[tuple[str, float]]]) -> tuple[tuple[tuple[str, float], ...], ...]:
    return tuple(tuple(row) for row in rows)


@dataclass(frozen=True)
class TokenStrip:
    """One shown sequence of a :class:`TokenUpdate`, reduced to what its strip draws (means over seeds): small
    enough for ``results.json`` (``iftgym compare --update-maps`` keeps one per rule, training point and shown
    prompt; ``iftgym plot`` draws them).

    Attributes:
        rule, prompt, answer: whose step, on which example.
        tokens: ``(n,)`` the target token at each answer position (its text).
        weights: ``(n,)`` the mean loss weight ``-dL / d log pi(target | prefix)``; ``weights_per_seed``: ``(K, n)``.
        probability: ``(n,)`` the mean probability of the target before the step.
        predicted, measured: ``(n,)`` the mean predicted and measured change of the target's ``log pi``.
        reinforced, suppressed: per position, the tokens whose ``log pi`` the step raises (lowers) most, as
            ``(text, change)`` pairs, largest first (only tokens that move that way).
    """

    rule: str
    prompt: str
    answer: str
    tokens: tuple[str, ...]
    weights: np.ndarray
    weights_per_seed: np.ndarray
    probability: np.ndarray
    predicted: np.ndarray
    measured: np.ndarray
    reinforced: tuple[tuple[tuple[str, float], ...], ...]
    suppressed: tuple[tuple[tuple[str, float], ...], ...]

    def as_json(self) -> dict:
        """JSON-ready: every attribute but ``rule`` (the caller's to keep), arrays as lists."""
        return {"prompt": self.prompt, "answer": self.answer, "tokens": list(self.tokens),
                "weights": self.weights.tolist(), "weights_per_seed": self.weights_per_seed.tolist(),
                "probability": self.probability.tolist(), "predicted": self.predicted.tolist(),
                "measured": self.measured.tolist(),
                "reinforced": [[list(pair) for pair in row] for row in self.reinforced],
                "suppressed": [[list(pair) for pair in row] for row in self.suppressed]}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping, rule: str) -> TokenStrip:
        """Read :meth:`as_json`'s form back."""
        arrays = {key: np.asarray(data[key], dtype=float)
                  for key in ("weights", "weights_per_seed", "probability", "predicted", "measured")}  # fmt: skip
        moved = {key: tuple(tuple((str(text), float(change)) for text, change in row) for row in data[key])
                 for key in ("reinforced", "suppressed")}  # fmt: skip
        return cls(rule, str(data["prompt"]), str(data["answer"]), tuple(map(str, data["tokens"])), **arrays,
                   **moved)  # fmt: skip


# -- the weights -------------------------------------------------------------------------------------------------
@contextmanager
def _forwards_and_ids(policy: Policy) -> Iterator[tuple[list, list[tuple[int, torch.Tensor]]]]:
    """Inside the block: every forward pass with a graph (:func:`iftgym.metrics.update.forward_outputs`) and every
    ``embed`` call's token ids, each with the number of such forward passes before it (a forward reads the ids
    embedded last before it: a sequence policy's ``logits_at``, IFT's ground truth under its mixed inputs)."""
    embedded: list[tuple[int, torch.Tensor]] = []
    method = policy.embed
    with forward_outputs(policy) as outputs:

        def embed(ids: torch.Tensor, table: torch.Tensor | None = None) -> torch.Tensor:
            embedded.append((len(outputs), ids))
            return method(ids, table)

        policy.embed = embed  # the instance's own attribute, removed on leaving
        try:
            yield outputs, embedded
        finally:
            del policy.embed


def _next_ids(ids: torch.Tensor, pad: int) -> torch.Tensor:
    """``(..., T)``: the input after each position, :data:`END` after the last one and where padding follows."""
    following = torch.cat([ids[..., 1:], torch.full_like(ids[..., :1], END)], -1)
    return following.masked_fill(following == pad, END)


def _probe_weights(
    shown: torch.Tensor, targets: torch.Tensor, pad: int
) -> Callable[[Policy, torch.Tensor, tuple[list, list]], torch.Tensor]:
    """The ``inspect`` of :func:`iftgym.metrics.update.take_step` that gives the ``(K, Q, T)`` loss weights at the
    shown sequences ``shown`` ``(Q, T)`` (their targets ``(Q, T)``; see the module doc), from the logits and the ids
    of every forward pass the loss read."""

    def inspect(policy: Policy, loss: torch.Tensor, watched: tuple[list, list]) -> torch.Tensor:
        outputs, embedded = watched
        weights = torch.zeros(policy.n_seeds, *shown.shape, dtype=torch.float64, device=shown.device)
        if not outputs:
            return weights
        grads = torch.autograd.grad(loss.sum(), [out for out, _ in outputs], retain_graph=True, allow_unused=True)
        shown_next = _next_ids(shown, pad)
        for i, ((logits, _), grad) in enumerate(zip(outputs, grads)):
            ids = next((ids for before, ids in reversed(embedded) if before <= i), None)
            if grad is None or ids is None or ids.shape[-2:] != logits.shape[-3:-1]:
                continue  # a forward the loss does not read, or not of embedded ids
            ids = ids.expand(logits.shape[:-1]).to(shown.device)
            grad = grad.to(torch.float64)
            probs = torch.softmax(logits.detach().to(torch.float64), -1)
            T = min(ids.shape[-1], shown.shape[-1])
            # rows (k, b) that read shown sequence q's prefix up to position t: (K, B, Q, T)
            same = (ids[:, :, None, :T] == shown[None, None, :, :T]).cumprod(-1).bool()
            trains = same & (_next_ids(ids, pad)[:, :, None, :T] == shown_next[None, None, :, :T])
            k, b, q, t = trains.nonzero(as_tuple=True)
            # c from the other tokens' entries, -c p_v each, summed: the target's own, c (1 - p_a), is computed in
            # the policy's precision and is mostly rounding once p_a is 1 to float32's precision (a confident
            # position), and 1 - p_a is 0 in float64 too beyond a margin of about 37
            others = torch.ones(len(k), probs.shape[-1], dtype=torch.bool, device=probs.device)
            others.scatter_(-1, targets[q, t][:, None], False)
            mass = (probs[k, b, t] * others).sum(-1).clamp(min=torch.finfo(torch.float64).tiny)
            coefficient = -(grad[k, b, t] * others).sum(-1) / mass
            weights.index_put_((k, q, t), -coefficient, accumulate=True)
        return weights

    return inspect


# -- the update ----------------------------------------------------------------------------------------------------
def token_update(
    rule: str | Rule,
    policy: Policy,
    world: TokenWorld,
    examples: Sequence[Example] | None = None,
    data: TrainingData | None = None,
    *,
    lr: float | None = None,
    optimizer: str | torch.optim.Optimizer = "adam",
    weight_decay: float = 0.0,
    step: int = 0,
    seed: int = 0,
) -> TokenUpdate:
    """The change one optimiser step of ``rule`` makes to ``log pi(v | prefix)`` at every answer position of the
    ``examples`` (default: the task's first training example), measured and predicted to first order, and the loss
    weight of each position (see the module doc). ``policy`` is left untouched.

    Args:
        rule, policy, lr, optimizer, weight_decay, step, seed: the step, as
            :func:`iftgym.metrics.update.take_step` takes it (``policy``: K seeds of a token-world policy).
        world: the token world the rule trains in.
        examples: the shown prompts with their target answers (teacher-forced).
        data: what the step trains on (``None``: ``world.training_data()``, all of it); a shown example's weights
            are non-zero where the step's batch trains its target at its prefix.
    """
    if not isinstance(world, TokenWorld):
        raise ValueError(f"world is {type(world).__name__}: update strips need a token world (its answer positions)")
    examples = list(world.task.train[:1] if examples is None else examples)
    if not examples:
        raise ValueError("no examples to show: expected at least one (prompt, target answer)")
    shown = world.step_batch([(ex.prompt, ex.completion) for ex in examples]).to(policy.device)
    reads = shown.mask.nonzero()  # (P, 2): (sequence, step) of every answer position, in order
    targets = shown.actions.masked_fill(~shown.mask, 0)
    taken = take_step(rule, policy, world, data, lr=lr, optimizer=optimizer, weight_decay=weight_decay, step=step,
                      seed=seed, watch=_forwards_and_ids,
                      inspect=_probe_weights(shown.ids, targets, world.pad))  # fmt: skip
    base, predicted = directional(policy, shown.ids, [taken.delta], reads)
    (after,) = directional(taken.policy, shown.ids, [], reads)
    positions = reads[:, 1] - shown.mask.int().argmax(-1)[reads[:, 0]]
    return TokenUpdate(
        rule=taken.rule, optimizer=taken.optimizer, lr=taken.lr, seeds=tuple(policy.seeds),
        prompts=tuple(prompt_text(ex.prompt) for ex in examples), answers=tuple(ex.completion for ex in examples),
        sequence=as_numpy(reads[:, 0]).astype(int), position=as_numpy(positions).astype(int),
        targets=as_numpy(targets[reads[:, 0], reads[:, 1]]).astype(int), logps=as_numpy(base),
        measured=as_numpy(after - base), predicted=as_numpy(predicted),
        weights=as_numpy(taken.inspected[:, reads[:, 0], reads[:, 1]]),
    )  # fmt: skip


# -- over training: the snapshot hook ------------------------------------------------------------------------------
class TokenUpdateRecorder(PointRecorder):
    """A :class:`~iftgym.metrics.update.PointRecorder` that takes, at each of ``points``, the :func:`token_update` of
    the step the loop is about to take (the live optimiser and the set-up rule of the stage active there) on
    ``data``, shown on ``examples``, and keeps its :meth:`point`. Training is unchanged: the step is taken on
    copies."""

    def __init__(
        self, world: TokenWorld, data: TrainingData, examples: Sequence[Example], points: Sequence[int], seed: int = 0
    ) -> None:
        super().__init__(points)
        self.world, self.data, self.examples, self.seed = world, data, list(examples), seed

    def record(self, snapshot) -> None:
        """The snapshot's :func:`token_update`, kept as :meth:`point`."""
        update = token_update(snapshot.rule, snapshot.policy, self.world, self.examples, self.data, seed=self.seed,
                              optimizer=snapshot.optimizer, step=snapshot.stage_step)  # fmt: skip
        self.points.append(self.point(update, snapshot.step, snapshot.stage, snapshot.stage_step))

    def point(self, update: TokenUpdate, step: int, stage: int, stage_step: int) -> dict:
        """JSON-ready: where the step was taken (``step``; ``stage`` from 1 and its ``stage_step``), the rule, the
        optimiser and learning rate, the prediction's :meth:`TokenUpdate.agreement` with the measured step, and one
        :meth:`TokenStrip.as_json` per shown example."""
        return {"step": step, "stage": stage + 1, "stage_step": stage_step, "rule": update.rule,
                "optimizer": update.optimizer, "lr": update.lr, "agreement": update.agreement(),
                "strips": [strip.as_json() for strip in update.strips(self.world.action_name)]}  # fmt: skip
