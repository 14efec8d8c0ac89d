"""Fixtures shared by the update rules' tests: the paper map's preference pair, random generators and gradients,
hand-made tabular policies and batches, and the checks every rule's file runs on its own recipe (every policy kind
in both worlds, seed independence, a run on the 4x4 map, bad settings refused).

The checks are plain functions handed out by fixtures (``def test_...(learns_on_4x4): learns_on_4x4("dft", ...)``),
as the suite's tests import no helper module; each asserts what every rule must pass and returns what the rule's
own test goes on to check."""

from __future__ import annotations

import pytest
import torch

from iftgym import FrozenLakeMDP, PairBatch, PreferencePair, TrainConfig, train
from iftgym.policies import GRUPolicy, HFPolicy, MLPPolicy, TabularPolicy, TinyGPT
from iftgym.rules import make_rule
from iftgym.types import StepBatch
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.tasks import AdditionTask


@pytest.fixture(scope="module")
def pairs(paper: FrozenLakeMDP) -> PairBatch:
    return PairBatch.from_pairs(
        paper, [PreferencePair(paper.optimal_demonstration(), paper.suboptimal_demonstration())]
    )


def make_generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_generators(policy: MLPPolicy, seed: int = 0) -> list[torch.Generator]:
    """One generator per seed of ``policy``, as the training loop hands a rule."""
    return seed_generators(seed, policy.seeds)


def parameter_grads(policy, loss: torch.Tensor) -> list[torch.Tensor]:
    """The gradient of ``loss`` (summed over seeds) with respect to every parameter of ``policy``."""
    return list(torch.autograd.grad(loss.sum(), list(policy.parameters())))


@pytest.fixture
def generator():
    """``generator(seed=0)``: a fresh torch generator seeded with ``seed``."""
    return make_generator


@pytest.fixture
def generators():
    """``generators(policy, seed=0)``: one generator per seed of ``policy``, as the training loop hands a rule."""
    return make_generators


@pytest.fixture
def grads():
    """``grads(policy, loss)``: the gradient of ``loss`` (summed over seeds) for every parameter of ``policy``."""
    return parameter_grads


# -- hand-made policies and batches ----------------------------------------------------------------------------------


def make_tabular(rows: list[list[float]], seeds: int = 1) -> TabularPolicy:
    """A tabular policy whose logits are ``rows`` (one row per input id) for each of its ``seeds`` seeds."""
    policy = TabularPolicy(len(rows), len(rows[0]), seeds=seeds)
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([rows] * seeds))
    return policy


def make_step_batch(ids: list[list[int]], actions: list[list[int]], mask: list[list[bool]]) -> StepBatch:
    """A batch of the given input ids, actions and mask ``(B, T)``, with zero rewards."""
    ids_t = torch.tensor(ids)
    return StepBatch(ids_t, torch.tensor(actions), torch.tensor(mask), torch.zeros(ids_t.shape))


def average_token_losses(tokens: list[list[float]], average: str) -> float:
    """Hand-computed token losses ``tokens`` (a list per sequence) averaged as a rule's ``average`` says: each
    sequence's mean, then the mean over sequences ("sequence"), or their sum over the number of tokens ("token",
    TRL's and the papers' official code's)."""
    if average == "sequence":
        return sum(sum(t) / len(t) for t in tokens) / len(tokens)
    return sum(map(sum, tokens)) / sum(map(len, tokens))


def make_moved_rule(name: str, start: list[list[float]], rows: list[list[float]], collect: bool = False):
    """``(rule, policy)``: the rule ``name`` set up (and, with ``collect``, collected at step 0) on a tabular policy
    with logits ``start``, then the policy moved to ``rows``; what the rule froze at the stage's start (its reference
    or its old policy) keeps ``start``."""
    policy = make_tabular(start)
    rule = make_rule(name)
    rule.setup(policy, None, seed_generators(0, policy.seeds))
    if collect:
        rule.collect(policy, 0)
    with torch.no_grad():
        policy.logits.copy_(torch.tensor([rows]))
    return rule, policy


def make_rule_at_start(name: str, **settings):
    """``(rule, policy, demos)``: the rule ``name`` with ``settings`` set up, as a stage starts, on a two-seed MLP
    policy on the 4x4 map, and the map's 3 demonstrations."""
    world = FrozenLakeMDP.from_map("4x4")
    policy = MLPPolicy(world.n_states, 4, hidden=8, seeds=2)
    rule = make_rule(name, **settings)
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    return rule, policy, world.training_data(n_demos=3).demos


