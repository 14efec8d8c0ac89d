"""Language models on a token task: train K seeds with every algorithm, score them, explain their estimates.

The model is a :class:`TinyGPT` by default, or a Hugging Face causal LM built from a config (``model_config``) or
read from a local folder (``pretrained``), with the task's character tokenizer or a saved tokenizer (``tokenizer``;
a pretrained folder's own by default). For each algorithm, K seeds train at once through :func:`iftgym.train` (a
recipe such as ``sft+ppo`` trains its rules one after the other, each stage with its own learning rate if given),
then are scored on the task's train and test prompts: greedy and sampled exact match (or success rate, for Frozen
Lake as text). The per-token *preference strips* show, at each answer position n of a test example, three
estimates of how much the model prefers the target token (:mod:`iftgym.metrics.estimators`):

* teacher-forced: ``pi(a*_n | s*_n)``, what SFT scores (the model conditioned on the true prefix);
* on-policy: ``T(s*_n) * pi(a*_n | s*_n) = prod_{i<=n} pi(a*_i | s*_i)``, the probability that the model's own
  rollout writes the target up to and including token n (exact: concatenation is deterministic);
* IFT estimate: ``pi(a*_n | mixed prefix)`` with IFT's temporal residual connection (lambda of the run, 0.2 by
  default).

:func:`run_lm` returns the results as a JSON-ready dict and prints nothing (progress bars aside, when asked); it
can save each trained model into a folder (:mod:`iftgym.policies.folder`) and write every step's metrics to a
JSONL log as training goes. ``iftgym lm`` renders the results and draws :mod:`iftgym.explain.strips`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iftgym import distributed
from iftgym.io import read_json
from iftgym.loop import TrainConfig, check_algorithms, make_stages, stage_batches, train
from iftgym.metrics.estimators import ift_estimate, on_policy_exact, teacher_forced
from iftgym.metrics.stats import summarize
from iftgym.policies.base import MAX_SEEDS, Policy, resolve_device
from iftgym.policies.folder import model_folder, save_model
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.rules.ift import IFTConfig
from iftgym.types import TrainingData
from iftgym.validate import at_least, one_of, positive
from iftgym.worlds.tokens.hf_tokenizer import load_tokenizer
from iftgym.worlds.tokens.tasks import TASKS, Example, Task, make_task
from iftgym.worlds.tokens.tokenizer import CharTokenizer, Tokenizer, prompt_text
from iftgym.worlds.tokens.world import REWARD_MODES, SCORES, TokenWorld

SCHEMA = "iftgym.lm/1"
TINY_GPT_SHAPE = ("n_layer", "n_head", "n_embd")  # settings of TinyGPT alone, not of a Hugging Face model
ESTIMATES = ("teacher_forced", "ift", "on_policy")


@dataclass
class LMConfig:
    """Everything that defines an ``iftgym lm`` run; saved in ``results.json`` so the run can be repeated.

    ``task_args`` go to the task's constructor (``{"digits": 2}``), ``n_train``/``n_test`` too when set;
    ``rule_overrides`` set rule hyper-parameters by rule name (``{"ift": {"lam": 0.3}}``); ``stage_lrs`` the
    learning rate of a rule's stage by rule name (``{"ppo": 1e-4}`` for ``sft+ppo``; default ``lr``), since
    preference and RL stages need much smaller steps than SFT; ``eval_every`` 0 means ``steps // 10``.
    ``model_config`` (a Hugging Face config as a dict with its ``model_type``, or the path of such a JSON file) or
    ``pretrained`` (a local Hugging Face model folder) replace TinyGPT (whose ``n_layer``, ``n_head``, ``n_embd``
    then do not apply); ``tokenizer`` is a folder holding a saved tokenizer.
    """

    task: str = "addition"
    algos: list[str] = field(default_factory=lambda: ["sft", "ift"])
    steps: int = 1500
    seeds: int = 3
    lr: float = 3e-3
    batch_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    device: str = "auto"
    data: str | None = None
    n_train: int | None = None
    n_test: int | None = None
    task_args: dict[str, Any] = field(default_factory=dict)
    reward: str = "end"
    eval_every: int = 0
    strips: int = 3
    seed: int = 0
    rule_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    stage_lrs: dict[str, float] = field(default_factory=dict)
    model_config: dict[str, Any] | str | None = None
    pretrained: str | None = None
    tokenizer: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: expected one of {', '.join(TASKS.names())}")
        if (self.task == "jsonl") != (self.data is not None):
            raise ValueError("task 'jsonl' reads --data FILE.jsonl, and only it does: give both or neither")
        for name in ("steps", "batch_size", "strips"):
            at_least(name, getattr(self, name), 1)
        at_least("seeds", self.seeds, 1, high=MAX_SEEDS)
        for name in TINY_GPT_SHAPE:
            at_least(name, getattr(self, name), 1)
            if self.uses_hf() and getattr(self, name) != getattr(LMConfig, name):  # TinyGPT's alone
                model = "model_config" if self.model_config is not None else "pretrained"
                raise ValueError(f"{name}={getattr(self, name)} has no effect with {model}: the Hugging Face model's "
                                 f"own config sets its shape; expected {name} left at its default")  # fmt: skip
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: expected n_embd a "
                             "multiple of n_head (each head reads n_embd / n_head dimensions)")  # fmt: skip
        one_of("reward", self.reward, REWARD_MODES)
        positive("lr", self.lr)
        resolve_device(self.device)
        at_least("eval_every", self.eval_every, 0)
        at_least("seed", self.seed, 0)
        check_algorithms(self.algos, self.steps, self.stage_lrs, self.rule_overrides)
        if self.model_config is not None and self.pretrained is not None:
            raise ValueError("model_config and pretrained both choose the model: expected at most one of them")
        if isinstance(self.model_config, (str, os.PathLike)):
            self.model_config = read_json(self.model_config, "model config")
        if self.model_config is not None and not isinstance(self.model_config, dict):
            raise ValueError(f"model_config is {type(self.model_config).__name__}: expected a JSON object such as "
                             '{"model_type": "gpt2", "n_layer": 2}')  # fmt: skip
        if self.model_config is not None:  # an unknown model type or setting, or too big a model, is refused before
            from iftgym.policies.hf import check_config_memory, model_config  # any work

            check_config_memory(model_config(self.model_config), self.seeds)
        for name in ("pretrained", "tokenizer"):
            folder = getattr(self, name)
            if folder is not None and not Path(folder).is_dir():
                raise ValueError(f"{name} folder {folder!r} does not exist: expected a local folder")
        if self.pretrained is not None and not (Path(self.pretrained) / "config.json").is_file():
            raise ValueError(f"pretrained folder {self.pretrained!r} is not a model folder: expected config.json and "
                             "safetensors weights (written by save_pretrained)")  # fmt: skip
        if self.pretrained is not None:
            from iftgym.policies.hf import check_config_memory, pretrained_config

            check_config_memory(pretrained_config(self.pretrained), self.seeds)

    def make_task(self) -> Task:
        """The task, built from ``task``, ``data``, ``task_args``, ``n_train`` and ``n_test``."""
        kwargs = dict(self.task_args)
        if self.task == "jsonl":
            kwargs["path"] = self.data
        for key in ("n_train", "n_test"):
            if getattr(self, key) is not None:
                kwargs[key] = getattr(self, key)
        return make_task(self.task, **kwargs)

    def make_tokenizer(self, task: Task) -> Tokenizer:
        """The tokenizer folder's, else a pretrained folder's own, else the character tokenizer of ``task``; a
        tokenizer that would read a character of the task as its unknown token is refused."""
        from iftgym.experiments.generate import describe_characters, unknown_characters

        folder = self.tokenizer or self.pretrained
        if folder is None:
            return CharTokenizer(task.alphabet)
        tokenizer = load_tokenizer(folder)
        lacking = unknown_characters(tokenizer, task.alphabet)
        if lacking:
            data = f"the data file {self.data!r}" if self.task == "jsonl" else f"task {self.task!r}"
            raise ValueError(f"the tokenizer of {folder!r} lacks characters of {data}: "
                             f"{describe_characters(lacking)} (they would become its unknown token): expected a "
                             "tokenizer that covers the data")  # fmt: skip
        return tokenizer

    def uses_hf(self) -> bool:
        """Whether the model is a Hugging Face one (built from a config or read from a folder)."""
        return self.model_config is not None or self.pretrained is not None


def make_policy(config: LMConfig, world: TokenWorld, device: str) -> Policy:
    """K seeds of the run's model for ``world``: TinyGPT, or a Hugging Face model whose vocabulary and context must
    hold the world's (a config without ``vocab_size`` gets the tokenizer's, and the tokenizer's special ids)."""
    if not config.uses_hf():
        return TinyGPT(world.n_ids, world.block_size, config.n_layer, config.n_head, config.n_embd,
                       seeds=config.seeds, device=device)  # fmt: skip
    from iftgym.policies.hf import HFPolicy

    if config.pretrained is not None:
        policy = HFPolicy(pretrained=config.pretrained, seeds=config.seeds, device=device)
    else:
        tokenizer = world.tokenizer
        settings = {"vocab_size": world.n_ids, "bos_token_id": tokenizer.bos_id, "eos_token_id": tokenizer.eos_id,
                    "pad_token_id": tokenizer.pad_id, **config.model_config}  # fmt: skip
        policy = HFPolicy(settings, seeds=config.seeds, device=device)
    context = policy.block_size
    if policy.n_actions < world.tokenizer.vocab_size or (context is not None and context < world.block_size):
        raise ValueError(
            f"the model reads {policy.n_actions} token ids and {context} positions: the task needs "
            f"{world.tokenizer.vocab_size} ids and {world.block_size} positions"
        )
    return policy


