"""The on-policy machinery shared by PPO and REINFORCE: GAE, rollouts and the KL penalty on their rewards; and the
group-relative rules' groups, whose starts are drawn without running the policy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from iftgym import FrozenLakeMDP
from iftgym.policies import GRUPolicy, MLPPolicy, TinyGPT
from iftgym.rules import make_rule
from iftgym.rules.common import step_logps
from iftgym.rules.onpolicy import ValueHead, collect, gae, sample_groups
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.tasks import AdditionTask


def test_gae_hand_computation() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 9.0], [0.1, 0.3, 9.0, 9.0]])
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    # Sequence 0 by hand with gamma 0.9, lambda 0.8: deltas 0.9*0.2-0.5, 0.9*0.4-0.2, 1-0.4 (terminal after step 2).
    d = [0.9 * 0.2 - 0.5, 0.9 * 0.4 - 0.2, 1 - 0.4]
    a2 = d[2]
    a1 = d[1] + 0.72 * a2
    a0 = d[0] + 0.72 * a1
    # Sequence 1: deltas 0.9*0.3-0.1, 1-0.3.
    b1 = 1 - 0.3
    b0 = 0.9 * 0.3 - 0.1 + 0.72 * b1
    expected = torch.tensor([[a0, a1, a2, 0.0], [b0, b1, 0.0, 0.0]])
    torch.testing.assert_close(gae(rewards, values, mask, 0.9, 0.8), expected)
    # lambda = 1: returns-to-go minus values on real steps.
    returns = torch.tensor([[0.81, 0.9, 1.0, 0.0], [0.9, 1.0, 0.0, 0.0]])
    torch.testing.assert_close(gae(rewards, values, mask, 0.9, 1.0), (returns - values) * mask)


def test_gae_lambda_1_is_returns_to_go_minus_values_on_random_batches(generator) -> None:
    gen = generator(4)
    rewards = torch.rand(3, 5, 7, generator=gen)
    values = torch.randn(3, 5, 7, generator=gen)
    lengths = torch.randint(1, 8, (3, 5), generator=gen)
    mask = torch.arange(7) < lengths[..., None]
    returns = torch.zeros_like(rewards)
    for idx in np.ndindex(3, 5):
        running = 0.0
        for t in reversed(range(int(lengths[idx]))):
            running = rewards[idx][t].item() + 0.97 * running
            returns[idx][t] = running
    torch.testing.assert_close(gae(rewards, values, mask, 0.97, 1.0), (returns - values) * mask)


def test_kl_penalty_shapes_the_rewards(paper: FrozenLakeMDP, generators) -> None:
    policy = MLPPolicy(paper.n_states, 4, seeds=2)
    reference = MLPPolicy(paper.n_states, 4, seeds=[10, 11])
    critic = ValueHead(2, paper.n_states)  # zero values: returns = advantages
    # per step, so that the returns can be read back from the rollout's weighted sums
    plain = collect(policy, critic, reference, paper, 8, generators(policy, 5), 0.9, 1.0, kl_coef=0.0, per_state=False)
    shaped = collect(policy, critic, reference, paper, 8, generators(policy, 5), 0.9, 1.0, kl_coef=0.5, per_state=False)
    assert torch.equal(plain.batch.ids, shaped.batch.ids)  # same episodes
    with torch.no_grad():
        kl = step_logps(policy, shaped.batch) - step_logps(reference, shaped.batch)
    rewards = shaped.batch.rewards - 0.5 * kl * shaped.batch.mask
    weight = shaped.state_weight
    zero = torch.zeros_like(rewards)
    torch.testing.assert_close(shaped.ret, weight * gae(rewards, zero, shaped.batch.mask, 0.9, 1.0))
    torch.testing.assert_close(
        plain.ret, weight * gae(plain.batch.rewards, torch.zeros_like(rewards), plain.batch.mask, 0.9, 1.0)
    )
    real = weight > 0
    assert ((shaped.ret - plain.ret)[real] / weight[real]).abs().max() > 1e-3
    # and the rules only build a reference when the penalty is on
    for name in ("ppo", "reinforce"):
        for kl_coef, has_reference in ((0.0, False), (0.1, True)):
            rule = make_rule(name, kl_coef=kl_coef)
            rule.setup(policy, paper, generators(policy))
            assert (rule.reference is not None) == has_reference


@pytest.mark.parametrize("world_name", ["frozen-lake", "addition"])
def test_groups_start_where_the_policys_own_first_step_would_have_without_running_it(world_name: str) -> None:
    """The groups are those of starts drawn by the policy's own first step (World.sample, one step), then answered
    (World.sample_like): the same episodes, draw for draw, and the policy reads no token before the answers."""
    if world_name == "frozen-lake":
        world = FrozenLakeMDP.from_map("4x4", slippery=True)
        policies = [MLPPolicy(world.n_ids, 4, hidden=8, seeds=2), GRUPolicy(world.n_ids, 4, hidden=8, seeds=2)]
    else:
        world = TokenWorld(AdditionTask(digits=1, n_train=40, n_test=10, seed=1))
        policies = [TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=2, device="cpu"),
                    GRUPolicy(world.n_ids, world.n_actions, hidden=16, seeds=2)]  # fmt: skip
    for policy in policies:
        generators = seed_generators(3, policy.seeds)
        starts = world.sample(policy, 3, generators, max_steps=1)
        passes = policy.token_passes
        expected = world.sample_like(policy, starts, 4, generators)
        answers_passes = policy.token_passes - passes
        passes = policy.token_passes
        groups = sample_groups(policy, world, 3, 4, seed_generators(3, policy.seeds))
        assert policy.token_passes - passes == answers_passes
        for got, want in zip(groups.tensors(), expected.tensors()):
            assert torch.equal(got, want)
