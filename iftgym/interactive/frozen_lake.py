"""Live explorers for Frozen Lake (ipywidgets): edit a map, move a slider, and every rule retrains and every figure
redraws; play a trained policy's episode step by step; watch SFT's optimism along the demonstration; see why a rule
moves each cell (its update map at any recorded step, and which training cells moved a clicked cell).

Each explorer is a plain object holding its controls (``explorer.controls``), its state and the images it drew, and
``explorer.widget`` lays them out; so a notebook shows ``explorer.widget`` and a test sets a control's ``value`` or
calls ``button.click()`` and reads the state. Heavy work runs only when a control is released
(``continuous_update=False``), with a status line saying it is working.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from iftgym.experiments.compare import CompareConfig
from iftgym.experiments.results import GRID_METRICS, AlgorithmResult, Grid, Skipped, WorldResult
from iftgym.explain.canvas import figure_png
from iftgym.explain.figures import map_figure_png
from iftgym.explain.tables import compare_table
from iftgym.explain.update import draw_cell_sources, draw_update_map
from iftgym.interactive.html import count, table_html
from iftgym.interactive.limits import LIMITS
from iftgym.interactive.training import RuleRun, train_rules
from iftgym.metrics.estimators import ift_estimate, monte_carlo, on_policy_exact, teacher_forced
from iftgym.parallel import WorkerPool, in_background
from iftgym.rules.registry import recipe_rules
from iftgym.validate import at_least
from iftgym.worlds.frozen_lake.maps import catalogue, load_map, random_map, validate_map
from iftgym.worlds.frozen_lake.model import ACTION_NAMES, FrozenLakeMDP

TILES = "FHSG"  # a click on a cell cycles through them
TILE_COLOURS = {"F": "#e8f1fb", "H": "#1f2a44", "S": "#8fb8e8", "G": "#6cc47a"}
PICKED = "#2ca02c"  # the colour of the cell the update view shows
BLANK = "\u00a0"  # the label of a frozen or hole cell: ipywidgets keeps a button's old label when given ""
FIGURES = ("preference", "values", "explored", "curves")
STEP_FIGURES = FIGURES[:3]  # the figures of the policies at the shown step (the curves are of the whole training)
RULES = ("sft", "ift", "dpo", "orpo", "ppo", "reinforce", "dpo-online", "ift(lam=0)", "ift(gamma=0)")


def _cut(text: str, limit: int = 60) -> str:
    """User text as an error message echoes it: at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _in_range(name: str, value: object, low: int, high: int) -> None:
    """An integer a slider can show: ``low <= value <= high`` (a slider would silently clamp anything else)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not low <= value <= high:
        raise ValueError(f"{name}={_cut(repr(value))} is out of range: expected an integer {low} <= {name} <= {high} "
                         "(the explorer's slider)")  # fmt: skip


def _slider(kind: type, description: str, **options: Any) -> widgets.Widget:
    """A slider that reports its value only when released."""
    return kind(description=description, continuous_update=False, style={"description_width": "initial"}, **options)


class FrozenLakeExplorer:
    """Edit a map, choose rules and settings; each change retrains every rule (all seeds batched) and redraws the
    preference, value and explored maps, the training curves and the table; ``step`` scrubs through training.
    The rules train in ``workers`` processes kept alive between changes (default: one per core but one), or in a
    running ``pool``, and in this one, each with one math thread; :meth:`close` ends the workers."""

    def __init__(self, map: str = "paper", algos: tuple[str, ...] = ("sft", "ift", "dpo", "orpo", "ppo"),
                 seeds: int = 20, steps: int = 300, every: int = 10, train: bool = True,
                 workers: int | None = None, pool: WorkerPool | None = None) -> None:  # fmt: skip
        for name, value in (("seeds", seeds), ("steps", steps)):
            _in_range(name, value, *LIMITS[name])
        at_least("every", every, 1, note="training steps between kept policies")
        if pool is not None and not isinstance(pool, WorkerPool):
            raise TypeError(f"pool={_cut(repr(pool))} is {type(pool).__name__}: expected a WorkerPool or None")
        unknown = [algo for algo in algos if algo not in RULES] if isinstance(algos, tuple | list) else None
        if unknown is None or unknown or not algos:
            raise ValueError(f"algos={_cut(repr(algos))} is not supported: expected a non-empty tuple of the "
                             f"explorer's rules ({', '.join(RULES)})")  # fmt: skip
        self.rows = list(load_map(map))
        self.every = every
        self.model: FrozenLakeMDP | None = None
        self.runs: dict[str, RuleRun] = {}
        self.cache: dict[str, RuleRun] = {}  # runs by everything they depend on: unchanged rules are not retrained
        # kept alive between changes: the rules retrain at once, without a start-up (a page passes one it started)
        self.pool = WorkerPool(workers) if pool is None else pool
        self.images: dict[str, bytes] = {}
        self.table_html = ""
        self.train_seconds = 0.0
        self.listeners: list[Callable[[], None]] = []  # called after each training (the player, the bias explorer)
        self.update_rules: set[str] = set()  # the rules whose update fields training records (the update view's)
        names = list(catalogue())
        (min_seeds, max_seeds), (min_steps, max_steps) = LIMITS["seeds"], LIMITS["steps"]
        self.controls = {
            "map": widgets.Dropdown(options=names, value=map if map in names else None, description="map"),
            "random_seed": widgets.IntText(value=0, description="seed", layout={"width": "120px"}),
            "random": widgets.Button(description="random map"),
            "algos": widgets.SelectMultiple(options=RULES, value=algos, description="rules", rows=6),
            "lam": _slider(widgets.FloatSlider, "IFT lambda", value=0.2, min=0.0, max=1.0, step=0.05),
            "gamma": _slider(widgets.FloatSlider, "IFT gamma", value=0.95, min=0.0, max=1.0, step=0.05),
            "beta": _slider(widgets.FloatLogSlider, "DPO/ORPO beta", value=0.1, base=10, min=-2, max=0.5),
            "lr": _slider(widgets.FloatLogSlider, "learning rate", value=0.01, base=10, min=-4, max=-0.5),
            "steps": _slider(widgets.IntSlider, "steps", value=steps, min=min_steps, max=max_steps, step=10),
            "seeds": _slider(widgets.IntSlider, "seeds", value=seeds, min=min_seeds, max=max_seeds),
            "slippery": widgets.Checkbox(value=False, description="slippery"),
            "success_rate": _slider(widgets.FloatSlider, "success rate", value=1 / 3, min=0.05, max=1.0, step=0.05),
            "policy": widgets.Dropdown(options=["mlp", "tabular"], value="mlp", description="policy"),
            "step": _slider(widgets.IntSlider, "show step", value=steps, min=0, max=steps, step=every),
        }
        self.status = widgets.HTML()
        self.message = widgets.HTML()
        self.cells: list[widgets.Button] = []  # one button per cell, made as a map needs them
        self.grid = widgets.GridBox()
        self.pictures = {name: widgets.Image(format="png") for name in FIGURES}
        self.table = widgets.HTML()
        self.controls["map"].observe(lambda change: self.load(change["new"]), names="value")
        self.controls["random"].on_click(lambda _: self.load_random())
        for name in ("algos", "lam", "gamma", "beta", "lr", "steps", "seeds", "slippery", "success_rate", "policy"):
            self.controls[name].observe(lambda _: self.retrain(), names="value")
        self._moving_step = False
        self.controls["step"].observe(lambda _: self._moving_step or self.redraw(STEP_FIGURES), names="value")
        self._draw_grid()
        if train:
            self.retrain()

    # -- the map editor -------------------------------------------------------------------------------------
    def cycle(self, index: int) -> None:
        """A click on cell ``index``: frozen -> hole -> start -> goal -> frozen, then retrain (an invalid map shows
        its message and keeps the last good figures)."""
        ncol, cells = len(self.rows[0]), len(self.rows) * len(self.rows[0])
        if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < cells:
            raise IndexError(f"cell index={_cut(repr(index))} is not a cell of the map: expected an integer 0 <= "
                             f"index < {cells} (the map's {len(self.rows)}x{ncol} cells, row by row)")  # fmt: skip
        row, col = divmod(int(index), ncol)
        tile = self.rows[row][col]
        new = TILES[(TILES.index(tile) + 1) % len(TILES)]
        self.rows[row] = self.rows[row][:col] + new + self.rows[row][col + 1 :]
        self.controls["map"].value = None  # the map is now the user's own
        self._draw_grid()
        self.retrain()

    def load(self, name: str | None) -> None:
        """A catalogue map, then retrain."""
        if name is None:
            return
        self.rows = list(load_map(name))
        self._draw_grid()
        self.retrain()

    def load_random(self) -> None:
        """A random map of the current size from the seed box, then retrain."""
        try:
            shape = (len(self.rows), len(self.rows[0]))
            self.rows = list(random_map(shape, 0.25, seed=self.controls["random_seed"].value))
        except ValueError as err:
            self.message.value = _error(err)
            return
        self.controls["map"].value = None
        self._draw_grid()
        self.retrain()

    def _draw_grid(self) -> None:
        show_cells(self.grid, self.cells, self.rows, self.cycle)

    # -- training and drawing ---------------------------------------------------------------------------------
    def config(self, algos: tuple[str, ...] | None = None) -> CompareConfig:
        """The comparison the controls describe (checked like any other); ``algos``: other rules than the chosen
        ones, with the same settings."""
        c = {name: getattr(widget, "value", None) for name, widget in self.controls.items()}
        algos = c["algos"] if algos is None else algos
        overrides = {"ift": {"lam": c["lam"], "gamma": c["gamma"]}, "dpo": {"beta": c["beta"]},
                     "orpo": {"beta": c["beta"]}}  # fmt: skip
        used = {name for algo in algos for name in recipe_rules(algo)}
        return CompareConfig(maps=["edited"], algos=list(algos), seeds=c["seeds"], steps=c["steps"], lr=c["lr"],
                             slippery=c["slippery"], success_rate=c["success_rate"] if c["slippery"] else 1 / 3,
                             policy=c["policy"], eval_every=self.every,
                             rule_overrides={k: v for k, v in overrides.items() if k in used})  # fmt: skip

    def retrain(self) -> None:
        """Check the map and settings, retrain every rule and redraw; a problem is shown in one line and the last
        good figures stay."""
        try:
            rows = validate_map(self.rows)
            config = self.config()
            model = FrozenLakeMDP.from_map(rows, config.slippery, config.success_rate, config.gamma)
        except ValueError as err:
            self.message.value = _error(err)
            return
        self.message.value = ""
        self.status.value = "<i>training…</i>"
        start = time.perf_counter()
        self.runs = train_rules(model, config, self.every, self.cache, self.pool, self.fields(config.steps))
        self.model, self.train_seconds = model, time.perf_counter() - start
        self.status.value = (f"trained {count(len(self.runs), 'rule')} x {count(config.seeds, 'seed')} in "
                             f"{self.train_seconds:.1f} s")  # fmt: skip
        step = self.controls["step"]
        self._moving_step = True  # to the last step without a redraw of its own: everything is redrawn below
        try:
            step.max = config.steps
            step.value = config.steps
        finally:
            self._moving_step = False
        self.redraw()
        for listener in self.listeners:
            listener()

    def field_steps(self, steps: int) -> tuple[int, ...]:
        """The steps whose update fields training records for the update view: about ten kept steps, evenly spaced,
        and the last (the step a further step would take)."""
        stride = self.every * max(1, round(steps / (10 * self.every)))
        return tuple(sorted({*range(0, steps + 1, stride), steps}))

    def fields(self, steps: int) -> dict[str, tuple[int, ...]]:
        """``{rule: steps}``: the update fields to record (:func:`~iftgym.interactive.training.train_rules`)."""
        return {algo: self.field_steps(steps) for algo in self.update_rules}

    def on_retrain(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` after every training from now on (a map edit, a setting): what shows the trained
        rules follows the explorer."""
        self.listeners.append(listener)

    def trained(self, algo: str) -> tuple[str, RuleRun]:
        """``algo`` and its run if it trained, else the first rule that did (the user may have deselected it)."""
        runs = {name: run for name, run in self.runs.items() if not run.skipped}
        if not runs:
            raise RuntimeError("no rule has trained yet: call retrain() with a valid map and at least one rule that "
                               "trains on it")  # fmt: skip
        return (algo, runs[algo]) if algo in runs else next(iter(runs.items()))

    def close(self) -> None:
        """End the worker processes (a later change starts them again)."""
        self.pool.close()

    def entry(self, step: int | None = None) -> WorldResult:
        """The results of the last training, as a comparison's map entry, the policies as they were at ``step``."""
        model = self.model
        if model is None:
            raise RuntimeError("the explorer has not trained yet (built with train=False, or every map so far was "
                               "invalid): call retrain() first")  # fmt: skip
        values, _, optimal = model.value_iteration()
        step = self.controls["step"].value if step is None else step
        algorithms: dict[str, AlgorithmResult | Skipped] = {}
        for algo, run in self.runs.items():
            if run.skipped:
                algorithms[algo] = Skipped(run.skipped)
                continue
            algorithms[algo] = AlgorithmResult({k: v.tolist() for k, v in run.metrics.items()}, run.summary,
                                               run.seconds, curves=run.curves, policies=run.at(step))  # fmt: skip
        grid = Grid(list(model.desc), optimal, values, model.success_probability(optimal))
        return WorldResult(f"step {step}", algorithms, metrics=dict(GRID_METRICS), grid=grid)

    def redraw(self, kinds: tuple[str, ...] = FIGURES) -> None:
        """Redraw the figures ``kinds`` (default all; a scrub changes all but the training curves) and the table for
        the selected training step, the figures in the worker processes and here at once."""
        if self.model is None:
            return
        entry = self.entry()
        tasks = {kind: (map_figure_png, (kind, entry, self.model)) for kind in kinds}
        with in_background(tasks, pool=self.pool) as result:
            self.images.update({kind: result(kind) for kind in kinds})
        for name in kinds:
            self.pictures[name].value = self.images[name]
        self.table_html = table_html(compare_table(entry))
        self.table.value = self.table_html

    @property
    def editor(self) -> widgets.Widget:
        """The map editor and the controls, with the status line."""
        c = self.controls
        left = widgets.VBox([widgets.HBox([c["map"], c["random_seed"], c["random"]]), self.grid, self.message])
        right = widgets.VBox([c[n] for n in ("algos", "lam", "gamma", "beta", "lr", "steps", "seeds", "slippery",
                                              "success_rate", "policy")])  # fmt: skip
        return widgets.VBox([widgets.HBox([left, right]), self.status])

    @property
    def widget(self) -> widgets.Widget:
        """The explorer laid out: map editor and controls, status, figures, table."""
        return widgets.VBox([self.editor, self.controls["step"], widgets.VBox(list(self.pictures.values())),
                             self.table])  # fmt: skip