def make_world(config: LMConfig) -> TokenWorld:
    """The task's world with the run's tokenizer, its vocabulary that of the model when the model's is larger."""
    task = config.make_task()
    tokenizer = config.make_tokenizer(task)
    vocab = None
    if config.pretrained is not None:
        vocab = max(read_json(Path(config.pretrained) / "config.json", "model config").get("vocab_size", 0),
                    tokenizer.vocab_size)  # fmt: skip
    elif config.model_config is not None and "vocab_size" in config.model_config:
        vocab = config.model_config["vocab_size"]
    return TokenWorld(task, reward=config.reward, tokenizer=tokenizer, vocab_size=vocab)


def preference_strips(policy: Policy, world: TokenWorld, examples: Sequence[Example], lam: float = 0.2) -> list:
    """For each example, the three estimates at every answer position, ``(K, n)`` lists per estimate."""
    batch = world.step_batch([(ex.prompt, ex.completion) for ex in examples])
    estimates = {
        "teacher_forced": teacher_forced(policy, world, batch),
        "ift": ift_estimate(policy, world, batch, lam),
        "on_policy": on_policy_exact(policy, world, batch, reach="path"),
    }
    strips = []
    for b, ex in enumerate(examples):
        steps = batch.mask[b].nonzero().squeeze(-1).numpy()
        tokens = [world.tokenizer.decode([i]) for i in world.answer_ids(ex.completion, ex.prompt)]
        strips.append({
            "prompt": prompt_text(ex.prompt), "answer": ex.completion, "tokens": tokens,
            **{name: values[:, b, steps].tolist() for name, values in estimates.items()},
        })  # fmt: skip
    return strips