@pytest.fixture
def tabular():
    """``tabular(rows, seeds=1)``: a tabular policy whose logits are ``rows`` for every seed."""
    return make_tabular


@pytest.fixture
def step_batch():
    """``step_batch(ids, actions, mask)``: a hand-made batch with zero rewards."""
    return make_step_batch


@pytest.fixture
def hand_average():
    """``hand_average(tokens, average)``: hand-computed token losses (a list per sequence) averaged per sequence then
    over sequences ("sequence") or over every token ("token")."""
    return average_token_losses


@pytest.fixture
def moved_rule():
    """``moved_rule(name, start, rows, collect=False)``: the rule set up on logits ``start``, the policy then moved
    to ``rows``."""
    return make_moved_rule


@pytest.fixture
def rule_at_start():
    """``rule_at_start(name, **settings)``: ``(rule, policy, demos)``, the rule set up on a fresh MLP policy on the
    4x4 map, and its demonstrations."""
    return make_rule_at_start


# -- every policy kind in both worlds --------------------------------------------------------------------------------


def make_grid_policy(kind: str, world: FrozenLakeMDP):
    """A two-seed grid policy of ``kind``: "tabular", "mlp" or "gru" (hidden size 8)."""
    if kind == "tabular":
        return TabularPolicy(world.n_states, 4, seeds=2)
    if kind == "mlp":
        return MLPPolicy(world.n_states, 4, hidden=8, seeds=2)
    return GRUPolicy(world.n_states, 4, hidden=8, seeds=2)


def make_token_policy(kind: str, world: TokenWorld):
    """A tiny two-seed token policy of ``kind`` on the CPU: "tiny-gpt", "gru" or "hf" (a one-layer GPT-2)."""
    if kind == "tiny-gpt":
        return TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=2, device="cpu")
    if kind == "gru":
        return GRUPolicy(world.n_ids, world.n_actions, hidden=16, seeds=2)
    config = {"model_type": "gpt2", "vocab_size": world.n_ids, "n_positions": 32, "n_embd": 16, "n_layer": 1,
              "n_head": 2, "bos_token_id": world.tokenizer.bos_id, "eos_token_id": world.eos}  # fmt: skip
    return HFPolicy(config, seeds=2, device="cpu")


def addition_world() -> TokenWorld:
    """One-digit addition: 40 training and 10 test prompts."""
    return TokenWorld(AdditionTask(digits=1, n_train=40, n_test=10, seed=1))


def assert_finite_loss(result) -> None:
    assert torch.isfinite(torch.tensor(result.history["loss"])).all()


def train_grid(kind: str, recipe, steps: int):
    """``recipe`` (a rule, a name or stages "a+b") trains a two-seed ``kind`` policy for ``steps`` steps on the
    slippery 4x4 map; every logged loss is finite. Returns the run's result."""
    world = FrozenLakeMDP.from_map("4x4", slippery=True)
    result = train(make_grid_policy(kind, world), recipe, world, config=TrainConfig(steps=steps))
    assert_finite_loss(result)
    return result


def train_tokens(kind: str, recipe, steps: int = 2, **config):
    """``recipe`` trains a two-seed ``kind`` policy for ``steps`` steps (``config``: more of
    :class:`TrainConfig`'s settings) on one-digit addition; every logged loss is finite. Returns the run's result."""
    world = addition_world()
    result = train(make_token_policy(kind, world), recipe, world, config=TrainConfig(steps=steps, **config))
    assert_finite_loss(result)
    return result


@pytest.fixture
def grid_run():
    """``grid_run(kind, recipe, steps)``: the result of ``recipe`` training a two-seed ``kind`` policy ("tabular",
    "mlp", "gru") on the slippery 4x4 map, its losses checked finite."""
    return train_grid


@pytest.fixture
def token_run():
    """``token_run(kind, recipe, steps=2, **config)``: the result of ``recipe`` training a two-seed ``kind`` policy
    ("tiny-gpt", "gru", "hf") on one-digit addition, its losses checked finite."""
    return train_tokens


# -- seed independence -----------------------------------------------------------------------------------------------