class UpdateExplorer:
    """Why a rule moves each cell: its update map (:func:`~iftgym.explain.update.draw_update_map`) at any step where
    training recorded its update field — the step training took there, with the live optimiser — and, for a clicked
    cell, which training cells' losses moved it (:func:`~iftgym.explain.update.draw_cell_sources`). It follows a
    :class:`FrozenLakeExplorer`: the explorer records the chosen rule's fields as it trains (a rule the explorer does
    not train is trained alone, with the explorer's settings). Built with ``active=False`` (a page's closed panel),
    it costs the explorer nothing until :meth:`activate`."""

    def __init__(self, explorer: FrozenLakeExplorer, algo: str = "ift", active: bool = True) -> None:
        if algo not in RULES:
            raise ValueError(f"algo={_cut(repr(algo))} is not supported: expected one of {', '.join(RULES)}")
        self.explorer = explorer
        self.rule = widgets.Dropdown(options=RULES, value=algo, description="rule")
        self.step = _slider(widgets.SelectionSlider, "update at step", options=[0], value=0)
        self.status = widgets.HTML()
        self.cells: list[widgets.Button] = []  # one button per cell of the explorer's map: a click picks the cell
        self.grid = widgets.GridBox()
        self.pictures = {name: widgets.Image(format="png") for name in ("map", "cell")}
        self.images: dict[str, bytes] = {}
        self.run: RuleRun | None = None
        self.cell: int | None = None
        self._showing = False
        self.active = False
        self.rule.observe(lambda change: self.choose(change["new"]), names="value")
        self.step.observe(lambda _: self._showing or self.draw(), names="value")
        explorer.on_retrain(lambda: self.active and self.show())
        if active:
            self.activate()

    def activate(self) -> None:
        """Record the chosen rule's fields from now on, and show them."""
        self.active = True
        self.choose(self.rule.value)

    def choose(self, algo: str) -> None:
        """Show ``algo``'s fields (recorded from the explorer's next training on)."""
        if self.active:
            self.explorer.update_rules = {algo}
            self.show()

    def show(self) -> None:
        """The chosen rule's run on the explorer's map, at the recorded step shown before if it still is one (else
        the first); a rule or policy without update fields says why."""
        explorer, algo = self.explorer, self.rule.value
        if explorer.model is None:
            return
        run = explorer.runs.get(algo)
        if run is None or not (run.fields or run.skipped or run.fields_skipped):
            config = explorer.config((algo,))
            self.status.value = f"<i>training {algo} with its update fields…</i>"
            run = train_rules(explorer.model, config, explorer.every, explorer.cache, explorer.pool,
                              explorer.fields(config.steps))[algo]  # fmt: skip
        self.run = run
        self._draw_grid()
        reason = run.skipped or run.fields_skipped
        if reason:
            self.status.value = _error(ValueError(reason))
            self.images = {}
            for picture in self.pictures.values():
                picture.value = b""
            return
        steps = sorted(run.fields)
        self._showing = True
        try:
            shown = self.step.value
            self.step.options = steps
            self.step.value = shown if shown in steps else steps[0]
        finally:
            self._showing = False
        self.draw()

    def pick(self, cell: int) -> None:
        """A click on ``cell``: show which training cells moved it."""
        model = self.explorer.model
        if model is None or isinstance(cell, bool) or not isinstance(cell, int | np.integer) or \
                not 0 <= cell < model.n_states:  # fmt: skip
            cells = "no map yet" if model is None else f"an integer 0 <= cell < {model.n_states}"
            raise IndexError(f"cell={_cut(repr(cell))} is not a cell of the map: expected {cells}")
        self.cell = int(cell)
        self._draw_grid()
        self.draw()

    def _draw_grid(self) -> None:
        model = self.explorer.model
        if self.cell is not None and self.cell >= model.n_states:
            self.cell = None
        show_cells(self.grid, self.cells, model.desc, self.pick, "show which training cells moved this cell", self.cell)

    def draw(self) -> None:
        """The update map at the chosen step and, for the picked cell, what moved it."""
        model, run = self.explorer.model, self.run
        if model is None or run is None or not run.fields:
            return
        field = run.fields[self.step.value]
        self.images = {"map": figure_png(draw_update_map(field, model))}
        if self.cell is not None:
            self.images["cell"] = figure_png(draw_cell_sources(field, model, self.cell))
        for name, picture in self.pictures.items():
            picture.value = self.images.get(name, b"")
        moved = "click a cell to see which training cells moved it"
        if self.cell is not None:
            own = field.moved_by(self.cell).own_share()
            moved = f"cell {self.cell}: {100 * own:.0f}% of its change from its own loss"
        self.status.value = f"{self.rule.value}, the step taken at step {self.step.value}; {moved}"

    @property
    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.rule, self.step]), self.status,
                             widgets.HBox([self.grid, self.pictures["map"]]), self.pictures["cell"]])  # fmt: skip


