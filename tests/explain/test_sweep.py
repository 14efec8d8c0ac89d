"""The sweep report: equal tuning budgets over synthetic cells."""

from __future__ import annotations

import pytest

from iftgym.explain.sweep import equal_budget


def record(axes: dict, scores: dict[str, float]) -> dict:
    rows = {algo: {"per_seed": {"mse": [value, value]},
                   "summary": {"mse": {"mean": value, "ci95_low": value, "ci95_high": value}}}
            for algo, value in scores.items()}  # fmt: skip
    return {"axes": axes, "results": {"maps": [{"algorithms": rows}]}}


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