def run_algorithm(
    config: LMConfig,
    algo: str,
    world: TokenWorld,
    data: TrainingData,
    save: str | os.PathLike | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    bars: bool = False,
) -> dict[str, Any]:
    """Train K seeds with one algorithm on ``data`` (the world's training data) and score them; ``save``: the model
    folder to write the trained model into; ``log`` gets every step's metrics; ``bars`` shows a progress bar per
    stage."""
    device = str(distributed.local_device(resolve_device(config.device)))
    policy = make_policy(config, world, device)
    stages = make_stages(algo, config.steps, config.stage_lrs, config.rule_overrides)
    loop = TrainConfig(steps=config.steps, lr=config.lr, batch_size=config.batch_size, seed=config.seed,
                       eval_every=config.eval_every or max(1, config.steps // 10), progress=bars)  # fmt: skip
    result = train(policy, stages, world, data, loop,
                   callback=lambda step, p: world.scores(p, ("greedy_test",)),
                   log=None if log is None else lambda record: log({"algorithm": algo, **record}))  # fmt: skip
    if save is not None and distributed.is_main():
        save_model(policy, world.tokenizer, save, {"algorithm": algo, "config": asdict(config)})
    scores = world.scores(policy, SCORES, seed=config.seed)
    ift_lam = config.rule_overrides.get("ift", {}).get("lam", IFTConfig.lam)
    return {
        "stages": result.stages,
        "scores": {key: values.tolist() for key, values in scores.items()},
        "summary": {key: summarize(values, (0.0, 1.0)) for key, values in scores.items()},
        "curve": {"steps": [s for s, _ in result.evaluations],
                  "greedy_test": [e["greedy_test"].tolist() for _, e in result.evaluations]},
        "history": {key: values.mean(-1).tolist() for key, values in result.history.items()},
        "strips": preference_strips(policy, world, world.task.test[: config.strips], ift_lam),
        "wall_time": result.wall_time,
    }  # fmt: skip


def run_lm(
    config: LMConfig,
    progress: Callable[[str], None] | None = None,
    save: str | os.PathLike | None = None,
    log: str | os.PathLike | None = None,
    bars: bool = False,
) -> dict[str, Any]:
    """Every algorithm of ``config`` on its task: the full results dictionary (see the module docstring);
    ``progress`` is called with a short line before each algorithm (and first with where the log goes); ``save`` is
    a folder that receives one model folder per algorithm (``save/<algorithm>``); ``log`` a JSONL file that receives
    every step's metrics (one object a line, flushed as written, so a killed run keeps what it measured; under
    ``torchrun``, rank 0 writes it; it and its folder are created only once every input has been checked); ``bars``
    shows a progress bar per stage."""
    start = time.perf_counter()
    world = make_world(config)
    device = resolve_device(config.device)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "config": asdict(config),
        "device": str(device),
        "processes": distributed.world_size(),
        "task": {"name": config.task, "vocab_size": world.n_ids, "block_size": world.block_size,
                 "n_train": len(world.task.train), "n_test": len(world.task.test),
                 "tokenizer": type(world.tokenizer).__name__, "chars": getattr(world.tokenizer, "chars", None)},
        "algorithms": {},
    }  # fmt: skip
    data = world.training_data()
    for algo in config.algos:  # every algorithm's stages find their data before any of them trains
        stage_batches(make_stages(algo, config.steps, config.stage_lrs, config.rule_overrides), data, config.batch_size)
    say = progress or (lambda text: None)
    log_file = None
    if log is not None and distributed.is_main():  # only now, with every input checked, is anything written
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        log_file = open(log, "w", encoding="utf-8")  # noqa: SIM115 (closed below)
        processes = distributed.world_size()
        say(f"metrics of every step as they are measured: {log}" + (f" ({processes} processes)" if processes > 1
                                                                   else ""))  # fmt: skip

    def write(record: dict[str, Any]) -> None:
        log_file.write(json.dumps(record) + "\n")
        log_file.flush()

    try:
        for algo in config.algos:
            say(f"training {algo} on {config.task} x{config.seeds} seeds")
            folder = None if save is None else model_folder(save, algo)
            results["algorithms"][algo] = run_algorithm(config, algo, world, data, folder,
                                                        None if log_file is None else write, bars)  # fmt: skip
    finally:
        if log_file is not None:
            log_file.close()
    results["wall_time"] = time.perf_counter() - start
    return results