def check_seed_independent(recipe, lr: float = 1e-2, slippery: bool = False, atol: float = 1e-6) -> None:
    """Seed 7 of an MLP policy trains the same alone as beside seeds 3 and 9: 20 steps of ``recipe`` at ``lr`` on
    the 4x4 map's 3 demonstrations (one a minibatch), the same action probabilities up to ``atol``."""
    world = FrozenLakeMDP.from_map("4x4", slippery=slippery)
    config = TrainConfig(steps=20, lr=lr, batch_size=1, seed=1)
    data = world.training_data(n_demos=3)
    alone = MLPPolicy(world.n_states, 4, hidden=16, seeds=[7])
    together = MLPPolicy(world.n_states, 4, hidden=16, seeds=[3, 7, 9])
    train(alone, recipe, world, data, config)
    train(together, recipe, world, data, config)
    torch.testing.assert_close(alone.action_probs()[0], together.action_probs()[1], rtol=0, atol=atol)


def check_seed_independent_on_tokens(name: str, **settings) -> None:
    """Seed 5 of a TinyGPT trains the same alone as beside seeds 2 and 11: 4 steps of the rule ``name`` (built
    afresh with ``settings`` for each run) on one-digit addition, every logged history the same."""
    world = addition_world()
    config = TrainConfig(steps=4, lr=1e-2, seed=2)
    histories = []
    for seeds in ([5], [2, 5, 11]):
        policy = TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=seeds, device="cpu")
        result = train(policy, make_rule(name, **settings), world, config=config)
        histories.append({key: values[:, seeds.index(5)] for key, values in result.history.items()})
    alone, together = histories
    for key in alone:
        torch.testing.assert_close(torch.tensor(alone[key]), torch.tensor(together[key]), rtol=1e-4, atol=1e-5)


@pytest.fixture
def seed_independent():
    """``seed_independent(recipe, lr=1e-2, slippery=False, atol=1e-6)``: asserts that seed 7 trains the same alone
    as beside other seeds on the 4x4 map's demonstrations."""
    return check_seed_independent


@pytest.fixture
def seed_independent_on_tokens():
    """``seed_independent_on_tokens(name, **settings)``: asserts that seed 5 trains the same alone as beside other
    seeds in the token world, in every logged number."""
    return check_seed_independent_on_tokens


# -- a run that learns, and bad settings -----------------------------------------------------------------------------


def check_learns_on_4x4(
    recipe,
    *,
    steps: int = 100,
    lr: float = 0.1,
    lowers: str | None = None,
    raises: str | None = None,
    success_above: float | None = None,
) -> dict:
    """``recipe`` trains two tabular seeds on the 4x4 map for ``steps`` steps at ``lr``: each seed's success rate
    rises by more than 0.5 (and ends above ``success_above``), the logged ``lowers`` ends below its first value,
    the logged ``raises`` averages higher over the last 10 steps than over the first 10. Returns the history."""
    world = FrozenLakeMDP.from_map("4x4")
    policy = TabularPolicy(world.n_states, 4, seeds=2)
    before = world.scores(policy, ["success"])["success"]
    history = train(policy, recipe, world, config=TrainConfig(steps=steps, lr=lr)).history
    after = world.scores(policy, ["success"])["success"]
    assert (after > before + 0.5).all()
    if success_above is not None:
        assert (after > success_above).all()
    if lowers is not None:
        assert (history[lowers][-1] < history[lowers][0]).all()
    if raises is not None:
        assert (history[raises][-10:].mean(0) > history[raises][:10].mean(0)).all()
    return history


def check_refused(name: str, settings: dict, message: str) -> None:
    """The rule ``name`` with ``settings`` is refused with one ``ValueError`` matching ``message``."""
    with pytest.raises(ValueError, match=message):
        make_rule(name, **settings)


@pytest.fixture
def learns_on_4x4():
    """``learns_on_4x4(recipe, *, steps=100, lr=0.1, lowers=None, raises=None, success_above=None)``: asserts a
    run on the 4x4 map raises success by more than 0.5 (and the named logged values fall or rise); the history."""
    return check_learns_on_4x4


@pytest.fixture
def refused():
    """``refused(name, settings, message)``: asserts ``make_rule(name, **settings)`` raises ``ValueError`` matching
    ``message``."""
    return check_refused
