"""The typed results: every world's comparison reads back from its JSON form equal to what was written, keeps its
training history (a registered rule's own metrics included), and reads the previous schema version."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from iftgym.experiments.compare import CompareConfig, compare
from iftgym.experiments.results import (
    GRID_METRICS,
    SCHEMA,
    AlgorithmResult,
    CompareResult,
    Skipped,
    load_results,
)
from iftgym.io import strict
from iftgym.rules import RULES, Rule, register_rule
from iftgym.rules.common import sft_loss_from_logps, step_logps


def _round_trip(results: CompareResult) -> CompareResult:
    """Through the file form: strict JSON text and back."""
    return CompareResult.from_json(json.loads(json.dumps(strict(results.to_json()), allow_nan=False)))


def _same(a: CompareResult, b: CompareResult) -> None:
    assert json.dumps(strict(a.to_json()), sort_keys=True) == json.dumps(strict(b.to_json()), sort_keys=True)


@dataclass
class WeightedConfig:
    weight: float = 2.0


class WeightedSFT(Rule):
    """SFT scaled by a weight, logging a metric of its own."""

    name = "weighted_sft_for_results"
    config_class = WeightedConfig

    def loss(self, policy, batch, step):
        loss = self.config.weight * sft_loss_from_logps(step_logps(policy, batch), batch.mask)
        return loss, {"loss": loss.detach(), "my_weight": torch.full_like(loss, self.config.weight).detach()}


@pytest.fixture
def weighted_rule():
    register_rule(WeightedSFT.name, WeightedSFT, replace=True)
    yield WeightedSFT.name
    RULES.unregister(WeightedSFT.name)


def test_a_grid_comparison_reads_back_equal_with_its_history_and_a_rules_own_metric(weighted_rule, tmp_path) -> None:
    (tmp_path / "line.txt").write_text("SFFG\n")
    config = CompareConfig(
        maps=["4x4", str(tmp_path / "line.txt")], algos=["sft", weighted_rule, "dpo"], seeds=2, steps=3
    )
    results = compare(config, workers=0)
    assert results.to_json()["schema"] == SCHEMA and results.world == "frozen-lake"
    first, line = results.maps
    assert isinstance(line.algorithms["dpo"], Skipped) and "no sub-optimal route" in line.algorithms["dpo"].skipped
    run = first.algorithms[weighted_rule]
    assert isinstance(run, AlgorithmResult) and run.seeds == 2
    assert len(run.history["my_weight"]) == 3 and run.history["my_weight"] == pytest.approx([2.0] * 3)
    assert len(run.history["loss"]) == 3 and np.array(run.policies).shape == (2, 16, 4)
    assert first.metrics == GRID_METRICS and first.lower_is_better()["mse"] is True
    assert set(first.scored_rows()) == {"sft", weighted_rule, "dpo", "uniform", "untrained", "demo-copy"}
    assert results.across_maps is not None and results.paired_across_maps is not None
    _same(_round_trip(results), results)


def test_a_token_comparison_reads_back_equal_from_its_file(tmp_path) -> None:
    config = CompareConfig(world="tokens", task="sort", task_args={"length": 3}, n_train=16, n_test=4,
                           algos=["sft", "ift"], steps=2, seeds=2, n_layer=1, n_embd=16, n_head=2, device="cpu",
                           strips=1)  # fmt: skip
    results = compare(config)
    entry = results.maps[0]
    assert entry.grid is None and entry.info["task"]["n_test"] == 4
    assert entry.metrics["target_test"].label == "P(target) held-out"
    assert entry.trained()["ift"].strips[0]["lam"] == 0.2 and len(entry.trained()["ift"].history["loss"]) == 2
    path = tmp_path / "results.json"
    path.write_text(json.dumps(strict(results.to_json()), allow_nan=False))
    _same(load_results(path), results)


def test_the_previous_schema_version_reads(tmp_path) -> None:
    results = compare(CompareConfig(maps=["4x4"], algos=["sft"], seeds=2, steps=2), workers=0)
    old = strict(results.to_json())
    old["schema"] = "iftgym.compare/1"
    for entry in old["maps"]:  # version 1 listed no metrics for Frozen Lake and kept no history there
        del entry["metrics"]
        for run in entry["algorithms"].values():
            del run["history"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    read = load_results(path)
    assert read.maps[0].metrics == GRID_METRICS and read.maps[0].trained()["sft"].history == {}
    assert read.maps[0].trained()["sft"].per_seed == results.maps[0].trained()["sft"].per_seed


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema="iftgym.compare/9"), "not an iftgym compare result"),
        (lambda d: d["maps"][0]["metrics"].update(mse={"label": 3, "lower_is_better": True}),
         "maps[0].metrics.mse.label is a number: expected a string"),
        (lambda d: d["maps"][0]["algorithms"]["sft"]["history"].update(loss=[1.0, "x"]),
         "maps[0].algorithms.sft.history.loss is not a list of numbers"),
        (lambda d: d["maps"][0]["algorithms"]["sft"]["per_seed"].update(mse="low"),
         "maps[0].algorithms.sft.per_seed.mse is not a list of numbers"),
        (lambda d: d["maps"][0]["algorithms"]["sft"].update(worse_than_untrained="yes"),
         "maps[0].algorithms.sft.worse_than_untrained is a string"),
    ],
)  # fmt: skip
def test_a_damaged_file_is_one_error_naming_the_field(tmp_path, change, message) -> None:
    data = strict(compare(CompareConfig(maps=["4x4"], algos=["sft"], seeds=2, steps=2), workers=0).to_json())
    change(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="results file") as error:
        load_results(path)
    assert message in str(error.value) and "\n" not in str(error.value)
