"""The training loop: every rule and recipe learns, seeds are reproducible and independent, stages take their own
steps and learning rates, and the data must hold what a rule needs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP, StepBatch
from iftgym.loop import Stage, TrainConfig, make_stages, train
from iftgym.policies import MLPPolicy
from iftgym.rules import make_rule, rule_names
from iftgym.rules.common import sequence_logps
from iftgym.types import TrainingData
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld


def mlp(paper: FrozenLakeMDP, seeds=2) -> MLPPolicy:
    return MLPPolicy(paper.n_states, paper.n_actions, hidden=32, seeds=seeds)


def stage_bounds(steps: int, stages: int) -> list[tuple[int, int]]:
    bounds = np.linspace(0, steps, stages + 1).round().astype(int)
    return list(itertools.pairwise(bounds))


# -- every rule learns ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sft", "ift", "dpo", "orpo", "sft+dpo", "sft+orpo", "sft+ift"])
def test_offline_rules_and_recipes_decrease_their_loss(paper: FrozenLakeMDP, data: TrainingData, algorithm: str):
    steps = 40
    result = train(mlp(paper), algorithm, paper, data, TrainConfig(steps=steps))
    loss = result.history["loss"]
    assert loss.shape == (steps, 2)
    for begin, end in stage_bounds(steps, len(algorithm.split("+"))):
        assert (loss[end - 1] < 0.5 * loss[begin]).all(), (algorithm, loss[begin], loss[end - 1])
    if algorithm == "dpo":  # DPO only contrasts chosen with rejected: it need not make the chosen action greedy
        assert (result.history["rewards/accuracies"][-1] == 1).all()
        assert (result.history["rewards/margins"][-1] > 1).all()
    else:  # a likelihood term makes the policy follow the demonstration greedily
        greedy = result.policy.action_probs().argmax(-1)[:, data.demos.ids[0]]
        assert (greedy == data.demos.actions[0]).all()


def test_online_dpo_learns_the_demonstration(paper: FrozenLakeMDP, data: TrainingData) -> None:
    # Online DPO's loss returns to log 2 once the policy's samples *are* the demonstration, so check what it
    # learns instead: the demonstration's log-probability rises, and the loss dipped below log 2 on the way.
    policy = mlp(paper)
    start = sequence_logps(policy, data.demos).detach()
    result = train(policy, "dpo-online", paper, data, TrainConfig(steps=40))
    assert (sequence_logps(policy, data.demos).detach() > start + 2.0).all()
    assert (result.history["loss"].min(0) < np.log(2) - 0.05).all()
    assert (result.history["logps/chosen"][-1] > result.history["logps/chosen"][0]).all()


@pytest.mark.parametrize("algorithm, steps, overrides", [("ppo", 160, {"n_episodes": 32}), ("reinforce", 80, {})])
def test_on_policy_rules_raise_the_episode_return(paper: FrozenLakeMDP, algorithm: str, steps: int, overrides):
    # The reward is sparse: a seed learns only once its random walk has found the goal, so judge the mean over
    # seeds (with these settings both seeds find it).
    policy = MLPPolicy(paper.n_states, paper.n_actions, seeds=2)
    result = train(policy, make_rule(algorithm, **overrides), paper, None, TrainConfig(steps=steps, seed=1))
    returns = result.history["episode_return"].mean(-1)
    quarter = steps // 4
    assert returns[-quarter:].mean() > returns[:quarter].mean() + 0.5
    success = [paper.success_probability(p) for p in policy.action_probs().double().numpy()]
    assert np.mean(success) > 0.5


# -- every rule on TinyGPT through the one training loop ------------------------------------------------------
@pytest.mark.parametrize(
    ("algo", "overrides"),
    [("sft", {}), ("ift", {}), ("dpo", {}), ("dpo-online", {"n_samples": 4}), ("orpo", {}),
     ("ppo", {"kl_coef": 0.05, "n_episodes": 4, "ent_coef": 0.01}), ("reinforce", {"kl_coef": 0.05, "n_episodes": 4})],
)  # fmt: skip
# (PPO's entropy bonus moves the policy even when no sampled answer earns a reward in the two steps)
def test_every_rule_trains_tiny_gpt(world, algo, overrides, tiny):
    rule = make_rule(algo, **overrides)
    if rule.data == "env":  # an untrained model never earns the exact-match reward: learn from per-token rewards
        world = TokenWorld(world.task, reward="token")
    policy = tiny(world)
    before = [p.detach().clone() for p in policy.parameters()]
    result = train(policy, rule, world, world.training_data(),
                   TrainConfig(steps=2, lr=1e-3, batch_size=8))  # fmt: skip
    assert np.isfinite(result.history["loss"]).all() and result.history["loss"].shape == (2, 2)
    assert any(not torch.equal(b, p) for b, p in zip(before, policy.parameters()))


def test_sft_loss_falls(world, tiny):
    result = train(tiny(world), "sft", world, world.training_data(), TrainConfig(steps=30, lr=3e-3))
    assert (result.history["loss"][-1] < result.history["loss"][0] - 0.3).all()


# -- reproducibility and seed independence --------------------------------------------------------------------
@pytest.mark.parametrize("algorithm", ["sft", "ift", "dpo-online", "ppo"])
def test_same_seed_same_result_different_seed_different_result(
    paper: FrozenLakeMDP, data: TrainingData, algorithm: str
) -> None:
    def run(policy_seeds, seed):
        policy = mlp(paper, seeds=policy_seeds)
        # PPO learns nothing before it first reaches the goal; an entropy bonus makes every rollout count
        rule = make_rule("ppo", ent_coef=0.01) if algorithm == "ppo" else algorithm
        train(policy, rule, paper, data, TrainConfig(steps=12, seed=seed))
        return [p.detach().clone() for p in policy.parameters()]

    first, again = run([0, 1], 0), run([0, 1], 0)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    other_init = run([2, 3], 0)
    assert all(not torch.allclose(a, b) for a, b in zip(first, other_init))
    if algorithm in ("dpo-online", "ppo"):  # the loop's seed drives the sampling
        other_sampling = run([0, 1], 1)
        assert any(not torch.equal(a, b) for a, b in zip(first, other_sampling))


def test_noisy_ift_is_reproducible(paper: FrozenLakeMDP, data: TrainingData) -> None:
    runs = [
        train(
            mlp(paper),
            make_rule("ift", schedule="noisy", prediction="sample"),
            paper,
            data,
            TrainConfig(steps=8, seed=seed),
        )
        for seed in (0, 0, 1)
    ]
    np.testing.assert_array_equal(runs[0].history["lambda"], runs[1].history["lambda"])
    assert torch.equal(runs[0].policy.action_probs(), runs[1].policy.action_probs())
    assert not np.array_equal(runs[0].history["lambda"], runs[2].history["lambda"])


@pytest.mark.parametrize("algorithm", ["sft", "ift", "dpo", "orpo"])
def test_seeds_trained_together_equal_seeds_trained_alone(
    paper: FrozenLakeMDP, data: TrainingData, algorithm: str
) -> None:
    config = TrainConfig(steps=15)
    together = train(mlp(paper, seeds=[4, 7, 9]), algorithm, paper, data, config)
    for index, seed in enumerate([4, 7, 9]):
        alone = train(mlp(paper, seeds=[seed]), algorithm, paper, data, config)
        torch.testing.assert_close(
            together.policy.action_probs()[index], alone.policy.action_probs()[0], rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            together.history["loss"][:, index], alone.history["loss"][:, 0], rtol=1e-5, atol=1e-6
        )


# -- stages: one recipe grammar everywhere --------------------------------------------------------------------
def test_make_stages_splits_steps_and_takes_stage_learning_rates() -> None:
    stages = make_stages("sft+ppo+ift", 10, stage_lrs={"ppo": 1e-4}, overrides={"ift": {"lam": 0.5}})
    assert [(s.rule.name, s.steps, s.lr) for s in stages] == [("sft", 3, None), ("ppo", 4, 1e-4), ("ift", 3, None)]
    assert stages[2].rule.config.lam == 0.5
    explicit = make_stages([Stage(make_rule("sft"), 5, 0.1), make_rule("dpo")], 7)
    assert [(s.rule.name, s.steps, s.lr) for s in explicit] == [("sft", 5, 0.1), ("dpo", 7, None)]
    with pytest.raises(ValueError, match="steps=1 is out of range for 'sft\\+dpo': expected at least 2"):
        make_stages("sft+dpo", 1)
    with pytest.raises(ValueError, match="recipe 'sft\\+' is malformed"):
        make_stages("sft+", 4)


def test_each_stage_uses_its_own_learning_rate(paper: FrozenLakeMDP, data: TrainingData) -> None:
    # a stage at lr 0 would be refused; a tiny one barely moves the policy, the default one moves it a lot
    slow, fast = (MLPPolicy(paper.n_states, 4, hidden=8, seeds=2) for _ in range(2))
    start = slow.action_probs().clone()
    train(slow, [Stage(make_rule("sft"), 10, 1e-7)], paper, data, TrainConfig(steps=10))
    train(fast, [Stage(make_rule("sft"), 10)], paper, data, TrainConfig(steps=10, lr=0.05))
    assert (slow.action_probs() - start).abs().max() < 1e-4 < (fast.action_probs() - start).abs().max()


def test_train_takes_the_worlds_own_data_when_none_is_given(paper: FrozenLakeMDP, data: TrainingData) -> None:
    given, default = (MLPPolicy(paper.n_states, 4, hidden=8, seeds=2) for _ in range(2))
    train(given, "sft+dpo", paper, paper.training_data(), TrainConfig(steps=6))
    train(default, "sft+dpo", paper, None, TrainConfig(steps=6))
    assert torch.equal(given.action_probs(), default.action_probs())


# -- the data must hold what the rule needs -------------------------------------------------------------------
def test_training_data_must_hold_what_the_rule_needs(paper: FrozenLakeMDP) -> None:
    demos = StepBatch.from_trajectories(paper, [paper.optimal_demonstration()])
    policy = MLPPolicy(paper.n_states, 4)
    before = [p.detach().clone() for p in policy.parameters()]
    for algorithm in ("dpo", "orpo", "sft+dpo"):
        with pytest.raises(ValueError, match="preference pairs"):
            train(policy, algorithm, paper, TrainingData(demos=demos), TrainConfig(steps=2))
    with pytest.raises(ValueError, match="demonstrations"):
        train(policy, "sft", paper, TrainingData(), TrainConfig(steps=2))
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))  # failed before training
    with pytest.raises(ValueError, match="unknown rule 'kto' in algorithm 'sft\\+kto'"):
        train(policy, "sft+kto", paper, TrainingData(demos=demos), TrainConfig(steps=2))


# -- seeds are independent for every rule ---------------------------------------------------------------------
def rule_settings(name: str) -> dict:
    """Each rule with every random draw it can make switched on (IFT: sampled predictions, noisy lambda)."""
    return {"prediction": "sample", "schedule": "noisy"} if name == "ift" else {}


@pytest.mark.parametrize("slippery", [False, True])
@pytest.mark.parametrize("name", rule_names())
def test_a_seed_trains_the_same_alone_and_beside_other_seeds(name: str, slippery: bool) -> None:
    world = FrozenLakeMDP.from_map("paper" if not slippery else "4x4", slippery=slippery, success_rate=0.6)
    data = world.training_data()
    if make_rule(name).data == "pairs" and data.pairs is None:
        pytest.skip(f"{name} needs a second route")
    config = TrainConfig(steps=30, seed=3)
    alone = MLPPolicy(world.n_states, 4, hidden=16, seeds=[5])
    together = MLPPolicy(world.n_states, 4, hidden=16, seeds=[2, 5, 11, 4])
    train(alone, make_rule(name, **rule_settings(name)), world, data, config)
    train(together, make_rule(name, **rule_settings(name)), world, data, config)
    # equal up to float32 summation order (a batch padded to other seeds' episode lengths sums in another order)
    torch.testing.assert_close(alone.action_probs()[0], together.action_probs()[1], rtol=0, atol=1e-5)


def test_every_step_is_logged_as_it_is_measured(paper: FrozenLakeMDP, data: TrainingData) -> None:
    records: list[dict] = []
    policy = MLPPolicy(paper.n_states, 4, hidden=8, seeds=[0, 1])
    result = train(policy, "sft+dpo", paper, data, TrainConfig(steps=4, lr=1e-2), log=records.append)
    assert [(r["step"], r["stage"], r["rule"]) for r in records] == [(1, 1, "sft"), (2, 1, "sft"), (3, 2, "dpo"),
                                                                    (4, 2, "dpo")]  # fmt: skip
    assert [r["loss"] for r in records] == result.history["loss"].tolist()  # one value per seed, as trained
    assert "rewards/margins" in records[-1] and len(records[-1]["rewards/margins"]) == 2


def test_offline_dpo_reads_reference_log_probabilities_computed_once(paper: FrozenLakeMDP, data: TrainingData) -> None:
    policy = MLPPolicy(paper.n_states, 4, hidden=8, seeds=[0, 1])
    rule = make_rule("dpo")
    rule.setup(policy, paper, seed_generators(0, policy.seeds))
    prepared = rule.prepare(policy, data.pairs)
    with torch.no_grad():  # the policy moves away from its reference; the cached reference must not
        for parameter in policy.parameters():
            parameter.add_(0.1)
    cached, _ = rule.loss(policy, prepared, 0)
    fresh, _ = rule.loss(policy, data.pairs, 0)  # computed from the frozen reference on the spot
    torch.testing.assert_close(cached, fresh)
    assert prepared.select(torch.tensor([0])).reference.shape == (2, 1, 2)


@pytest.mark.parametrize(
    ("arguments", "error", "message"),
    [
        ({"config": {}}, TypeError, "config={} is dict: expected a TrainConfig or None"),
        ({"policy": "mlp"}, TypeError, "policy='mlp' is str: expected an iftgym Policy"),
        ({"algorithm": 5}, TypeError, "algorithm=5 is int: expected a rule or recipe name"),
        ({"algorithm": ["sft"]}, TypeError, r"algorithm=\['sft'\] is list"),
        ({"world": object()}, TypeError, "is object, not a world: expected an iftgym World"),
        ({"data": [1, 2]}, TypeError, r"data=\[1, 2\] is list: expected None"),
        ({"callback": 3}, TypeError, "callback=3 is int: expected a function or None"),
        ({"log": "log.jsonl"}, TypeError, "log='log.jsonl' is str: expected a function or None"),
        ({"actions": 3}, ValueError, "the policy reads 36 input ids and has 3 actions, the world FrozenLakeMDP has 36 "
         "input ids and 4 actions"),
        ({"ids": 30}, ValueError, "the policy reads 30 input ids and has 4 actions, the world FrozenLakeMDP has 36"),
    ],
)  # fmt: skip
def test_train_checks_its_arguments_and_the_policy_against_the_world(paper: FrozenLakeMDP, arguments, error,
                                                                     message) -> None:  # fmt: skip
    policy = MLPPolicy(arguments.pop("ids", paper.n_ids), arguments.pop("actions", paper.n_actions), hidden=8)
    call = {"policy": policy, "algorithm": "sft", "world": paper, **arguments}
    before = [p.detach().clone() for p in policy.parameters()]
    with pytest.raises(error, match=message):
        train(**call)
    assert all(torch.equal(a, b) for a, b in zip(before, policy.parameters()))  # refused before any step


def test_train_checks_a_token_policy_against_the_vocabulary(world: TokenWorld) -> None:
    from iftgym.policies import TinyGPT

    small = TinyGPT(world.n_ids - 1, world.block_size, n_layer=1, n_head=2, n_embd=8, device="cpu")
    with pytest.raises(ValueError, match=f"the policy reads {world.n_ids - 1} input ids .* the world TokenWorld has "
                       f"{world.n_ids} input ids"):  # fmt: skip
        train(small, "sft", world)


# -- gradient accumulation and processes add up to the one-batch step --------------------------------------------
# rules that draw samples from the policy inside their step: another split draws other samples (the same step in
# expectation, not draw for draw); CHORD's GRPO part is drawn once per step, so only its shards differ
SAMPLING_IN_LOSS, SAMPLING_PER_PROCESS = {"dpo-online"}, {"dpo-online", "chord"}
ACCUMULATED = [*rule_names(), 'sft(average="token")', 'dft(average="token")', 'asft(average="token")',
               'iw-sft(average="token")', 'eaft(average="token")', 'psft(average="token")']  # fmt: skip


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> TokenWorld:
    """Words to reverse in TRL's preference format: demonstrations and pairs whose answers differ in length (so
    token counts differ between micro-batches and shards)."""
    import json

    from iftgym.worlds.tokens import make_task

    words = ["ab", "abcde", "cab", "bd", "abcdabcd", "dca", "bac", "abcabc"]
    path = tmp_path_factory.mktemp("pairs") / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": w, "chosen": w[::-1], "rejected": w}) + "\n" for w in words))
    return TokenWorld(make_task("jsonl", path=path), reward="token")


def _tabular(world: TokenWorld):
    from iftgym.policies import TabularPolicy

    torch.manual_seed(0)
    policy = TabularPolicy(world.n_ids, world.n_actions, seeds=[0, 1])
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.normal_(0, 0.5)
    return policy


@pytest.mark.parametrize("algorithm", ACCUMULATED)
def test_micro_batches_add_up_to_the_one_batch_step(routes: TokenWorld, algorithm: str) -> None:
    if algorithm in SAMPLING_IN_LOSS:
        pytest.skip(f"{algorithm} samples answers inside its loss: equal in expectation only")
    data = routes.training_data()
    lengths = data.demos.mask.sum(-1)
    assert len(set(lengths.tolist())) > 1  # unequal token counts: a per-micro-batch mean would be wrong
    trained = []
    for parts in (1, 8, 3):  # one batch of 8; 8 micro-batches of 1; 3 uneven ones (3, 3, 2)
        policy = _tabular(routes)
        config = TrainConfig(steps=2, lr=0.5, optimizer="sgd", batch_size=8, grad_accum=parts, seed=1)
        result = train(policy, make_rule(algorithm), routes, data, config)
        trained.append((torch.cat([p.detach().flatten() for p in policy.parameters()]), result.history["loss"]))
    for parameters, losses in trained[1:]:
        torch.testing.assert_close(parameters, trained[0][0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(losses, trained[0][1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("algorithm", ACCUMULATED)
def test_two_processes_add_up_to_one_with_unequal_token_counts(routes: TokenWorld, algorithm: str, monkeypatch):
    """What ``torchrun`` does, with its one exchange simulated: each process's shard of the minibatch weighted by its
    share of the whole step, the gradients averaged over the processes as DistributedDataParallel averages them."""
    from iftgym import distributed, loop

    data = routes.training_data()
    rule = make_rule(algorithm)
    batch = data.pairs if rule.data == "pairs" else data.demos
    if rule.data == "env":
        batch = None

    def gradient(shard, total, processes) -> torch.Tensor:
        policy = _tabular(routes)
        step_rule = make_rule(algorithm)
        step_rule.setup(policy, routes, seed_generators(0, policy.seeds))
        prepared = step_rule.prepare(policy, shard)
        monkeypatch.setattr(distributed, "world_size", lambda: processes)
        monkeypatch.setattr(distributed, "sum_over_processes", lambda values: torch.as_tensor(total) + 0 * values)
        loop._accumulated_step(step_rule, loop._RuleStep(policy, step_rule), policy, prepared, 0, 1)
        return torch.cat([p.grad.flatten() for p in policy.parameters() if p.grad is not None])

    if batch is None or algorithm in SAMPLING_PER_PROCESS:
        pytest.skip(f"{algorithm} samples its own episodes on each process: equal in expectation only")
    whole = make_rule(algorithm).batch_weight(batch)
    one = gradient(batch, whole, 1)
    halves = [batch.select(torch.arange(0, 3)), batch.select(torch.arange(3, batch.size))]  # unequal shards
    weights = [make_rule(algorithm).batch_weight(half) for half in halves]
    total = sum(torch.as_tensor(w, dtype=torch.float64) for w in weights)
    averaged = sum(gradient(half, total, 2) for half in halves) / 2  # DistributedDataParallel's mean
    torch.testing.assert_close(averaged, one, rtol=1e-5, atol=1e-6)


# -- compute spent, and budgets of token passes or seconds ------------------------------------------------------
def test_the_compute_spent_is_counted_and_a_token_budget_sets_the_steps(paper: FrozenLakeMDP, data: TrainingData):
    from iftgym.policies import TabularPolicy

    def run(config: TrainConfig, algorithm: str = "sft"):
        return train(TabularPolicy(paper.n_states, 4, seeds=[0, 1]), algorithm, paper, data, config)

    one = run(TrainConfig(steps=1)).compute
    per_step = one["tokens"]
    positions = data.demos.ids.shape[-2] * data.demos.ids.shape[-1]
    assert per_step == 2 * positions  # SFT reads the demonstration's positions once per step, with a backward pass
    assert run(TrainConfig(steps=3)).compute["tokens"] == 3 * per_step
    budgeted = run(TrainConfig(steps=1, budget="tokens", budget_amount=5 * per_step)).compute
    assert (budgeted["steps"], budgeted["tokens"], budgeted["capped"]) == (5, 5 * per_step, False)
    recipe = run(TrainConfig(steps=2, budget="tokens", budget_amount=6 * per_step), "sft+sft").compute
    assert recipe["steps"] == 6  # each stage its even share: 3 steps each
    capped = run(TrainConfig(steps=1, budget="tokens", budget_amount=1e12)).compute
    assert capped["capped"] and capped["steps"] == 100  # BUDGET_STEP_CAP times the planned step
    timed = run(TrainConfig(steps=1, budget="seconds", budget_amount=0.01)).compute
    assert timed["seconds"] >= 0.01 and timed["steps"] > 1 and not timed["capped"]
    with pytest.raises(ValueError, match="budget='weeks' is not supported"):
        TrainConfig(budget="weeks")
