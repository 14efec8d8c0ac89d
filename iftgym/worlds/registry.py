"""World names: ``iftgym compare --world NAME`` (and sweeps, the Python API) build a world by name from its settings.

A world joins as a rule does: :func:`register_world` in code or in a ``--plugin`` file, or an entry point in the
group ``iftgym.worlds`` of an installed package. The entry is a *factory*: any callable (a class, a function) whose
keyword parameters are the world's settings and which returns an object with the members of
:class:`iftgym.world.World`. Built in:

* ``frozen-lake``: a catalogue map or map file (``map``), or a random map (``map="random"`` with ``size``,
  ``p_hole`` and ``seed``), deterministic or slippery;
* ``tokens``: every token task (``task``: addition, sort, frozen-lake as text, jsonl with ``data``), with a tokenizer.

:func:`make_world` checks the settings against the factory's parameters and the result against the contract
(:func:`check_world`), so a mistyped setting or a broken plugin is one line naming the world, before any training.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from iftgym.registry import Registry
from iftgym.world import World
from iftgym.worlds.frozen_lake.maps import random_map
from iftgym.worlds.frozen_lake.model import FrozenLakeMDP
from iftgym.worlds.tokens.hf_tokenizer import load_tokenizer
from iftgym.worlds.tokens.tasks import make_task
from iftgym.worlds.tokens.tokenizer import CharTokenizer, describe_characters, unknown_characters
from iftgym.worlds.tokens.world import TokenWorld

WorldFactory = Callable[..., World]
# what check_world asks of every world: attributes, then methods (World's members, docs/design.md §4)
ATTRIBUTES = ("n_ids", "n_actions", "deterministic")
METHODS = ("input_id", "action_name", "successor_probs", "sample", "sample_like", "training_data", "reach_probs",
           "scores")  # fmt: skip


def _check_factory(name: str, factory: object) -> None:
    if not callable(factory):
        raise ValueError(f"world {name!r} must be a callable that returns a world (a class or function), got "
                         f"{type(factory).__name__}")  # fmt: skip


WORLDS: Registry[WorldFactory] = Registry("world", "iftgym.worlds", _check_factory)


def register_world(name: str, factory: WorldFactory, *, replace: bool = False) -> WorldFactory:
    """Make ``factory`` available as ``iftgym compare --world NAME``: ``factory(**settings)`` returns the world, and
    its keyword parameters are the settings (``--world-arg key=value``). Returns ``factory``."""
    return WORLDS.register(name, factory, replace=replace)


def world_names() -> list[str]:
    """Every registered world name, plugins included."""
    return WORLDS.names()


def world_settings(name: str) -> dict[str, Any]:
    """The settings world ``name`` takes and their defaults (``inspect.Parameter.empty`` where it has none)."""
    factory = WORLDS.get(name)
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):  # a callable without a signature: it takes what it takes
        return {}
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {p.name: p.default for p in parameters if p.kind in kinds and p.name != "self"}


def make_world(name: str, **settings: Any) -> World:
    """The world ``name`` built with ``settings``, checked against the World contract; an unknown world, a setting
    it does not take, a factory that fails or returns something that is not a world raise one ``ValueError``
    naming the world."""
    factory = WORLDS.get(name)
    accepted = world_settings(name)
    unknown = sorted(set(settings) - set(accepted))
    if unknown and not _takes_any(factory):
        raise ValueError(f"world {name!r} takes no setting {', '.join(unknown)}: accepted: "
                         f"{', '.join(accepted) or 'none'}")  # fmt: skip
    try:
        world = factory(**settings)
    except ValueError as err:
        raise ValueError(f"world {name!r}: {err}") from None
    except Exception as err:  # a plugin's factory can fail in any way: one line naming the world
        raise ValueError(f"world {name!r} failed to build: {type(err).__name__}: {str(err)[:200]}") from None
    check_world(world, name)
    return world


def _takes_any(factory: WorldFactory) -> bool:
    """Whether ``factory`` takes any keyword (``**settings``, or no signature to read)."""
    try:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return True


def check_world(world: object, name: str) -> None:
    """Refuse an object that lacks a member of the World contract or whose sizes are not positive integers, naming
    the world and the member (what a world's samples must look like is checked once a policy exists:
    :func:`iftgym.experiments.runner.check_world_samples`)."""
    missing = [m for m in ATTRIBUTES if not hasattr(world, m)]
    missing += [m for m in METHODS if not callable(getattr(world, m, None))]
    if missing:
        raise ValueError(f"world {name!r} breaks the World contract: it has no {', '.join(missing)} (docs/design.md "
                         "§4 lists every member)")  # fmt: skip
    for size in ("n_ids", "n_actions"):
        value = getattr(world, size)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"world {name!r} breaks the World contract: {size}={value!r}, expected an integer >= 1")
    if not isinstance(world.deterministic, bool):
        raise ValueError(f"world {name!r} breaks the World contract: deterministic={world.deterministic!r}, "
                         "expected true or false")  # fmt: skip


def frozen_lake(
    map: str = "paper",
    slippery: bool = False,
    success_rate: float = 1 / 3,
    gamma: float = 0.95,
    size: int = 6,
    p_hole: float = 0.25,
    seed: int = 0,
) -> FrozenLakeMDP:
    """A Frozen Lake world: a catalogue map or map file, or ``map="random"``: a random map of side ``size`` with
    holes at rate ``p_hole`` drawn from ``seed`` (always solvable)."""
    return FrozenLakeMDP.from_map(random_map(size, p_hole, seed=seed) if map == "random" else map, slippery,
                                  success_rate, gamma)  # fmt: skip


def tokens(
    task: str = "addition",
    data: str | None = None,
    task_args: dict[str, Any] | None = None,
    n_train: int | None = None,
    n_test: int | None = None,
    tokenizer: str | None = None,
    reward: str = "end",
    vocab_size: int | None = None,
) -> TokenWorld:
    """A token world: the task (``data`` is the JSONL file of task ``jsonl``; ``task_args``, ``n_train`` and
    ``n_test`` go to its constructor), read with the tokenizer saved in the folder ``tokenizer`` (default: the
    characters of the task), rewarded at the ``end`` or per ``token``, with ``vocab_size`` ids when the model's
    vocabulary is larger than the tokenizer's."""
    if (task == "jsonl") != (data is not None):
        raise ValueError("task 'jsonl' reads data=FILE.jsonl, and only it does: give both or neither")
    kwargs = {**(task_args or {}), **({"path": data} if task == "jsonl" else {})}
    kwargs.update({key: value for key, value in (("n_train", n_train), ("n_test", n_test)) if value is not None})
    made = make_task(task, **kwargs)
    if tokenizer is not None and not Path(tokenizer).is_dir():
        raise ValueError(f"tokenizer folder {tokenizer!r} does not exist: expected a local folder")
    if tokenizer is None:
        return TokenWorld(made, reward=reward, tokenizer=CharTokenizer(made.alphabet), vocab_size=vocab_size)
    reader = load_tokenizer(tokenizer)
    lacking = unknown_characters(reader, made.alphabet)
    if lacking:
        source = f"the data file {data!r}" if task == "jsonl" else f"task {task!r}"
        raise ValueError(f"the tokenizer of {tokenizer!r} lacks characters of {source}: "
                         f"{describe_characters(lacking)} (they would become its unknown token): expected a "
                         "tokenizer that covers the data")  # fmt: skip
    return TokenWorld(made, reward=reward, tokenizer=reader, vocab_size=vocab_size)


register_world("frozen-lake", frozen_lake)
register_world("tokens", tokens)
