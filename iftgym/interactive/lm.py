"""A live explorer for tiny GPTs: train each rule on a token task, type a prompt, and see each rule's generation and,
for a prompt of the task, its per-token preference strip for the target answer (teacher-forced, on-policy, IFT)."""

from __future__ import annotations

import time
from html import escape

import ipywidgets as widgets
import numpy as np

from iftgym.explain.figures import figure_png
from iftgym.explain.strips import draw_strips
from iftgym.loop import TrainConfig, check_algorithms, train
from iftgym.metrics.estimators import ift_estimate, on_policy_exact, teacher_forced
from iftgym.policies import TinyGPT
from iftgym.policies.base import MAX_SEEDS
from iftgym.validate import at_least
from iftgym.worlds.tokens import TokenWorld, make_task


class TinyLMExplorer:
    """Train ``algos`` on a task (``train()`` or the button), then each prompt typed in the box is answered by every
    rule; when the prompt is one of the task's, the target answer's preference strip is drawn for each rule."""

    def __init__(self, task: str = "addition", algos: tuple[str, ...] = ("sft", "ift"), steps: int = 300,
                 seeds: int = 2, task_args: dict | None = None, train_now: bool = True) -> None:  # fmt: skip
        at_least("seeds", seeds, 1, high=MAX_SEEDS)
        check_algorithms(list(algos) if isinstance(algos, tuple) else algos, steps, {}, {})  # names, steps
        args = {"digits": 2, "n_train": 400, "n_test": 50} if task_args is None and task == "addition" else task_args
        self.world = TokenWorld(make_task(task, **(args or {})))
        self.algos, self.steps, self.seeds = algos, steps, seeds
        self.policies: dict[str, TinyGPT] = {}
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

    def train(self) -> None:
        """Train every rule (all seeds batched) from the same initial model, then answer the current prompt."""
        self.status.value = "<i>training…</i>"
        start = time.perf_counter()
        data = self.world.training_data()
        for algo in self.algos:
            policy = TinyGPT(self.world.n_ids, self.world.block_size, n_layer=1, n_head=2, n_embd=32,
                             seeds=self.seeds, device="cpu")  # fmt: skip
            train(policy, algo, self.world, data, TrainConfig(steps=self.steps, lr=3e-3, batch_size=32))
            self.policies[algo] = policy
        self.status.value = (
            f"trained {len(self.algos)} rules x {self.seeds} seeds in {time.perf_counter() - start:.1f} s"
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
        for algo, picture in self.strips.items():
            picture.value = self.strip_png(algo, prompt, target) if target else b""

    def strip_png(self, algo: str, prompt: str, target: str) -> bytes:
        """The three estimates at each token of ``target`` for ``algo``'s policy, as :mod:`iftgym.explain.strips`
        draws them for ``iftgym lm``."""
        policy, demos = self.policies[algo], self.world.step_batch([(prompt, target)])
        strip = {"prompt": prompt, "tokens": [*target, "<eos>"]}
        for name, values in (("teacher_forced", teacher_forced(policy, self.world, demos)),
                             ("on_policy", on_policy_exact(policy, self.world, demos)),
                             ("ift", ift_estimate(policy, self.world, demos))):  # fmt: skip
            strip[name] = np.asarray(values)[:, 0][:, demos.mask[0].numpy()].tolist()
        return figure_png(draw_strips([strip], algo))

    @property
    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.prompt, self.train_button]), self.status, self.answers,
                             *self.strips.values()])  # fmt: skip
