"""A live explorer for tiny GPTs: train each rule on a token task, type a prompt, and see each rule's generation and,
for a prompt of the task, its per-token preference strip for the target answer (teacher-forced, on-policy, IFT).
Training goes on from the current models (``continue``) or starts again from the next seed (``new seed``)."""

from __future__ import annotations

import copy
import textwrap
import time
from dataclasses import replace
from html import escape
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from iftgym.experiments.compare import math_threads
from iftgym.experiments.config import TOKENS, CompareConfig
from iftgym.experiments.runner import AlgorithmRun, run_algorithm
from iftgym.experiments.worlds import Tokens, preference_strips
from iftgym.explain.canvas import figure_png
from iftgym.explain.strips import draw_strips
from iftgym.explain.update_tokens import draw_token_update
from iftgym.interactive.html import count, show_png
from iftgym.loop import Snapshot, Stage, TrainConfig
from iftgym.metrics.update_tokens import TokenUpdate, token_update
from iftgym.policies.base import Policy
from iftgym.rules.base import Rule
from iftgym.rules.ift import IFTConfig
from iftgym.types import TrainingData
from iftgym.validate import MAX_STEPS, at_least
from iftgym.worlds.tokens.tasks import Example

FIGURE_DPI = 110  # figure_png's default: one figure pixel per CSS pixel
DENSITY = 2  # the strips' pixels per CSS pixel: sharp on a high-density screen (they are small and cheap to draw)
# the explorer's model and task, chosen by SFT's and IFT's held-out exact match alike: after the default 1000 steps,
# over models 0-7, SFT 0.76 and IFT 0.95 on average (most models all right, a few on a plateau, which the score line
# shows), in about 40 s of training for both rules, two models each, on one core (docs/design.md, the explorers)
MODEL = {"n_layer": 1, "n_head": 4, "n_embd": 64, "device": "cpu", "lr": 2e-3, "batch_size": 64}
ADDITION = {"task_args": {"digits": 2}, "n_train": 2000, "n_test": 200}
# the default training, the page's too (pages.PAGE_SETTINGS: that module loads without torch, so it cannot read
# these; a test keeps them equal)
STEPS, SEEDS = 1000, 2
PROGRESS_UPDATES = 50  # progress-bar updates per training: often enough to watch, rarely enough to cost nothing