def show_cells(
    grid: widgets.GridBox,
    cells: list[widgets.Button],
    rows: Sequence[str],
    click: Callable[[int], None],
    tooltip: str | None = None,
    picked: int | None = None,
) -> None:
    """The map ``rows`` as buttons in ``grid``, one per cell (``cells``, made as a map needs them; a click on cell
    ``i`` calls ``click(i)``): S and G lettered, frozen and hole cells blank, each in its tile's colour, the
    ``picked`` cell in green."""
    ncol, n = len(rows[0]), len(rows) * len(rows[0])
    while len(cells) < n:
        index = len(cells)
        cell = widgets.Button(layout=widgets.Layout(width="34px", height="34px", padding="0"), tooltip=tooltip)
        cell.on_click(lambda _, i=index: click(i))
        cells.append(cell)
    for index, cell in enumerate(cells[:n]):
        tile = rows[index // ncol][index % ncol]
        cell.description = tile if tile in "SG" else BLANK
        cell.style.button_color = PICKED if index == picked else TILE_COLOURS.get(tile, "#ffffff")
    grid.children = cells[:n]
    grid.layout = widgets.Layout(grid_template_columns=f"repeat({ncol}, 36px)", grid_gap="2px")


def _error(err: Exception) -> str:
    from html import escape

    return f"<span style='color:#b00020'>{escape(str(err))}</span>"


class EpisodePlayer:
    """Step through one rollout of a trained policy (play, pause, step): the agent on the map and the action
    probabilities of its cell."""

    def __init__(self, model: FrozenLakeMDP, policy: np.ndarray, seed: int = 0, max_steps: int = 100,
                 label: str = "") -> None:  # fmt: skip
        self.seed, self.max_steps = seed, max_steps
        self.play = widgets.Play(value=0, min=0, max=0, interval=600, description="play")
        self.step = widgets.IntSlider(value=0, min=0, max=0, description="step")
        widgets.jslink((self.play, "value"), (self.step, "value"))
        self.picture = widgets.Image(format="png")
        self.step.observe(lambda _: self.draw(), names="value")
        self.show(model, policy, label)

    def show(self, model: FrozenLakeMDP, policy: np.ndarray, label: str = "") -> None:
        """A new rollout of ``policy`` on ``model`` (the same seed), shown from its first step."""
        policy = np.asarray(policy, dtype=float)
        self.model, self.policy = model, policy / policy.sum(-1, keepdims=True)  # float32 rows, renormalised
        self.label = label
        self.states = [*model.rollout(self.policy, rng=self.seed, max_steps=self.max_steps).states]
        redraw = self.step.value == 0  # otherwise moving the slider to 0 redraws
        self.play.value = 0
        self.step.value = 0
        self.play.max = self.step.max = len(self.states) - 1
        if redraw:
            self.draw()

    @classmethod
    def following(cls, explorer: FrozenLakeExplorer, algo: str = "ift", seed: int = 0) -> EpisodePlayer:
        """A player of ``algo``'s first seed (or the first rule trained, if ``algo`` is not) on ``explorer``'s
        map, showing a new episode whenever the explorer retrains."""

        def current() -> tuple[FrozenLakeMDP, np.ndarray, str]:
            name, run = explorer.trained(algo)
            return explorer.model, run.snapshots[-1][0], f"{name}, seed 0"

        player = cls(*current()[:2], seed=seed, label=current()[2])
        explorer.on_retrain(lambda: player.show(*current()))
        return player

    def draw(self) -> None:
        """The map with the agent at the current step, and its cell's action probabilities."""
        from matplotlib.figure import Figure

        from iftgym.explain.canvas import draw_arrows, draw_tiles

        state = self.states[self.step.value]
        fig = Figure(figsize=(7, 3.2), layout="constrained")
        grid, bars = fig.subplots(1, 2, width_ratios=[1, 1])
        grid.imshow(np.ones((self.model.nrow, self.model.ncol, 3)), zorder=0)
        draw_tiles(grid, self.model)
        draw_arrows(grid, self.model, self.policy)
        row, col = divmod(state, self.model.ncol)
        grid.scatter([col], [row], s=180, color="#d1495b", zorder=5)
        grid.set_title(f"{self.label + ': ' if self.label else ''}step {self.step.value}: cell {state} "
                       f"({self.model.tile(state)})")  # fmt: skip
        bars.bar(ACTION_NAMES, self.policy[state], color="#5b8fd1")
        bars.set(ylim=(0, 1), title="action probabilities here")
        self.picture.value = figure_png(fig, tight=False)  # laid out (constrained): drawn once, not twice

    @property
    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.play, self.step]), self.picture])


