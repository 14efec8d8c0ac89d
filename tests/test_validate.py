"""Range checks: every rule's and the training loop's settings refuse out-of-range values, naming the field."""

from __future__ import annotations

import pytest
import torch

from iftgym.loop import TrainConfig
from iftgym.rules import make_rule
from iftgym.rules.dpo import DPOConfig
from iftgym.rules.ift import IFTConfig, propagation_weights
from iftgym.rules.orpo import ORPOConfig
from iftgym.rules.ppo import PPOConfig
from iftgym.rules.reinforce import REINFORCEConfig


@pytest.mark.parametrize(
    "factory, field",
    [
        (lambda: IFTConfig(lam=1.5), "lam"),
        (lambda: IFTConfig(lam=-0.1), "lam"),
        (lambda: IFTConfig(lam_min=2.0), "lam_min"),
        (lambda: IFTConfig(gamma=1.01), "gamma"),
        (lambda: IFTConfig(kind="tokens"), "kind"),
        (lambda: IFTConfig(norm="L3"), "norm"),
        (lambda: IFTConfig(side="up"), "side"),
        (lambda: IFTConfig(schedule="cosine"), "schedule"),
        (lambda: IFTConfig(prediction="beam"), "prediction"),
        (lambda: IFTConfig(schedule="linear", lam=0.1, lam_min=0.5), "lam_min"),
        (lambda: IFTConfig(warmup_steps=0), "warmup_steps"),
        (lambda: IFTConfig(noise_std=-1.0), "noise_std"),
        (lambda: propagation_weights(torch.zeros(1, 2), torch.ones(1, 2), gamma=2.0), "gamma"),
        (lambda: propagation_weights(torch.zeros(1, 2), torch.ones(1, 2), norm="max"), "norm"),
        (lambda: DPOConfig(beta=0.0), "beta"),
        (lambda: DPOConfig(beta=-1.0), "beta"),
        (lambda: DPOConfig(label_smoothing=0.5), "label_smoothing"),
        (lambda: DPOConfig(label_smoothing=-0.1), "label_smoothing"),
        (lambda: DPOConfig(n_samples=0), "n_samples"),
        (lambda: ORPOConfig(beta=0.0), "beta"),
        (lambda: PPOConfig(n_episodes=0), "n_episodes"),
        (lambda: PPOConfig(update_epochs=0), "update_epochs"),
        (lambda: PPOConfig(gamma=1.5), "gamma"),
        (lambda: PPOConfig(gae_lambda=-0.1), "gae_lambda"),
        (lambda: PPOConfig(clip_range=0.0), "clip_range"),
        (lambda: PPOConfig(vf_coef=-1.0), "vf_coef"),
        (lambda: PPOConfig(ent_coef=-1.0), "ent_coef"),
        (lambda: PPOConfig(kl_coef=-1.0), "kl_coef"),
        (lambda: REINFORCEConfig(n_episodes=0), "n_episodes"),
        (lambda: REINFORCEConfig(gamma=-0.5), "gamma"),
        (lambda: REINFORCEConfig(kl_coef=-0.5), "kl_coef"),
        (lambda: TrainConfig(steps=0), "steps"),
        (lambda: TrainConfig(lr=0.0), "lr"),
        (lambda: TrainConfig(optimizer="rmsprop"), "optimizer"),
        (lambda: TrainConfig(weight_decay=-1.0), "weight_decay"),
        (lambda: TrainConfig(batch_size=0), "batch_size"),
        (lambda: TrainConfig(eval_every=-1), "eval_every"),
        (lambda: make_rule("ift", lam=3.0), "lam"),
    ],
)
def test_out_of_range_values_name_the_field(factory, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        factory()


def test_like_default_checks_types_and_bounds_integer_sizes() -> None:
    from iftgym.validate import MAX_SETTING, like_default

    like_default("steps", MAX_SETTING, 10, high=MAX_SETTING)
    like_default("steps", 10**12, 10)  # no bound asked for
    like_default("lam", 10**12, 0.5, high=MAX_SETTING)  # a float setting is only checked to be finite
    with pytest.raises(ValueError, match="steps=1000000001 is out of range: expected at most 1000000000 in size"):
        like_default("steps", MAX_SETTING + 1, 10, high=MAX_SETTING)
    with pytest.raises(ValueError, match="steps=True is bool: expected an integer"):
        like_default("steps", True, 10, high=MAX_SETTING)
