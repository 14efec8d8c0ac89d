"""experiments.worlds: the comparison in the token world (tiny GPTs trained with every algorithm of a run, scored,
with reference rows and paired statistics) and in a plugin world, returned as data."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym.experiments.compare import compare
from iftgym.experiments.config import CompareConfig
from iftgym.experiments.results import SCHEMA


def LMConfig(**settings) -> CompareConfig:
    return CompareConfig(world="tokens", **settings)


def run_lm(config: CompareConfig, **options):
    return compare(config, **options).to_json()["maps"][0]


def test_run_lm_returns_scores_stages_curves_and_strips() -> None:
    config = LMConfig(task="sort", task_args={"length": 3}, n_train=24, n_test=6, algos=["sft", "sft+ift"], steps=6,
                      seeds=2, batch_size=8, n_layer=1, n_embd=16, n_head=2, device="cpu", eval_every=3, strips=2,
                      stage_lrs={"ift": 1e-3})  # fmt: skip
    seen = []
    full = compare(config, progress=seen.append).to_json()
    results = full["maps"][0]
    assert full["schema"] == SCHEMA and full["world"] == "tokens" and len(seen) == 2
    chain = results["algorithms"]["sft+ift"]
    assert [(s["name"], s["steps"], s["lr"]) for s in chain["stages"]] == [("sft", 3, None), ("ift", 3, 1e-3)]
    assert chain["curves"]["steps"] == [3, 6] and np.shape(chain["curves"]["greedy_test"]) == (2, 2)
    assert list(results["references"]) == ["uniform", "untrained"]
    assert set(results["paired"]["rows"]) == {"sft", "sft+ift", "uniform", "untrained"}
    for entry in results["algorithms"].values():
        assert set(entry["per_seed"]) == {"greedy_test", "sampled_test", "greedy_train", "target_test", "target_train"}
        assert all(len(v) == 2 and all(0 <= x <= 1 for x in v) for v in entry["per_seed"].values())
        strip = entry["strips"][0]
        n = len(strip["tokens"])
        # the on-policy estimate is the running product of the teacher-forced one
        np.testing.assert_allclose(strip["on_policy"], np.cumprod(strip["teacher_forced"], axis=1), rtol=1e-10)
        assert np.shape(strip["ift"]) == (2, n)


def test_run_lm_is_deterministic_under_its_seed() -> None:
    config = LMConfig(task="sort", task_args={"length": 3}, n_train=16, n_test=4, algos=["sft"], steps=3, seeds=2,
                      batch_size=4, n_layer=1, n_embd=16, n_head=2, device="cpu")  # fmt: skip
    first, second = (run_lm(config)["algorithms"]["sft"] for _ in range(2))
    assert first["history"] == second["history"] and first["per_seed"] == second["per_seed"]


def test_variants_and_controls_are_rows_of_an_lm_run() -> None:
    algos = ["sft", 'sft(embedding="frozen")', "sft+ift(lam=0,gamma=0.5)"]
    config = LMConfig(task="sort", task_args={"length": 3}, n_train=16, n_test=4, algos=algos, steps=4, seeds=1,
                      batch_size=8, n_layer=1, n_embd=16, n_head=2, device="cpu", strips=1,
                      stage_lrs={"ift": 1e-3})  # fmt: skip
    results = run_lm(config)
    assert list(results["algorithms"]) == algos
    frozen, chain = results["algorithms"]['sft(embedding="frozen")'], results["algorithms"]["sft+ift(lam=0,gamma=0.5)"]
    assert frozen["stages"][0]["config"] == {"embedding": "frozen", "average": "sequence", "transform": "log",
                                             "power": 1.0}  # fmt: skip
    ift = chain["stages"][1]
    assert (ift["name"], ift["lr"], ift["config"]["lam"], ift["config"]["gamma"]) == (
        "ift(lam=0,gamma=0.5)",
        1e-3,
        0,
        0.5,
    )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"n_head": 3, "n_embd": 8}, "n_embd=8 is not divisible by n_head=3"),
        ({"n_layer": 0}, "n_layer=0 is out of range"),
        ({"reward": "dense"}, "reward='dense' is not supported: expected one of 'end', 'token'"),
        ({"maps": ["4x4"]}, "maps is a setting of world 'frozen-lake', not of 'tokens'"),
        ({"algos": ["sft", "sb3-ppo"]}, "unknown rule 'sb3-ppo'"),
        ({"policy": "mlp"}, "policy='mlp' is not supported for world 'tokens'"),
        ({"model_config": {"model_type": "gpt2"}, "n_layer": 3}, "n_layer=3 has no effect with model_config"),
    ],
)
def test_lm_configs_are_checked_when_made(settings, message) -> None:
    if "model_config" in settings:
        pytest.importorskip("transformers")
    with pytest.raises(ValueError, match=message):
        LMConfig(**settings)


def test_the_preference_strip_uses_the_lambda_of_the_rule_that_trained() -> None:
    """The λ strip bug: IFT's estimate in the strip is drawn with the λ of the IFT that trained (a variant's own),
    not with the --set overrides' or the default's."""
    config = LMConfig(task="sort", task_args={"length": 3}, n_train=16, n_test=4, steps=2, seeds=1, batch_size=4,
                      n_layer=1, n_embd=16, n_head=2, device="cpu", strips=1, algos=["ift(lam=0)", "ift", "sft"],
                      rule_overrides={"ift": {"lam": 0.5}})  # fmt: skip
    results = run_lm(config)["algorithms"]
    assert results["ift(lam=0)"]["strips"][0]["lam"] == 0
    assert results["ift"]["strips"][0]["lam"] == 0.5
    assert results["sft"]["strips"][0]["lam"] == 0.2  # no IFT trained: the estimate's default
    # with lambda 0, IFT's estimate is the teacher-forced one
    strip = results["ift(lam=0)"]["strips"][0]
    np.testing.assert_allclose(strip["ift"], strip["teacher_forced"], rtol=1e-6)


def test_twenty_seeds_of_the_token_world_are_one_batched_model_and_each_seed_its_own() -> None:
    """Seed k's numbers do not depend on how many seeds train beside it."""
    settings = {"task": "sort", "task_args": {"length": 3}, "n_train": 16, "n_test": 4, "steps": 3, "batch_size": 4,
                "n_layer": 1, "n_embd": 16, "n_head": 2, "device": "cpu", "algos": ["sft"], "strips": 0}  # fmt: skip
    alone = run_lm(LMConfig(seeds=1, **settings))["algorithms"]["sft"]["per_seed"]
    many = run_lm(LMConfig(seeds=3, **settings))["algorithms"]["sft"]["per_seed"]
    for key in ("target_test", "target_train"):
        assert many[key][0] == pytest.approx(alone[key][0], rel=1e-5)