class BiasExplorer:
    """Along the optimal demonstration, at any kept training step: SFT's teacher-forced estimate, IFT's, and the
    exact on-policy probability, with the log-bias and the accumulated prefix loss; a button runs the Monte Carlo
    check and shows its intervals."""

    def __init__(self, model: FrozenLakeMDP, run: RuleRun, lam: float = 0.2, label: str = "") -> None:
        self.step = _slider(widgets.SelectionSlider, "training step", options=run.steps, value=run.steps[-1])
        self.check = widgets.Button(description="Monte Carlo check")
        self.picture = widgets.Image(format="png")
        self.intervals = widgets.HTML()
        self.estimates: dict[str, np.ndarray] = {}
        self._showing = False
        self.step.observe(lambda _: self._showing or self.draw(), names="value")
        self.check.on_click(lambda _: self.monte_carlo())
        self.show(model, run, lam, label)

    def show(self, model: FrozenLakeMDP, run: RuleRun, lam: float = 0.2, label: str = "") -> None:
        """``run``'s policies on ``model``, at the step shown before if it is still kept and was not the last (a change
        of lambda can then be compared at an early step), else the last; the Monte Carlo intervals of the last ones
        are cleared."""
        shown = self.step.value if self.step.value != self.step.options[-1] else None  # the last: follow it
        self.model, self.run, self.lam, self.label = model, run, lam, label
        self.demo = model.optimal_demonstration()
        self._showing = True
        try:
            self.step.options = run.steps
            self.step.value = shown if shown in run.steps else run.steps[-1]
        finally:
            self._showing = False
        self.intervals.value = ""
        self.draw()

    @classmethod
    def following(cls, explorer: FrozenLakeExplorer, algo: str = "sft") -> BiasExplorer:
        """A bias explorer of ``algo``'s run (or the first rule trained, if ``algo`` is not) on ``explorer``'s map,
        with IFT's lambda from the explorer's slider, shown anew whenever the explorer retrains."""

        def current() -> tuple[FrozenLakeMDP, RuleRun, float, str]:
            name, run = explorer.trained(algo)
            return explorer.model, run, explorer.controls["lam"].value, name

        bias = cls(*current())
        explorer.on_retrain(lambda: bias.show(*current()))
        return bias

    def draw(self) -> None:
        """The three estimates (mean over seeds) at each step of the demonstration, and the log-bias."""
        from matplotlib.figure import Figure

        policy = self.run.at(self.step.value)
        self.estimates = {
            "teacher-forced (SFT)": teacher_forced(policy, self.model, self.demo),
            "IFT": ift_estimate(policy, self.model, self.demo, lam=self.lam),
            "exact on-policy": on_policy_exact(policy, self.model, self.demo),
        }
        losses = -np.log(self.estimates["teacher-forced (SFT)"])
        prefix = np.cumsum(losses, axis=-1) - losses
        fig = Figure(figsize=(9, 3.2), layout="constrained")
        probs, bias = fig.subplots(1, 2)
        for name, values in self.estimates.items():
            probs.plot(values.mean(0), marker="o", label=name)
        probs.set(xlabel="demonstration step", ylabel="probability of the demonstrated action", ylim=(0, 1.02))
        probs.legend(fontsize=8)
        log_bias = np.log(self.estimates["teacher-forced (SFT)"]) - np.log(self.estimates["exact on-policy"])
        bias.plot(log_bias.mean(0), marker="o", label="SFT's log-bias")
        bias.plot(prefix.mean(0), ls="--", label="accumulated prefix loss")
        bias.set(xlabel="demonstration step",
                 title=f"{self.label + ', ' if self.label else ''}training step {self.step.value}")  # fmt: skip
        bias.legend(fontsize=8)
        self.picture.value = figure_png(fig, tight=False)  # laid out (constrained): drawn once, not twice

    def monte_carlo(self, episodes: int = 2000) -> None:
        """Estimate the on-policy probabilities from the policy's own rollouts, with 95% intervals per step."""
        estimate = monte_carlo(self.run.at(self.step.value), self.model, self.demo, n_episodes=episodes)
        low, high = estimate.bounds()
        exact = self.estimates["exact on-policy"]
        inside = ((low <= exact + 1e-12) & (exact <= high + 1e-12)).mean()
        first = zip(estimate.mean[0], low[0], high[0], exact[0])
        rows = "".join(f"<tr><td>{t}</td><td>{m:.3f}</td><td>[{lo:.3f}, {hi:.3f}]</td><td>{e:.3f}</td></tr>"
                       for t, (m, lo, hi, e) in enumerate(first))  # fmt: skip
        self.intervals.value = (f"<b>Monte Carlo, {episodes} rollouts (seed 0 shown; exact inside the interval at "
                                f"{inside:.0%} of steps and seeds)</b><table><tr><th>step</th><th>estimate</th>"
                                f"<th>95% interval</th><th>exact</th></tr>{rows}</table>")  # fmt: skip

    @property
    def widget(self) -> widgets.Widget:
        return widgets.VBox([widgets.HBox([self.step, self.check]), self.picture, self.intervals])
