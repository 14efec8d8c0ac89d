"""The sweep report: equal tuning budgets over synthetic cells."""

from __future__ import annotations

import pytest

from iftgym.experiments.results import GRID_METRICS, AlgorithmResult, CompareResult, WorldResult
from iftgym.explain.sweep import equal_budget, report_data


def record(axes: dict, scores: dict[str, float]) -> dict:
    rows = {algo: AlgorithmResult({"mse": [value, value]}, {"mse": {"mean": value, "ci95_low": value,
                                                                    "ci95_high": value}})
            for algo, value in scores.items()}  # fmt: skip
    entry = WorldResult("paper", rows, metrics=dict(GRID_METRICS))
    return {"key": "-".join(map(str, axes.values())), "axes": axes,
            "results": CompareResult("frozen-lake", {"algos": list(scores)}, [entry])}  # fmt: skip


def test_every_rule_gets_the_same_number_of_tuning_settings() -> None:
    # IFT has 4 settings of its own (lam x gamma) and DPO 2 (beta); both share the learning rate axis (2 values).
    records = {}
    for lr in (0.01, 0.03):
        for lam in (0.0, 0.5):
            for beta in (0.1, 0.5):
                scores = {"ift": lam + lr, "dpo": beta + lr}
                records[f"{lr}-{lam}-{beta}"] = record({"lr": lr, "ift.lam": lam, "dpo.beta": beta}, scores)
    budget = equal_budget(records)
    assert budget["ift"]["settings"] == 4 and budget["dpo"]["settings"] == 4
    records = {k: r for k, r in records.items() if r["axes"]["dpo.beta"] == 0.1 or r["axes"]["ift.lam"] == 0.0}
    budget = equal_budget(records)
    assert (
        budget["ift"]["budget"] == budget["dpo"]["budget"] == min(budget["ift"]["settings"], budget["dpo"]["settings"])
    )
    assert budget["dpo"]["best"] == pytest.approx(0.11) and budget["ift"]["best"] <= budget["ift"]["median"]


def test_the_report_data_holds_every_cell_and_the_equal_budget_result() -> None:
    records = {f"{lr}": record({"lr": lr}, {"sft": 0.2 + lr, "ift": 0.1 + lr}) for lr in (0.01, 0.03)}
    data = report_data(records, "mse")
    assert data["schema"] == "iftgym.sweep-report/1" and data["metric"] == "mse" and data["lower_is_better"] is True
    assert [cell["axes"] for cell in data["cells"]] == [{"lr": 0.01}, {"lr": 0.03}]
    assert data["cells"][1]["rows"]["ift"]["summary"]["mean"] == pytest.approx(0.13)
    assert data["equal_budget"] == equal_budget(records, "mse") and data["equal_budget"]["ift"]["best"] == 0.11
