"""compare(): reproducible results, random-map sweeps, wins across maps, recipes on a map with one route, and
settings that could not take effect."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from iftgym.experiments.compare import CompareConfig, across_maps, compare
from iftgym.experiments.results import AlgorithmResult, CompareResult, WorldResult


def test_results_reproduce_under_the_same_seed() -> None:
    config = CompareConfig(algos=["sft", "ift"], seeds=2, steps=3)
    first, second = compare(config).to_json(), compare(config).to_json()
    for algo in ("sft", "ift"):
        a, b = (r["maps"][0]["algorithms"][algo] for r in (first, second))
        assert a["policies"] == b["policies"] and a["per_seed"] == b["per_seed"]


def test_random_map_sweep_aggregates(tmp_path: Path) -> None:
    config = CompareConfig(algos=["sft", "dpo"], seeds=2, steps=2, random_maps=2, size=5)
    results = compare(config).to_json()
    assert [m["name"] for m in results["maps"]] == ["random-5x5-seed0", "random-5x5-seed1"]
    complete = [m for m in results["maps"] if "per_seed" in m["algorithms"]["dpo"]]
    assert results["across_maps"]["maps"] == len(complete) and results["across_maps"]["maps_total"] == 2
    wins = sum(results["across_maps"]["mse"][a]["wins"] for a in results["across_maps"]["mse"])
    assert wins >= len(complete)  # each map has a winner (ties: several)


def test_a_tie_across_maps_is_a_win_for_each_algorithm():
    def entry(sft, ift):
        scores = {"mse": sft, "success": [1.0], "explored": [7.0]}
        return WorldResult(
            "map", {"sft": AlgorithmResult(scores, {}), "ift": AlgorithmResult({**scores, "mse": ift}, {})}
        )

    results = CompareResult("frozen-lake", {"algos": ["sft", "ift"]}, [entry([0.2], [0.2]), entry([0.3], [0.1])])
    summary = across_maps(results)
    assert summary["mse"]["sft"]["wins"] == 1 and summary["mse"]["ift"]["wins"] == 2
    assert summary["success"]["sft"]["wins"] == summary["success"]["ift"]["wins"] == 2


def test_any_recipe_and_online_dpo_run_on_a_map_with_a_single_route(tmp_path: Path) -> None:
    # "SFFG": one route only, so the pair rules are skipped while rules that train on demonstrations or rollouts run
    (tmp_path / "single.txt").write_text("SFFG\n")
    config = CompareConfig(maps=[str(tmp_path / "single.txt")], seeds=2, steps=6, stage_lrs={"ppo": 1e-3},
                           algos=["sft+ppo", "dpo-online", "sft+reinforce", "dpo", "sft+orpo"])  # fmt: skip
    entry = compare(config).to_json()["maps"][0]["algorithms"]
    for algo in ("sft+ppo", "dpo-online", "sft+reinforce"):
        assert "per_seed" in entry[algo], (algo, entry[algo])
    assert [s["name"] for s in entry["sft+ppo"]["stages"]] == ["sft", "ppo"]
    assert [s["lr"] for s in entry["sft+ppo"]["stages"]] == [None, 1e-3]
    for algo in ("dpo", "sft+orpo"):
        assert entry[algo]["skipped"].startswith("map has no sub-optimal route")


def test_settings_that_could_not_take_effect_are_refused() -> None:
    with pytest.raises(ValueError, match="hyper-parameters are set for rule 'ift', which no algorithm runs"):
        CompareConfig(algos=["sft"], rule_overrides={"ift": {"lam": 0.3}})
    with pytest.raises(ValueError, match="a learning rate is set for rule 'ppo', which no algorithm runs"):
        CompareConfig(algos=["sft+dpo"], stage_lrs={"ppo": 1e-3})
    with pytest.raises(ValueError, match="algorithm 'sft' is listed twice"):
        CompareConfig(algos=["sft", "ift", "sft"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"maps": "4x4"}, "maps='4x4' is str: expected a list"),
        ({"algos": "sft"}, "algos='sft' is str: expected a list"),
        ({"steps": 2.5}, "steps=2.5 is float: expected an integer"),
        ({"seeds": 2.5}, "seeds=2.5 is float: expected an integer"),
        ({"seeds": True}, "seeds=True is bool: expected an integer"),
        ({"lr": float("nan")}, "lr=nan is out of range: expected a finite number"),
        ({"gamma": float("inf")}, "gamma=inf is out of range"),
        ({"slippery": "yes"}, "slippery='yes' is str: expected true or false"),
        ({"rule_overrides": {"dpo": {"beta": float("inf")}}, "algos": ["dpo"]}, "dpo.beta=inf is out of range"),
        ({"rule_overrides": {"ift": {"colour": 1}}, "algos": ["ift"]}, "rule 'ift' has no hyper-parameter colour"),
        ({"random_maps": 2, "maps": ["4x4"]}, "maps and random_maps exclude each other"),
        ({"maps": ["4x4", "4x4"]}, "map '4x4' is listed twice"),
    ],
)
def test_api_misuse_is_refused_with_one_clear_line(settings, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        CompareConfig(**settings)


@pytest.fixture(scope="module")
def explained() -> dict:
    config = CompareConfig(algos=["sft", "ift", "ift(gamma=0)", "orpo"], seeds=4, steps=30)
    return compare(config, workers=0).to_json()


def test_every_comparison_carries_decomposed_metrics_references_and_paired_statistics(explained) -> None:
    from iftgym.experiments.compare import METRICS, REFERENCES

    entry = explained["maps"][0]
    assert explained["config"]["baseline"] == "sft"
    assert list(entry["algorithms"]) == ["sft", "ift", "ift(gamma=0)", "orpo"]
    assert entry["algorithms"]["ift(gamma=0)"]["stages"][0]["config"]["gamma"] == 0
    assert list(entry["references"]) == list(REFERENCES)
    assert entry["demonstrated"] == [0, 6, 12, 18, 19, 20]  # the paper map's optimal route before G
    for row in (*entry["algorithms"].values(), *entry["references"].values()):
        assert set(row["per_seed"]) == set(METRICS) and len(row["per_seed"]["mse"]) == 4
    uniform = entry["references"]["uniform"]["per_seed"]
    assert uniform["mse"] == pytest.approx([0.18092105263157895] * 4)  # the README's "uniform scores 0.1809"
    copy = entry["references"]["demo-copy"]["per_seed"]
    assert copy["mse_demo"] == [0.0] * 4 and copy["mse_rest"] == pytest.approx(uniform["mse_rest"])
    paired = entry["paired"]
    assert paired["baseline"] == "sft" and paired["units"] == "seeds"
    assert set(paired["rows"]) == {"sft", "ift", "ift(gamma=0)", "orpo", *REFERENCES}
    difference = paired["rows"]["orpo"]["mse"]["difference"]
    sft, orpo = (np.array(entry["algorithms"][a]["per_seed"]["mse"]) for a in ("sft", "orpo"))
    assert difference["mean"] == pytest.approx((orpo - sft).mean())
    assert 0 <= difference["p_value"] <= difference["p_holm"] <= 1
    assert "difference" not in paired["rows"]["sft"]["mse"]  # the baseline is not compared with itself
    assert entry["algorithms"]["orpo"]["worse_than_untrained"] is True  # ORPO ends further off than no training


def test_the_baseline_is_checked_and_may_be_a_reference_row() -> None:
    with pytest.raises(ValueError, match=r"^baseline='kto' is not supported: expected one of 'sft', 'ift', 'uniform'"):
        CompareConfig(algos=["sft", "ift"], baseline="kto")
    assert CompareConfig(algos=["ift", "dpo"]).baseline == "ift"
    results = compare(CompareConfig(algos=["sft"], seeds=2, steps=2, baseline="untrained"), workers=0).to_json()
    assert set(results["maps"][0]["paired"]["rows"]) == {"sft", "uniform", "untrained", "demo-copy"}


def test_across_maps_only_maps_where_every_row_ran_count() -> None:
    results = compare(CompareConfig(algos=["sft", "dpo"], seeds=2, steps=2, random_maps=3, size=5), workers=0).to_json()
    ran = [m for m in results["maps"] if "per_seed" in m["algorithms"]["dpo"]]
    paired = results["paired_across_maps"]
    assert paired["maps_total"] == 3 and paired["maps"] == len(ran) and paired["units"] == "maps"


def test_a_comparison_trains_a_policy_with_memory_and_scores_it_from_rollouts() -> None:
    results = compare(CompareConfig(algos=["sft", "ift(lam=0.5)"], seeds=2, steps=4, policy="gru"), workers=0).to_json()
    entry = results["maps"][0]
    for row in (entry["algorithms"]["sft"], entry["algorithms"]["ift(lam=0.5)"], entry["references"]["untrained"]):
        assert "policies" not in row and np.isnan(row["per_seed"]["mse"]).all()
        assert np.isfinite(row["per_seed"]["success"]).all() and np.isfinite(row["per_seed"]["mse_own_visits"]).all()
    assert "difference" in entry["paired"]["rows"]["ift(lam=0.5)"]["mse_own_visits"]
    refused = r"^policy='lstm' is not supported for world 'frozen-lake': expected one of 'mlp', 'gru', 'tabular'"
    with pytest.raises(ValueError, match=refused):
        CompareConfig(policy="lstm")


@pytest.mark.parametrize("world", ["frozen-lake", "tokens"])
def test_an_equal_budget_of_token_passes_gives_every_algorithm_the_baselines_spend(world: str) -> None:
    tokens = {"world": "tokens", "task": "sort", "task_args": {"length": 3}, "n_train": 16, "n_test": 4,
              "algos": ["sft", "ift"], "n_layer": 1, "n_embd": 16, "n_head": 2, "device": "cpu",
              "strips": 0}  # fmt: skip
    settings = {"algos": ["sft", "ift", "dpo"]} if world == "frozen-lake" else tokens
    results = compare(CompareConfig(**settings, seeds=2, steps=6, budget="tokens"), workers=0)
    runs = results.maps[0].trained()
    baseline = runs["sft"].compute
    assert baseline["steps"] == 6 and baseline["amount"] is None and baseline["budget"] == "tokens"
    for algo in settings["algos"][1:]:
        compute = runs[algo].compute
        assert compute["amount"] == baseline["tokens"] and not compute["capped"]
        assert baseline["tokens"] <= compute["tokens"]  # trained until its spend reached the baseline's
        assert len(runs[algo].history["loss"]) == compute["steps"] != 6  # other rules cost another amount per step
    steps = compare(CompareConfig(**settings, seeds=2, steps=6), workers=0).maps[0].trained()
    assert all(run.compute["steps"] == 6 and run.compute["budget"] == "steps" for run in steps.values())