class TinyLMExplorer:
    """Train ``algos`` on a task, then each prompt typed in the box is answered by every rule; when the prompt is one
    of the task's, the target answer's preference strip is drawn for each rule, and a line gives each rule's held-out
    exact match. ``continue`` trains the current models the box's number of steps more (each algorithm's last stage,
    its optimiser's state carried over); ``new seed`` trains new models from scratch with the next seed. The
    settings are checked as ``iftgym lm``'s are, and every rule trains through the same runner, from the same
    initial models (model i of every rule starts from one network)."""

    def __init__(self, task: str = "addition", algos: tuple[str, ...] = ("sft", "ift"), steps: int = STEPS,
                 seeds: int = SEEDS, task_args: dict | None = None, train_now: bool = True) -> None:  # fmt: skip
        sizes = dict(ADDITION) if task_args is None and task == "addition" else {"task_args": dict(task_args or {})}
        self.config = CompareConfig(world=TOKENS, task=task, algos=list(algos), steps=steps, seeds=seeds, **sizes,
                                    **MODEL)  # fmt: skip
        self.kind = Tokens(self.config)
        self.world = self.kind.world
        self.data = self.world.training_data()
        self.runs: dict[str, AlgorithmRun] = {}
        # each algorithm's optimiser state after its last step: the live optimiser's tensors (next_steps), not a copy
        self.optimizers: dict[str, dict[str, Any]] = {}
        self.next_steps: dict[str, tuple[Rule, Any, int]] = {}  # each algorithm's live rule, optimiser, stage step
        self.seed = self.config.seed  # the models' seeds and the training's draws come from it
        self.step = 0  # the steps the current models have trained
        self.seconds = 0.0  # the last training's
        self.accuracy: dict[str, np.ndarray] = {}  # each rule's held-out greedy exact match, per model
        examples = [*self.world.task.test, *self.world.task.train]
        self.targets = {ex.prompt: ex.completion for ex in examples}
        self.prompt = widgets.Combobox(options=[ex.prompt for ex in examples[:50]], value=examples[0].prompt,
                                       description="prompt", continuous_update=False)  # fmt: skip
        self.more = widgets.BoundedIntText(value=max(1, steps // 5), min=1, max=MAX_STEPS, description="+ steps",
                                           layout={"width": "170px"})  # fmt: skip
        self.continue_button = widgets.Button(description="continue", tooltip="train the current models the "
                                              "number of steps on the left more")  # fmt: skip
        self.new_seed_button = widgets.Button(description="new seed", tooltip="train new models from scratch with "
                                              "the next seed")  # fmt: skip
        self.progress = widgets.IntProgress(description="training", layout={"display": "none"})
        self.status = widgets.HTML()
        self.score_line = widgets.HTML()
        self.answers = widgets.HTML()
        self.strips = {algo: widgets.Image(format="png") for algo in algos}
        self.why = widgets.Checkbox(value=False, description="why: each rule's next step on this prompt",
                                    style={"description_width": "initial"})  # fmt: skip
        self.updates = widgets.Image(format="png")
        self.prompt.observe(lambda _: self.answer(), names="value")
        self.why.observe(lambda _: self.answer(), names="value")
        self.continue_button.on_click(lambda _: self.train_on(self.more.value))
        self.new_seed_button.on_click(lambda _: self.new_seed())
        if train_now:
            self.train()

    @property
    def policies(self) -> dict[str, Policy]:
        """Each rule's trained policy (all its models)."""
        return {algo: run.policy for algo, run in self.runs.items()}

    @property
    def model_seeds(self) -> list[int]:
        """The seeds of the current models: a block of its own for each explorer seed (seed s: ``s*K .. s*K+K-1``)."""
        k = self.config.seeds
        return list(range(self.seed * k, (self.seed + 1) * k))

    def train(self) -> None:
        """Train every rule (all models batched) from new models of the current seed for the configured steps."""
        config = self.config
        self._train({algo: config.stages(algo) for algo in config.algos}, config.steps, fresh=True)

    def train_on(self, steps: int) -> None:
        """Train the current models ``steps`` steps more: each algorithm's last stage (a recipe's last rule) goes on
        from its optimiser's last state, its minibatches drawn from a stream of their own (the seed and the step it
        starts at)."""
        at_least("steps", steps, 1, high=MAX_STEPS)
        if not self.runs:
            raise RuntimeError("the explorer has not trained yet (built with train_now=False): call train() first")
        last = {algo: self.config.stages(algo)[-1] for algo in self.config.algos}
        self._train({algo: [Stage(stage.rule, steps, stage.lr)] for algo, stage in last.items()}, steps, fresh=False)

    def new_seed(self) -> None:
        """Train new models from scratch with the next seed (the seed stays if the training fails)."""
        self.seed += 1
        try:
            self.train()
        except BaseException:
            self.seed -= 1
            raise

    def _train(self, stages: dict[str, list[Stage]], steps: int, fresh: bool) -> None:
        """Train each algorithm's ``stages`` (``steps`` in all) on new models (``fresh``) or the current ones, showing
        progress, then score them and answer the current prompt; the last pictures stay until then."""
        draws = self.seed if fresh else int(np.random.SeedSequence([self.seed, self.step]).generate_state(1)[0])
        loop = replace(self.config.train_config(eval_every=0), steps=steps, seed=draws)
        buttons = (self.continue_button, self.new_seed_button)
        for button in buttons:
            button.disabled = True
        self.progress.max, self.progress.value, self.progress.layout.display = steps * len(stages), 0, None
        start = time.perf_counter()
        kept: dict[str, tuple[dict[str, Any], tuple[Rule, Any, int]]] = {}  # each run's optimiser state, next step
        shown = self.status.value
        try:
            with math_threads(self.config.threads):
                runs = {algo: self._run(index, algo, algo_stages, loop, fresh, kept)
                        for index, (algo, algo_stages) in enumerate(stages.items())}  # fmt: skip
        except BaseException as err:
            self.status.value = (f"{shown}<br><span style='color:#b00020'>training stopped "
                                 f"({escape(type(err).__name__)}: {escape(str(err))}); the models are as they "
                                 "were</span>")  # fmt: skip
            raise
        finally:
            for button in buttons:
                button.disabled = False
            self.progress.layout.display = "none"
        self.runs = runs  # all trained: the explorer's state changes only now
        self.optimizers = {algo: state for algo, (state, _) in kept.items()}
        self.next_steps = {algo: step for algo, (_, step) in kept.items()}
        self.seconds = time.perf_counter() - start
        self.step = steps if fresh else self.step + steps
        self.accuracy = {algo: self.world.scores(policy, ("greedy_test",))["greedy_test"]
                         for algo, policy in self.policies.items()}  # fmt: skip
        trained = "trained" if fresh else f"trained {steps} steps more"
        self.status.value = (f"<b>seed {self.seed}, step {self.step}</b> ({count(len(runs), 'rule')} x "
                             f"{count(self.config.seeds, 'model')} {trained} in {self.seconds:.1f} s)")  # fmt: skip
        self.score_line.value = self.score_text()
        self.answer()

    def _run(self, index: int, algo: str, stages: list[Stage], loop: TrainConfig, fresh: bool,
             kept: dict[str, tuple[dict[str, Any], tuple[Rule, Any, int]]]) -> AlgorithmRun:  # fmt: skip
        """The ``index``-th algorithm trained on new models or on a copy of its current ones (they stay as they are
        if training fails); its optimiser's state and its live rule are put in ``kept`` after its last step and,
        when it goes on, the state of the policy's weights is restored before its first (:class:`iftgym.loop.
        Snapshot`). The rule itself starts again: a critic, a reference model and a lambda schedule are set up anew
        from the current models. A run that goes on lists the stages its models trained before too."""
        before = None if fresh else self.runs[algo]
        steps, saved = loop.steps, None if fresh else self.optimizers[algo]
        stride = max(1, steps // PROGRESS_UPDATES)

        def carry_optimizer(snapshot: Snapshot) -> None:
            if snapshot.step == 0 and saved is not None:
                weights = sum(1 for _ in snapshot.policy.parameters())  # the optimiser's first entries: a new
                # critic's come after them and start fresh, as the critic does
                state = {i: value for i, value in saved["state"].items() if i < weights}
                # a copy: the kept state stays as it was if this training fails
                snapshot.optimizer.load_state_dict(copy.deepcopy({**saved, "state": state}))
            elif snapshot.step == steps:  # the live optimiser's own tensors: nothing steps it after its last step
                kept[algo] = snapshot.optimizer.state_dict(), (snapshot.rule, snapshot.optimizer, snapshot.stage_step)

        def show(record: dict[str, Any]) -> None:
            if record["step"] % stride == 0 or record["step"] == steps:
                self.progress.value = index * steps + record["step"]
                self.status.value = (f"<i>training {escape(algo)} (seed {self.seed}): step {record['step']} of "
                                     f"{steps}…</i>")  # fmt: skip

        def make() -> Policy:
            return self.kind.policy(self.model_seeds) if before is None else copy.deepcopy(before.policy)

        run = run_algorithm(algo, stages, self.world, self.data, make, loop, log=show, snapshot=carry_optimizer)
        return run if before is None else replace(run, stages=[*before.stages, *run.stages])

    def score_text(self) -> str:
        """The line that says what the rules reach: each rule's held-out greedy exact match after the steps trained,
        the mean over its models and, in brackets, each model's (one model stuck on a plateau shows)."""
        scores = ", ".join(f"{escape(algo)} {values.mean():.2f} [{' '.join(f'{v:.2f}' for v in values)}]"
                           for algo, values in self.accuracy.items())  # fmt: skip
        return (f"held-out exact match after {self.step} steps (greedy, {len(self.world.task.test)} prompts; mean "
                f"of {count(self.config.seeds, 'model')}, each in brackets): {scores}")  # fmt: skip

    def answer(self) -> None:
        """Each rule's greedy answer (its first model) to the prompt, and the target's preference strips."""
        prompt = self.prompt.value
        if not self.policies:
            return
        try:
            self.world.prompt_ids(prompt)
        except ValueError as err:
            self.answers.value = f"<span style='color:#b00020'>{escape(str(err))}</span>"
            return
        lines = []
        for algo, policy in self.policies.items():
            (answer,) = self.world.complete(policy, [prompt])[0]
            lines.append(f"<b>{escape(algo)}</b>: {escape(self.world.tokenizer.decode(answer))}")
        target = self.targets.get(prompt)
        lines.append(f"target: {escape(target)}" if target else "<i>not a prompt of the task: no target strip</i>")
        self.answers.value = "<br>".join(lines)
        for algo, picture in self.strips.items():  # no strip without a target: hidden, not a broken image
            show_png(picture, self.strip_png(algo, prompt, target) if target else None, DENSITY)
        png = None
        if target and self.why.value:
            try:
                png = figure_png(self.update_figure(prompt, target), dpi=FIGURE_DPI * DENSITY)
            except ValueError as err:  # a rule whose step needs more than a demonstration (DPO's pairs)
                self.answers.value += f"<br><span style='color:#b00020'>why: {escape(str(err))}</span>"
        show_png(self.updates, png, DENSITY)

    def update(self, algo: str, prompt: str, target: str) -> TokenUpdate:
        """The step ``algo`` would take next (its live rule and optimiser state after its last step) if it trained
        on ``prompt`` and its ``target`` alone: the change of log pi at each answer position and each position's
        loss weight (:func:`~iftgym.metrics.update_tokens.token_update`)."""
        rule, optimizer, step = self.next_steps[algo]
        example = Example(prompt, target)
        data = TrainingData(demos=self.world.step_batch([(prompt, target)]))
        return token_update(rule, self.runs[algo].policy, self.world, [example], data, optimizer=optimizer,
                            step=step, seed=self.seed)  # fmt: skip

    def update_figure(self, prompt: str, target: str) -> Figure:
        """Every rule's :meth:`update` drawn side by side."""
        return draw_token_update({algo: self.update(algo, prompt, target) for algo in self.runs}, self.world)

    def strip(self, algo: str, prompt: str, target: str) -> dict:
        """The three estimates at each token of ``target`` for ``algo``'s policy, as ``iftgym lm`` computes them (the
        IFT estimate with the lambda of the IFT that trained, if one did)."""
        run = self.runs[algo]
        lam = run.setting("ift", "lam", IFTConfig.lam)
        return preference_strips(run.policy, self.world, [Example(prompt, target)], lam)[0]

    def strip_figure(self, algo: str, prompt: str, target: str) -> Figure:
        """:meth:`strip` drawn as ``iftgym lm`` draws it, laid out for a page: the colour bar's label wrapped and
        the figure at least 5 x 2.4 inches, so the title clears the label."""
        fig = draw_strips([self.strip(algo, prompt, target)], algo)
        bar = fig.axes[-1]  # draw_strips adds the colour bar last
        bar.set_ylabel(textwrap.fill(bar.get_ylabel(), 18), fontsize=8)
        width, height = fig.get_size_inches()
        fig.set_size_inches(max(width, 5.0), max(height, 2.4))
        return fig

    def strip_png(self, algo: str, prompt: str, target: str) -> bytes:
        """:meth:`strip_figure` as PNG bytes at :data:`DENSITY` times the figures' usual resolution."""
        return figure_png(self.strip_figure(algo, prompt, target), dpi=FIGURE_DPI * DENSITY)

    @property
    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.prompt, self.more, self.continue_button, self.new_seed_button]),
                             self.progress, self.status, self.score_line, self.answers,
                             *self.strips.values(), self.why, self.updates])  # fmt: skip
