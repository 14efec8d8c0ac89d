"""A live explorer for tiny GPTs: train each rule on a token task, type a prompt, and see each rule's generation and,
for a prompt of the task, its per-token preference strip for the target answer (teacher-forced, on-policy, IFT)."""

from __future__ import annotations

import textwrap
import time
from html import escape

import ipywidgets as widgets
from matplotlib.figure import Figure

from iftgym.experiments.compare import math_threads
from iftgym.experiments.config import TOKENS, CompareConfig
from iftgym.experiments.runner import AlgorithmRun, run_algorithm
from iftgym.experiments.worlds import Tokens, preference_strips
from iftgym.explain.canvas import figure_png
from iftgym.explain.strips import draw_strips
from iftgym.interactive.html import show_png
from iftgym.policies.base import Policy
from iftgym.rules.ift import IFTConfig
from iftgym.worlds.tokens.tasks import Example

FIGURE_DPI = 110  # figure_png's default: one figure pixel per CSS pixel
DENSITY = 2  # the strips' pixels per CSS pixel: sharp on a high-density screen (they are small and cheap to draw)
# the explorer's model: small enough to train in seconds on a laptop's CPU
MODEL = {"n_layer": 1, "n_head": 2, "n_embd": 32, "device": "cpu", "lr": 3e-3, "batch_size": 32}


class TinyLMExplorer:
    """Train ``algos`` on a task (``train()`` or the button), then each prompt typed in the box is answered by every
    rule; when the prompt is one of the task's, the target answer's preference strip is drawn for each rule. The
    settings are checked as ``iftgym lm``'s are, and every rule trains through the same runner, from the same
    initial models (seed i of every rule starts from one network)."""

    def __init__(self, task: str = "addition", algos: tuple[str, ...] = ("sft", "ift"), steps: int = 300,
                 seeds: int = 2, task_args: dict | None = None, train_now: bool = True) -> None:  # fmt: skip
        sizes = {"n_train": 400, "n_test": 50} if task_args is None and task == "addition" else {}
        args = {"digits": 2} if task_args is None and task == "addition" else dict(task_args or {})
        self.config = CompareConfig(world=TOKENS, task=task, task_args=args, algos=list(algos), steps=steps,
                                    seeds=seeds, **sizes, **MODEL)  # fmt: skip
        self.kind = Tokens(self.config)
        self.world = self.kind.world
        self.runs: dict[str, AlgorithmRun] = {}
        examples = [*self.world.task.test, *self.world.task.train]
        self.targets = {ex.prompt: ex.completion for ex in examples}
        self.prompt = widgets.Combobox(options=[ex.prompt for ex in examples[:50]], value=examples[0].prompt,
                                       description="prompt", continuous_update=False)  # fmt: skip
        self.train_button = widgets.Button(description="train")
        self.status = widgets.HTML()
        self.answers = widgets.HTML()
        self.strips = {algo: widgets.Image(format="png") for algo in algos}
        self.prompt.observe(lambda _: self.answer(), names="value")
        self.train_button.on_click(lambda _: self.train())
        if train_now:
            self.train()

    @property
    def policies(self) -> dict[str, Policy]:
        """Each rule's trained policy (all seeds)."""
        return {algo: run.policy for algo, run in self.runs.items()}

    def train(self) -> None:
        """Train every rule (all seeds batched) from the same initial model, then answer the current prompt."""
        self.status.value = "<i>training…</i>"
        start = time.perf_counter()
        config, data, seeds = self.config, self.world.training_data(), list(range(self.config.seeds))
        loop = config.train_config(eval_every=0)
        with math_threads(config.threads):
            for algo in config.algos:
                self.runs[algo] = run_algorithm(algo, config.stages(algo), self.world, data,
                                                lambda: self.kind.policy(seeds), loop)  # fmt: skip
        self.status.value = (
            f"trained {len(self.runs)} rules x {config.seeds} seeds in {time.perf_counter() - start:.1f} s"
        )
        self.answer()

    def answer(self) -> None:
        """Each rule's greedy answer (seed 0) to the prompt, and the target's preference strips."""
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
        return widgets.VBox([widgets.HBox([self.prompt, self.train_button]), self.status, self.answers,
                             *self.strips.values()])  # fmt: skip
