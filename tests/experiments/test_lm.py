"""experiments.lm: tiny GPTs trained with every algorithm of a run, returned as data."""

from __future__ import annotations

import numpy as np
import pytest

from iftgym.experiments.lm import SCHEMA, LMConfig, run_lm


def test_run_lm_returns_scores_stages_curves_and_strips() -> None:
    config = LMConfig(task="sort", task_args={"length": 3}, n_train=24, n_test=6, algos=["sft", "sft+ift"], steps=6,
                      seeds=2, batch_size=8, n_layer=1, n_embd=16, n_head=2, device="cpu", eval_every=3, strips=2,
                      stage_lrs={"ift": 1e-3})  # fmt: skip
    seen = []
    results = run_lm(config, progress=seen.append)
    assert results["schema"] == SCHEMA and len(seen) == 2
    chain = results["algorithms"]["sft+ift"]
    assert [(s["name"], s["steps"], s["lr"]) for s in chain["stages"]] == [("sft", 3, None), ("ift", 3, 1e-3)]
    assert chain["curve"]["steps"] == [3, 6] and np.shape(chain["curve"]["greedy_test"]) == (2, 2)
    for entry in results["algorithms"].values():
        assert set(entry["scores"]) == {"greedy_test", "sampled_test", "greedy_train"}
        assert all(len(v) == 2 and all(0 <= x <= 1 for x in v) for v in entry["scores"].values())
        strip = entry["strips"][0]
        n = len(strip["tokens"])
        # the on-policy estimate is the running product of the teacher-forced one
        np.testing.assert_allclose(strip["on_policy"], np.cumprod(strip["teacher_forced"], axis=1), rtol=1e-10)
        assert np.shape(strip["ift"]) == (2, n)


def test_run_lm_is_deterministic_under_its_seed() -> None:
    config = LMConfig(task="sort", task_args={"length": 3}, n_train=16, n_test=4, algos=["sft"], steps=3, seeds=2,
                      batch_size=4, n_layer=1, n_embd=16, n_head=2, device="cpu")  # fmt: skip
    first, second = (run_lm(config)["algorithms"]["sft"] for _ in range(2))
    assert first["history"] == second["history"] and first["scores"] == second["scores"]


def test_variants_and_controls_are_rows_of_an_lm_run() -> None:
    algos = ["sft", 'sft(embedding="frozen")', "sft+ift(lam=0,gamma=0.5)"]
    config = LMConfig(task="sort", task_args={"length": 3}, n_train=16, n_test=4, algos=algos, steps=4, seeds=1,
                      batch_size=8, n_layer=1, n_embd=16, n_head=2, device="cpu", strips=1,
                      stage_lrs={"ift": 1e-3})  # fmt: skip
    results = run_lm(config)
    assert list(results["algorithms"]) == algos
    frozen, chain = results["algorithms"]['sft(embedding="frozen")'], results["algorithms"]["sft+ift(lam=0,gamma=0.5)"]
    assert frozen["stages"][0]["config"] == {"embedding": "frozen", "average": "sequence"}
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
        ({"model_config": {"model_type": "gpt2"}, "n_layer": 3}, "n_layer=3 has no effect with model_config"),
    ],
)
def test_lm_configs_are_checked_when_made(settings, message) -> None:
    if "model_config" in settings:
        pytest.importorskip("transformers")
    with pytest.raises(ValueError, match=message):
        LMConfig(**settings)
