"""One experiment's settings, declared once: :class:`CompareConfig` holds every setting of a comparison in any
world — the shared ones (algorithms, seeds, steps, learning rate, policy), Frozen Lake's (maps, dynamics), the token
world's (task, tokenizer, model) and a plugin world's (``world_args``) — each a :func:`iftgym.settings.setting`
with its help text, bounds, choices and world. ``iftgym compare``'s and ``iftgym lm``'s flags, the sweep axes and the
checks are generated from these fields; a setting of another world than the one that runs is refused.

Settings whose best value depends on the world (``algos``, ``steps``, ``lr``, ``batch_size``, ``eval_every``,
``policy``) default to ``None`` and take their world's default (:data:`WORLD_DEFAULTS`) when the config is built.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from iftgym.io import read_json
from iftgym.registry import load_plugin
from iftgym.settings import check_settings, default_of, setting, settings_of
from iftgym.validate import BUDGETS, MAX_GRAD_ACCUM, MAX_SEEDS, MAX_SIDE, MAX_STEPS, one_of

if TYPE_CHECKING:
    from iftgym.loop import Stage, TrainConfig

# this module is read to build the command line's flags, so it imports nothing heavy (torch) at the top: the
# checks import what they need

FROZEN_LAKE, TOKENS = "frozen-lake", "tokens"
SB3 = "sb3-ppo"  # Stable-Baselines3's PPO on Frozen Lake: an external baseline row, not a rule
GRID_POLICIES, TOKEN_POLICIES = ("mlp", "gru", "tabular"), ("tiny-gpt", "hf")
MAX_RANDOM_MAPS = 10_000
# rows every comparison carries beside its algorithms: what "not training" (and, on the grid, "copying the data")
# scores
REFERENCES = {FROZEN_LAKE: ("uniform", "untrained", "demo-copy"), TOKENS: ("uniform", "untrained")}
GENERIC_REFERENCES = ("uniform", "untrained")
WORLD_DEFAULTS: dict[str, dict[str, Any]] = {
    FROZEN_LAKE: {"algos": ["sft", "ift", "dpo", "orpo", "ppo", SB3], "steps": 300, "lr": 1e-2, "eval_every": 10,
                  "policy": "mlp"},
    TOKENS: {"algos": ["sft", "ift"], "steps": 1500, "lr": 3e-3, "batch_size": 64, "policy": "tiny-gpt"},
    # a plugin world: every built-in rule that needs no more than the World contract gives
    None: {"algos": ["sft", "ift", "dpo", "orpo", "ppo"], "steps": 300, "lr": 1e-2, "eval_every": 10,
           "policy": "mlp"},
}  # fmt: skip


@dataclass
class CompareConfig:
    """Everything that defines a comparison, in any world; saved in ``results.json`` so the run can be repeated.

    ``algos`` are rule names, variants (``"ift(lam=0)"``), recipes (``"sft+ppo"``) or, on Frozen Lake, ``"sb3-ppo"``;
    ``rule_overrides`` set rule hyper-parameters by rule name (``{"ift": {"lam": 0.3}}``) and ``stage_lrs`` the
    learning rate of a rule's stage (default ``lr``). ``baseline`` is the row every other row is compared with,
    seed by seed (default: ``sft`` when it runs, else the first algorithm); a reference row may be named.
    """

    world: str = setting(FROZEN_LAKE, "the world every rule trains in: frozen-lake, tokens or a registered plugin "
                         "world (--plugin)")  # fmt: skip
    algos: list[str] = setting([], "comma-separated rule names, variants such as ift(lam=0), or recipes (a+b: one "
                               "rule after the other), from the registered rules, or sb3-ppo on frozen-lake "
                               "(default: the world's)", flag="--algos", metavar="ALGOS")  # fmt: skip
    seeds: int = setting(20, "seeds per algorithm, trained batched as one model", low=1, high=MAX_SEEDS)
    steps: int | None = setting(None, "optimiser steps per algorithm (default: the world's: 300 on frozen-lake, 1500 "
                                "on tokens)", low=1, high=MAX_STEPS)  # fmt: skip
    lr: float | None = setting(None, "Adam learning rate (default: the world's: 0.01 on frozen-lake, 0.003 on tokens)",
                               low=0, include_low=False)  # fmt: skip
    batch_size: int | None = setting(None, "demonstrations or pairs per step (default: all on frozen-lake, 64 on "
                                     "tokens)", low=1)  # fmt: skip
    grad_accum: int = setting(1, "micro-batches each step's demonstrations or pairs are split into, their gradients "
                              "added before the one optimiser step (the same step: token averages stay exact)",
                              low=1, high=MAX_GRAD_ACCUM)  # fmt: skip
    budget: str = setting("steps", "what every algorithm gets the same amount of: optimiser steps (--steps each), "
                          "token passes or seconds of training (the baseline trains --steps steps first; its spend is "
                          "every other algorithm's budget)", choices=BUDGETS)  # fmt: skip
    seed: int = setting(0, "seed of data order, rollouts and sampling", low=0)
    eval_every: int | None = setting(None, "steps between evaluations for the curves (0: only at the end; default: "
                                     "the world's: 10 on frozen-lake, steps // 10 on tokens)", low=0)  # fmt: skip
    policy: str | None = setting(None, "the policy every rule trains (default: the world's: mlp on frozen-lake, "
                                 "tiny-gpt on tokens, hf with --model-config or --pretrained)")  # fmt: skip
    hidden: int = setting(64, "hidden width of the mlp and gru policies", low=1)
    baseline: str | None = setting(None, "the row every other row is compared with, seed by seed (default: sft when "
                                   "it runs, else the first algorithm; a reference row may be named)")  # fmt: skip
    rule_overrides: dict[str, dict[str, Any]] = setting({}, "rule hyper-parameters by rule", cli=False)
    stage_lrs: dict[str, float] = setting({}, "learning rate of a rule's stage by rule", cli=False)
    plugins: list[str] = setting([], "Python files or modules imported first, in every process", cli=False)
    world_args: dict[str, Any] = setting({}, "a plugin world's settings (its factory's keyword arguments)",
                                         flag="--world-arg", metavar="KEY=VALUE")  # fmt: skip
    # Frozen Lake
    maps: list[str] = setting(["paper"], "catalogue names or map files", world=FROZEN_LAKE, flag="--map",
                                metavar="MAP")  # fmt: skip
    gamma: float = setting(0.95, "exact solver's discount", low=0, high=1, include_high=False, world=FROZEN_LAKE)
    slippery: bool = setting(False, "Gymnasium's is_slippery dynamics", world=FROZEN_LAKE)
    success_rate: float = setting(1 / 3, "intended-move probability with --slippery", low=0, high=1,
                                  include_low=False, world=FROZEN_LAKE)  # fmt: skip
    demos: int = setting(1, "demonstrations (and pairs) sampled per map", low=1, high=10_000, world=FROZEN_LAKE)
    sb3_timesteps: int = setting(5000, "environment steps per SB3 PPO seed, with sb3-ppo in --algos", low=1,
                                 world=FROZEN_LAKE)  # fmt: skip
    random_maps: int = setting(0, "compare on N random maps instead of --map", low=0, high=MAX_RANDOM_MAPS,
                               world=FROZEN_LAKE)  # fmt: skip
    size: int = setting(6, "side of the random maps", low=2, high=MAX_SIDE, world=FROZEN_LAKE)
    p_hole: float = setting(0.25, "hole rate of the random maps", low=0, high=1, include_high=False,
                            world=FROZEN_LAKE)  # fmt: skip
    update_maps: bool = setting(False, "take each algorithm's next optimiser step at steps 0, steps // 2 and steps, "
                                "for every seed, with the live optimiser: on frozen-lake its update field (what it "
                                "does to log pi(a|s) in every cell, split by the cell whose loss moved it; numbers and "
                                "cosines between rules in results.json and a table, maps in OUT/<map>-update.png; "
                                "tabular and mlp policies), on tokens its update strips (the most raised and lowered "
                                "tokens at each answer position of the first training prompt and each position's loss "
                                "weight, in results.json and OUT/<task>-update.png)")  # fmt: skip
    # the token world
    task: str = setting("addition", "the token task (addition, sort, frozen-lake as text, jsonl with --data, or a "
                        "registered one)", world=TOKENS)  # fmt: skip
    data: str | None = setting(None, "a JSONL file in a TRL format (task jsonl), or a shipped sample's name",
                               world=TOKENS, metavar="FILE.jsonl")  # fmt: skip
    task_args: dict[str, Any] = setting({}, "a task option, e.g. digits=2 or size=4", world=TOKENS,
                                        flag="--task-arg", metavar="KEY=VALUE")  # fmt: skip
    n_train: int | None = setting(None, "training prompts of a generated task", low=1, world=TOKENS,
                                  flag="--train-size")  # fmt: skip
    n_test: int | None = setting(None, "held-out prompts of a generated task", low=1, world=TOKENS,
                                 flag="--test-size")  # fmt: skip
    reward: str = setting("end", "end (the task's reward at the end) or token (per-token prefix match)",
                          world=TOKENS)  # fmt: skip
    tokenizer: str | None = setting(None, "a saved tokenizer folder (default: the pretrained folder's, else "
                                    "characters)", world=TOKENS, metavar="DIR")  # fmt: skip
    n_layer: int = setting(2, "TinyGPT layers", low=1, world=TOKENS)
    n_head: int = setting(4, "TinyGPT attention heads", low=1, world=TOKENS)
    n_embd: int = setting(64, "TinyGPT width", low=1, world=TOKENS)
    model_config: dict[str, Any] | str | None = setting(None, "a Hugging Face config (JSON with its model_type) to "
                                                        "build the model from", world=TOKENS,
                                                        metavar="FILE.json")  # fmt: skip
    pretrained: str | None = setting(None, "a local Hugging Face model folder to start from", world=TOKENS,
                                     metavar="DIR")  # fmt: skip
    device: str = setting("auto", "auto, cpu, cuda or cuda:N", world=TOKENS)
    strips: int = setting(3, "held-out prompts drawn as preference strips", low=0, world=TOKENS)
    # The policies are tiny: torch's per-op threading overhead outweighs its gain (see benchmarks/).
    threads: int = setting(1, "math threads per process", low=1, cli=False)

    def __post_init__(self) -> None:
        from iftgym.worlds.registry import WORLDS

        for plugin in self.plugins:  # before the names they register are looked up
            load_plugin(plugin)
        if self.world not in WORLDS:
            raise ValueError(f"unknown world {self.world!r}: expected one of {', '.join(WORLDS.names())}")
        defaults = WORLD_DEFAULTS.get(self.world, WORLD_DEFAULTS[None])
        if self.world == TOKENS and (self.model_config is not None or self.pretrained is not None):
            defaults = {**defaults, "policy": "hf"}
        for name in ("steps", "lr", "batch_size", "policy"):
            if getattr(self, name) is None:
                setattr(self, name, defaults.get(name))
        if self.eval_every is None:  # the world's, else ten points on each curve
            self.eval_every = defaults.get("eval_every", max(1, (self.steps or 1) // 10))
        if not self.algos:
            self.algos = list(defaults["algos"])
        self._refuse_other_worlds_settings()
        check_settings(self, skip=("model_config",))
        self._check_shared()
        if self.world == FROZEN_LAKE:
            self._check_frozen_lake()
        elif self.world == TOKENS:
            self._check_tokens()

    # -- checks -----------------------------------------------------------------------------------------------------
    def _refuse_other_worlds_settings(self) -> None:
        """A setting of another world than the one that runs could not take effect: refused, naming both."""
        for field in settings_of(type(self)):
            owner = field.metadata["world"]
            if owner is None or owner == self.world:
                continue
            if getattr(self, field.name) != default_of(field):
                raise ValueError(f"{field.name} is a setting of world {owner!r}, not of {self.world!r}: drop it or "
                                 f"run --world {owner}")  # fmt: skip
        if self.world_args and self.world in (FROZEN_LAKE, TOKENS):
            raise ValueError(f"world_args are a plugin world's settings: world {self.world!r} takes its own flags")

    def _check_shared(self) -> None:
        from iftgym.loop import check_algorithms
        from iftgym.policies.registry import POLICY_KINDS

        extra = (SB3,) if self.world == FROZEN_LAKE else ()
        if isinstance(self.algos, str) or not isinstance(self.algos, list | tuple):
            raise ValueError(f"algos={self.algos!r} is {type(self.algos).__name__}: expected a list of rule names")
        check_algorithms(self.algos, self.steps, self.stage_lrs, self.rule_overrides, extra=extra)
        if SB3 in self.algos and self.world != FROZEN_LAKE:
            raise ValueError(f"{SB3} trains on Frozen Lake only: drop it from algos for world {self.world!r}")
        kinds = GRID_POLICIES if self.world != TOKENS else TOKEN_POLICIES
        plugin_kinds = [name for name in POLICY_KINDS.names() if name not in (*GRID_POLICIES, *TOKEN_POLICIES)]
        accepted = [*kinds, *plugin_kinds]
        if self.policy not in accepted:
            raise ValueError(f"policy={self.policy!r} is not supported for world {self.world!r}: expected one of "
                             f"{', '.join(map(repr, accepted))}")  # fmt: skip
        if self.baseline is None:
            self.baseline = "sft" if "sft" in self.algos else self.algos[0]
        rows = [*self.algos, *self.references()]
        if self.baseline not in rows:
            raise ValueError(f"baseline={self.baseline!r} is not supported: expected one of "
                             f"{', '.join(map(repr, rows))}")  # fmt: skip
        if self.world == FROZEN_LAKE or self.world == TOKENS:
            return
        if self.update_maps:
            raise ValueError(f"update_maps=True is for frozen-lake and tokens: world {self.world!r} has no update maps")
        for name in self.world_args:
            if not isinstance(name, str) or not name.isidentifier():
                raise ValueError(f"world setting {name!r} is not a name: expected KEY=VALUE with KEY an identifier")

    def _check_frozen_lake(self) -> None:
        if isinstance(self.maps, str) or not isinstance(self.maps, list | tuple):
            raise ValueError(f"maps={self.maps!r} is {type(self.maps).__name__}: expected a list of map names or files")
        for name in self.maps:
            if not isinstance(name, str) or self.maps.count(name) > 1:
                raise ValueError(f"map {name!r} is listed twice or is not a name: expected distinct map names or files")
        if self.random_maps and list(self.maps) != ["paper"]:
            raise ValueError("maps and random_maps exclude each other: give maps, or a number of random maps")
        if not self.maps and not self.random_maps:
            raise ValueError("no maps given: expected map names or files, or random_maps > 0")
        if self.seeds < 2:
            raise ValueError(f"seeds={self.seeds} is out of range: expected at least 2 (confidence intervals need two)")
        if self.update_maps and self.policy == "gru":
            raise ValueError("update_maps=True needs a Markov policy (tabular or mlp): a gru's next step changes "
                             "log pi(a|s) by history, not by cell, so it has no update map")  # fmt: skip

    def _check_tokens(self) -> None:
        from iftgym.policies.base import resolve_device
        from iftgym.worlds.tokens.tasks import TASKS
        from iftgym.worlds.tokens.world import REWARD_MODES

        one_of("reward", self.reward, REWARD_MODES)
        if self.hidden != CompareConfig.hidden:
            raise ValueError(f"hidden={self.hidden} has no effect on world 'tokens': the width of the token world's "
                             "models is n_embd (TinyGPT) or their own config")  # fmt: skip
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}: expected one of {', '.join(TASKS.names())}")
        if (self.task == "jsonl") != (self.data is not None):
            raise ValueError("task 'jsonl' reads --data FILE.jsonl, and only it does: give both or neither")
        resolve_device(self.device)
        from iftgym.policies.tiny_gpt import TinyGPTConfig

        TinyGPTConfig(1, 1, self.n_layer, self.n_head, self.n_embd)  # its shape checks, in one place
        if self.model_config is not None and self.pretrained is not None:
            raise ValueError("model_config and pretrained both choose the model: expected at most one of them")
        if isinstance(self.model_config, (str, os.PathLike)):
            self.model_config = read_json(self.model_config, "model config")
        if self.model_config is not None and not isinstance(self.model_config, dict):
            raise ValueError(f"model_config is {type(self.model_config).__name__}: expected a JSON object such as "
                             '{"model_type": "gpt2", "n_layer": 2}')  # fmt: skip
        hf = self.model_config is not None or self.pretrained is not None
        if hf != (self.policy == "hf"):
            raise ValueError("policy 'hf' is built from model_config or pretrained, and only it is: give one of them "
                             "with policy hf (the default then), or neither")  # fmt: skip
        for name in ("n_layer", "n_head", "n_embd"):
            if hf and getattr(self, name) != getattr(CompareConfig, name):  # TinyGPT's alone
                model = "model_config" if self.model_config is not None else "pretrained"
                raise ValueError(f"{name}={getattr(self, name)} has no effect with {model}: the Hugging Face model's "
                                 f"own config sets its shape; expected {name} left at its default")  # fmt: skip
        if self.model_config is not None:  # an unknown model type or setting, or too big a model, is refused now
            from iftgym.policies.hf import check_config_memory, model_config

            check_config_memory(model_config(self.model_config), self.seeds)
        for name in ("pretrained", "tokenizer"):
            folder = getattr(self, name)
            if folder is not None and not Path(folder).is_dir():
                raise ValueError(f"{name} folder {folder!r} does not exist: expected a local folder")
        if self.pretrained is not None:
            if not (Path(self.pretrained) / "config.json").is_file():
                raise ValueError(f"pretrained folder {self.pretrained!r} is not a model folder: expected config.json "
                                 "and safetensors weights (written by save_pretrained)")  # fmt: skip
            from iftgym.policies.hf import check_config_memory, pretrained_config

            check_config_memory(pretrained_config(self.pretrained), self.seeds)

    # -- what the run is made of ------------------------------------------------------------------------------------
    def stages(self, algo: str) -> list[Stage]:
        """The stages of one algorithm with this config's steps, learning rates and overrides (parsed from its name
        here, the one place; the trained rules' configs are then the only source of their settings)."""
        from iftgym.loop import make_stages

        return make_stages(algo, self.steps, self.stage_lrs, self.rule_overrides)

    def train_config(
        self, eval_every: int | None = None, progress: bool = False, budget_amount: float | None = None
    ) -> TrainConfig:
        """The training loop's settings for every algorithm of this config (``eval_every``: the config's unless
        given; ``budget_amount``: the token passes or seconds an algorithm may spend, ``None`` for its steps)."""
        from iftgym.loop import TrainConfig

        return TrainConfig(steps=self.steps, lr=self.lr, batch_size=self.batch_size, grad_accum=self.grad_accum,
                           budget=self.budget, budget_amount=budget_amount, seed=self.seed,
                           eval_every=self.eval_every if eval_every is None else eval_every,
                           progress=progress)  # fmt: skip

    def budget_baseline(self) -> str | None:
        """The algorithm whose spend at ``steps`` steps is every other algorithm's budget (the baseline when it is an
        algorithm, else the first); ``None`` when the budget is steps."""
        if self.budget == "steps":
            return None
        return self.baseline if self.baseline in self.algos else self.algos[0]

    def references(self) -> tuple[str, ...]:
        """The reference rows of this config's world."""
        return REFERENCES.get(self.world, GENERIC_REFERENCES)
