"""Token generation as an MDP: the state is the prompt plus the answer so far, an action is the next token, and
the transition is concatenation (deterministic).

:class:`TokenWorld` implements :class:`iftgym.world.World` for a task (:mod:`iftgym.worlds.tokens.tasks`), with
any tokenizer of the contract of :mod:`iftgym.worlds.tokens.tokenizer` (the character tokenizer by default, or a
Hugging Face one with its chat template).

A token :class:`StepBatch` holds whole sequences ``prompt + answer`` (``[<bos>, prompt..., answer..., <eos>]``, or a
conversation rendered by the chat template and the assistant's answer through ``<eos>``): ``ids`` is the sequence
without its last token, ``actions`` the sequence shifted by one, and ``mask`` is True exactly where the action is
an assistant token — the answer (``<eos>`` included) and, for a demonstration in TRL's ``messages`` format, the
earlier assistant turns of its conversation — so every rule trains on assistant tokens only while a sequence model
sees the whole prompt. ``rewards`` carry the task's reward at the last answer step (or per token, see ``reward``).

Online rules (online DPO, PPO, REINFORCE) call :meth:`TokenWorld.sample`, in which each seed draws its own prompts
uniformly from the training split with its own generator. Online DPO contrasts its demonstration batch with these
samples: the rule averages the chosen log-probabilities over the batch before the contrast (as on Frozen Lake,
which has a single task), so the pairing is population-level, not prompt by prompt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from iftgym.decoding import generate, pad_prompts
from iftgym.types import PairBatch, StepBatch, TrainingData
from iftgym.validate import at_least, fits_in_memory
from iftgym.world import Actor, seed_generators
from iftgym.worlds.tokens.tasks import Example, Task
from iftgym.worlds.tokens.tokenizer import CharTokenizer, Prompt, Tokenizer, answer_tokens, prompt_tokens

REWARD_MODES = ("end", "token")
SCORES = ("greedy_test", "sampled_test", "greedy_train", "target_test", "target_train")
BATCH_BYTES_PER_STEP = 8 + 8 + 1 + 4  # ids and actions (int64), mask (bool), rewards (float32)

TokenState = tuple[tuple[int, ...], tuple[int, ...]]  # (prompt tokens, answer tokens so far)


def _trim(answer: Sequence[int], eos: int) -> tuple[int, ...]:
    """Answer tokens up to and including the first ``eos`` (all of them when there is none)."""
    answer = [int(t) for t in answer]
    return tuple(answer[: answer.index(eos) + 1] if eos in answer else answer)


class TokenWorld:
    """The MDP of a token task; implements :class:`iftgym.world.World` with states ``(prompt ids, answer ids)``.

    Args:
        task: the prompts, answers and reward.
        reward: ``"end"`` (the task's reward on the last answer step, 0 for an answer cut off by the length limit)
            or ``"token"`` (``1/n`` for each answer token that keeps the answer a prefix of the reference answer
            of n tokens, ``<eos>`` included, so the return is 1 exactly for the reference answer).
        tokenizer: any :class:`Tokenizer` (default: the character tokenizer of the task's characters).
        vocab_size: the number of input ids and actions, when the model's vocabulary is larger than the tokenizer's
            (default: the tokenizer's).
    """

    deterministic = True

    def __init__(
        self, task: Task, reward: str = "end", tokenizer: Tokenizer | None = None, vocab_size: int | None = None
    ) -> None:
        if not isinstance(task, Task):
            raise ValueError(f"task={task!r} is {type(task).__name__}: expected an iftgym Task (make one by name with "
                             "iftgym.make_task)")  # fmt: skip
        if not isinstance(reward, str) or reward not in REWARD_MODES:
            raise ValueError(f"reward={reward!r} is not supported: expected one of {', '.join(REWARD_MODES)}")
        name = getattr(task, "name", type(task).__name__)
        for split in ("train", "test"):
            if not getattr(task, split, None):
                raise ValueError(f"task {name!r} has no {split} examples: expected at least one in each split")
        if tokenizer is None:
            if not task.alphabet:  # every prompt and answer empty: a policy would only learn to write <eos>
                raise ValueError(f"task {name!r} uses no characters: expected answers of at least one character")
            tokenizer = CharTokenizer(task.alphabet)
        elif not isinstance(tokenizer, Tokenizer):
            raise ValueError(f"tokenizer={tokenizer!r} is {type(tokenizer).__name__}: expected an iftgym tokenizer "
                             "(CharTokenizer, HFTokenizer or one with the same methods)")  # fmt: skip
        self.task = task
        self.reward_mode = reward
        self.tokenizer = tokenizer
        self.eos, self.pad = tokenizer.eos_id, tokenizer.pad_id
        self.n_actions = self.n_ids = tokenizer.vocab_size if vocab_size is None else vocab_size
        at_least("vocab_size", self.n_ids, tokenizer.vocab_size, note="the tokenizer's vocabulary must fit")
        # Every prompt of the task, rendered once; the reward reads a prompt back from its ids.
        examples = (*task.train, *task.test)
        self._prompts = {ex.prompt: prompt_tokens(tokenizer, ex.prompt) for ex in examples}
        self._keys = {tuple(ids): prompt for prompt, (ids, _) in self._prompts.items()}
        self._references: dict[tuple[int, ...], tuple[int, ...]] = {}
        answers = [self.answer_ids(text, ex.prompt) for ex in examples for text in (ex.completion, ex.rejected)
                   if text is not None]  # fmt: skip
        # A task may allow answers longer than its examples (a walk on a map); its limit is in characters.
        allowed = task.max_answer_len + 1 if isinstance(tokenizer, CharTokenizer) else 0
        self.max_answer_tokens = max(*map(len, answers), allowed)
        self.max_prompt_tokens = max(len(ids) for ids, _ in self._prompts.values())
        self.block_size = self.max_prompt_tokens + self.max_answer_tokens

    # -- the MDP (what the Gymnasium environment steps) ---------------------------------------------------------
    def _rendered(self, prompt: Prompt) -> tuple[list[int], list[bool]]:
        """A prompt's ids and which are assistant tokens (:func:`prompt_tokens`), rendered once for the task's."""
        known = self._prompts.get(prompt)
        return known if known is not None else prompt_tokens(self.tokenizer, prompt)

    def prompt_ids(self, prompt: Prompt) -> tuple[int, ...]:
        """The ids of a prompt (a string, or a conversation rendered with the chat template)."""
        return tuple(self._rendered(prompt)[0])

    def prompt_of(self, ids: Sequence[int]) -> Prompt:
        """The prompt whose ids are ``ids``: the task's, or else the text after ``<bos>``."""
        ids = tuple(ids)
        if ids in self._keys:
            return self._keys[ids]
        start = 1 if ids and ids[0] == self.tokenizer.bos_id else 0
        return self.tokenizer.decode(ids[start:])

    def start_distribution(self) -> Mapping[TokenState, float]:
        """Uniform over the distinct training prompts."""
        starts = dict.fromkeys((self.prompt_ids(ex.prompt), ()) for ex in self.task.train)
        return {state: 1.0 / len(starts) for state in starts}

    def transition(self, state: TokenState, action: int) -> Mapping[TokenState, float]:
        prompt, answer = state
        return {(prompt, (*answer, int(action))): 1.0}

    def is_terminal(self, state: TokenState) -> bool:
        answer = state[1]
        return bool(answer) and (answer[-1] == self.eos or len(answer) >= self.max_answer_tokens)

    def final_reward(self, prompt: Sequence[int], answer: Sequence[int]) -> float:
        """The task's reward of a finished answer: 0 unless it ends with ``<eos>`` and is plain text (no special
        token, no id beyond the tokenizer's vocabulary)."""
        if not answer or answer[-1] != self.eos or max(answer) >= self.tokenizer.vocab_size:  # beyond: no text
            return 0.0
        text = self.tokenizer.text(answer[:-1])
        return 0.0 if text is None else self.task.reward(self.prompt_of(prompt), text)

    def reward(self, state: TokenState, action: int, next_state: TokenState) -> float:
        prompt, answer = next_state
        if self.reward_mode == "token":
            reference = self._reference_ids(prompt)
            return 1.0 / len(reference) if answer == reference[: len(answer)] else 0.0
        return self.final_reward(prompt, answer) if self.is_terminal(next_state) else 0.0

    def _reference_ids(self, prompt: tuple[int, ...]) -> tuple[int, ...]:
        """The reference answer's ids to the prompt with these ids, rendered once per prompt (the per-token reward
        reads it at every step)."""
        if prompt not in self._references:
            key = self.prompt_of(prompt)
            self._references[prompt] = self.answer_ids(self.task.reference(key), key)
        return self._references[prompt]

    def answer_rewards(self, prompt: tuple[int, ...], answer: tuple[int, ...]) -> list[float]:
        """The reward of each step of an answer."""
        return [self.reward((prompt, answer[:i]), answer[i], (prompt, answer[: i + 1])) for i in range(len(answer))]

    # -- the World contract ---------------------------------------------------------------------------------------
    def input_id(self, state: TokenState) -> int:
        prompt, answer = state
        return (answer or prompt)[-1]

    def action_name(self, action: int) -> str:
        return self.tokenizer.decode([action])

    def successor_probs(self, ids: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Concatenation is deterministic: the next input is the action itself, ``one_hot(actions)``."""
        return F.one_hot(actions, self.n_ids).float()

    def sample(
        self,
        policy: Actor,
        n_episodes: int,
        generators: Sequence[torch.Generator],
        max_steps: int | None = None,
        split: str = "train",
    ) -> StepBatch:
        """``n_episodes`` sampled answers per seed, each seed to its own prompts drawn uniformly from ``split`` with
        its own generator: a ``(K, n, T)`` batch with the rewards of :meth:`reward`, on the policy's device.
        Answers stop at ``<eos>`` or after ``max_steps`` tokens (default: the task's longest answer + 1)."""
        examples = self.task.split(split)
        chosen = [torch.randint(len(examples), (n_episodes,), generator=g).tolist() for g in generators]
        prompts = [[self.prompt_ids(examples[i].prompt) for i in seed] for seed in chosen]
        return self._answer(policy, prompts, generators, max_steps)

    def sample_like(
        self, policy: Actor, demos: StepBatch, n_per: int, generators: Sequence[torch.Generator]
    ) -> StepBatch:
        """``n_per`` sampled answers per seed to the prompt of each trajectory of ``demos`` (each seed's own, for a
        ``(K, B, T)`` batch): a ``(K, B * n_per, T)`` batch whose episodes ``b * n_per ...`` answer prompt b."""
        at_least("n_per", n_per, 1)
        ids, mask = demos.ids.cpu(), demos.mask.cpu()
        per_seed = [(ids[k], mask[k]) for k in range(len(generators))] if ids.ndim == 3 else [(ids, mask)] * len(
            generators)  # fmt: skip
        prompts = []
        for seed_ids, seed_mask in per_seed:
            # the answer is the last run of masked steps (earlier runs are assistant turns inside the prompt); its
            # first step's input is the prompt's last token
            starts = seed_mask & ~torch.nn.functional.pad(seed_mask, (1, 0))[:, :-1]
            first = (starts * torch.arange(starts.shape[-1])).argmax(-1).tolist()
            rows = [tuple(row[: f + 1].tolist()) for row, f in zip(seed_ids, first)]  # each prompt read once
            prompts.append([row for row in rows for _ in range(n_per)])
        return self._answer(policy, prompts, generators, None)

    def _answer(
        self,
        policy: Actor,
        prompts: Sequence[Sequence[tuple[int, ...]]],
        generators: Sequence[torch.Generator],
        max_steps: int | None,
    ) -> StepBatch:
        """Each seed's sampled answers to its own ``prompts[k]``, as a ``(K, n, T)`` step batch on the policy's
        device."""
        n_episodes = len(prompts[0])
        flat_prompts = [p for seed in prompts for p in seed]
        padded, lengths = pad_prompts(flat_prompts, self.pad)
        shape = (len(prompts), n_episodes, -1)
        steps = self.max_answer_tokens if max_steps is None else min(max_steps, self.max_answer_tokens)
        answers = generate(policy, padded.view(shape), lengths.view(shape[:2]), steps, greedy=False,
                           generators=generators, eos=self.eos, pad=self.pad).cpu().tolist()  # fmt: skip
        batch = self.pack(flat_prompts, [_trim(a, self.eos) for seed in answers for a in seed])
        device = policy.device  # read once: a policy may find it by looking at its weights
        return StepBatch(*(t.view(shape).to(device) for t in batch.tensors()))

    def training_data(self, split: str = "train") -> TrainingData:
        """Demonstrations (every example's target answer) and, when the task has rejected answers, pairs."""
        examples = self.task.split(split)
        has_pairs = any(ex.rejected is not None for ex in examples)
        return TrainingData(
            demos=self.step_batch(
                [(ex.prompt, ex.completion) for ex in examples], history=[ex.history_loss for ex in examples]
            ),
            pairs=self.pair_batch(examples) if has_pairs else None,
        )

    def reach_probs(self, policy: Actor, batch: StepBatch) -> torch.Tensor:
        """``(K, B, T)``: a state is the whole prefix, so the probability of reaching step t is the product of the
        policy's probabilities of the answer tokens before it."""
        with torch.no_grad():
            logps = batch.logps(policy.logits_at(batch.ids), torch.float64)
        return (logps.cumsum(-1) - logps).exp()

    def scores(self, policy: Actor, metrics: Sequence[str] = SCORES, seed: int = 0) -> dict[str, np.ndarray]:
        """The world's measures, ``(K,)`` each: the mean task reward (exact match, or success for Frozen Lake as text)
        of ``greedy_test``, ``sampled_test`` (seed k sampling from its own generator, seeded by ``seed``) and
        ``greedy_train`` answers, and ``target_test``, ``target_train``: the exact probability of the reference
        answer (:meth:`target_probability`)."""
        unknown = sorted(set(metrics) - set(SCORES))
        if unknown:
            raise ValueError(f"unknown score {', '.join(unknown)}: expected any of {', '.join(SCORES)}")
        out = {}
        for name in metrics:
            greedy, split = name.split("_")
            if greedy == "target":
                out[name] = self.target_probability(policy, split)
                continue
            generators = None if greedy == "greedy" else seed_generators(seed, policy.seeds)
            out[name] = self.score(policy, split, greedy == "greedy", generators)
        return out

    # -- batches ----------------------------------------------------------------------------------------------
    def answer_ids(self, answer: str, prompt: Prompt = "") -> tuple[int, ...]:
        """The ids of ``answer`` to ``prompt`` through ``<eos>`` (after a conversation, the assistant's turn as the
        chat template writes it)."""
        return tuple(answer_tokens(self.tokenizer, prompt, answer))

    def pack(
        self,
        prompts: Sequence[tuple[int, ...]],
        answers: Sequence[tuple[int, ...]],
        length: int | None = None,
        prompt_masks: Sequence[Sequence[bool] | None] | None = None,
    ) -> StepBatch:
        """Whole sequences ``prompt + answer`` as a ``(B, T)`` step batch, the mask on answer actions and on the
        prompt tokens that ``prompt_masks`` marks (assistant turns inside a conversation; default none)."""
        rows = [(*p, *a) for p, a in zip(prompts, answers)]
        if not rows:
            raise ValueError("no sequences to pack: expected at least one (prompt, answer)")
        longest = max(len(row) for row in rows) - 1
        length = longest if length is None else length
        if length < longest:
            raise ValueError(f"length={length} is shorter than the longest sequence ({longest} steps)")
        fits_in_memory(f"a batch of {len(rows)} sequences of {length} steps", len(rows) * length * BATCH_BYTES_PER_STEP,
                       "use fewer or shorter examples")  # fmt: skip
        # each field built whole from padded rows (one tensor each, not a copy per row)
        pads = [length + 1 - len(row) for row in rows]  # padding steps after each sequence
        starts = [len(prompt) - 1 for prompt in prompts]  # the step of each answer's first action
        ids = torch.tensor([[*row[:-1], *[self.pad] * n] for row, n in zip(rows, pads)], dtype=torch.long)
        actions = torch.tensor([[*row[1:], *[self.pad] * n] for row, n in zip(rows, pads)], dtype=torch.long)
        rewards = torch.tensor([[*[0.0] * start, *self.answer_rewards(prompt, answer), *[0.0] * n]
                                for prompt, answer, start, n in zip(prompts, answers, starts, pads)],
                               dtype=torch.float32)  # fmt: skip
        steps = torch.arange(length)
        ends = torch.tensor([len(row) - 1 for row in rows])
        mask = (steps >= torch.tensor(starts)[:, None]) & (steps < ends[:, None])
        for b, prompt_mask in enumerate(prompt_masks or []):
            if prompt_mask is not None:  # the action at step t is token t + 1
                mask[b, : starts[b]] = torch.tensor(prompt_mask[1:], dtype=torch.bool)
        return StepBatch(ids, actions, mask, rewards)

    def step_batch(
        self, examples: Sequence[tuple[Prompt, str]], length: int | None = None, history: Sequence[bool] | None = None
    ) -> StepBatch:
        """``(prompt, answer)`` pairs as a step batch; ``history[b]``: example b also trains on the assistant turns
        of its conversation prompt."""
        masks = None
        if history is not None:
            masks = [self._rendered(p)[1] if h and not isinstance(p, str) else None
                     for (p, _), h in zip(examples, history)]  # fmt: skip
        return self.pack([self.prompt_ids(p) for p, _ in examples], [self.answer_ids(a, p) for p, a in examples],
                         length, masks)  # fmt: skip

    def pair_batch(self, examples: Sequence[Example]) -> PairBatch:
        """Examples with a rejected answer as (chosen = completion, rejected) pairs padded to one length."""
        pairs = [ex for ex in examples if ex.rejected is not None]
        if not pairs:
            raise ValueError(f"task {self.task.name!r} has no rejected answers: preference pairs need them")
        length = max(len(self.prompt_ids(ex.prompt)) - 1 + max(len(self.answer_ids(ex.completion, ex.prompt)),
                                                                 len(self.answer_ids(ex.rejected, ex.prompt)))
                     for ex in pairs)  # fmt: skip
        return PairBatch(
            self.step_batch([(ex.prompt, ex.completion) for ex in pairs], length),
            self.step_batch([(ex.prompt, ex.rejected) for ex in pairs], length),
        )

    # -- generation ---------------------------------------------------------------------------------------------
    def complete(
        self,
        policy: Actor,
        prompts: Sequence[Prompt],
        greedy: bool = True,
        generators: Sequence[torch.Generator] | None = None,
        temperature: float = 1.0,
    ) -> list[list[tuple[int, ...]]]:
        """Every seed's answer token ids (through ``<eos>``) to each prompt: ``K`` lists of ``B`` tuples."""
        if isinstance(prompts, str) or not prompts:
            raise ValueError(f"prompts={prompts!r} is not supported: expected a non-empty list of prompt strings")
        padded, lengths = pad_prompts([self.prompt_ids(p) for p in prompts], self.pad)
        out = generate(policy, padded, lengths, self.max_answer_tokens, greedy, temperature, generators, eos=self.eos,
                       pad=self.pad).cpu()  # fmt: skip
        return [[_trim(row, self.eos) for row in seed] for seed in out.tolist()]

    def target_probability(self, policy: Actor, split: str = "test", chunk: int = 256) -> np.ndarray:
        """``(K,)``: the exact probability that the policy's own answer is the reference answer, a product of its
        per-token probabilities along the reference (``<eos>`` included), averaged over the prompts of ``split``.
        Unlike exact match, it moves with every change of the policy, so small differences between rules show."""
        at_least("chunk", chunk, 1)
        examples = self.task.split(split)
        total = torch.zeros(policy.n_seeds, dtype=torch.float64)
        with torch.no_grad():
            for start in range(0, len(examples), chunk):
                batch = self.step_batch([(ex.prompt, ex.completion) for ex in examples[start : start + chunk]])
                batch = batch.to(policy.device)
                logps = batch.logps(policy.logits_at(batch.ids), torch.float64)
                total += logps.sum(-1).exp().sum(-1).cpu()
        return (total / len(examples)).numpy()

    def score(
        self,
        policy: Actor,
        split: str = "test",
        greedy: bool = True,
        generators: Sequence[torch.Generator] | None = None,
        chunk: int = 256,
    ) -> np.ndarray:
        """``(K,)`` mean task reward over the prompts of ``split`` (exact match or success rate)."""
        at_least("chunk", chunk, 1)
        examples = self.task.split(split)
        totals = np.zeros(policy.n_seeds)
        for start in range(0, len(examples), chunk):
            prompts = [ex.prompt for ex in examples[start : start + chunk]]
            answers = self.complete(policy, prompts, greedy, generators)
            for k, seed in enumerate(answers):
                totals[k] += sum(self.final_reward(self.prompt_ids(p), a) for p, a in zip(prompts, seed))
        return totals / len(examples)
