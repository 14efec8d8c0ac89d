"""``iftgym compare --update-maps``: update fields at the start, middle and end of training, kept in results.json
(numbers and the small arrays the maps are drawn from), drawn as OUT/<map>-update.png, redrawn by ``iftgym plot``,
printed as a table; one-line errors with exit 2."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from iftgym.experiments.compare import SB3_NO_UPDATE, compare
from iftgym.experiments.config import CompareConfig
from iftgym.experiments.results import CompareResult


@pytest.fixture(scope="module")
def small() -> CompareResult:
    return compare(CompareConfig(seeds=2, steps=4, algos=["sft", "ift", "dpo", "sft+dpo"], update_maps=True),
                   workers=0)  # fmt: skip


def test_results_keep_the_numbers_and_read_back(small: CompareResult) -> None:
    (entry,) = small.maps
    for algo, run in entry.trained().items():
        assert [p["step"] for p in run.update["points"]] == [0, 2, 4], algo
        for point in run.update["points"]:
            mse = point["mse"]
            assert np.array(point["field"]["predicted"]).shape == (36, 4)
            if mse["rest_share"] is not None:  # shares of the sources and of the rest (momentum) sum to 1
                assert sum(v for v in mse["shares"].values()) + mse["rest_share"] == pytest.approx(1, abs=1e-6)
    assert [p["rule"] for p in entry.trained()["sft+dpo"].update["points"]] == ["sft", "dpo", "dpo"]
    assert [p["stage"] for p in entry.trained()["sft+dpo"].update["points"]] == [1, 2, 2]
    steps = [point["step"] for point in entry.update["alignment"]]
    assert steps == [0, 2, 4] and entry.update["alignment"][0]["pairs"]["sft | sft+dpo"]["all"] == pytest.approx(1)
    data = json.loads(json.dumps(small.to_json(), allow_nan=False))
    back = CompareResult.from_json(data)
    assert back.maps[0].update == entry.update
    assert all(back.maps[0].trained()[a].update == r.update for a, r in entry.trained().items())


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("algorithms", "sft", "update", "points", 0, "step"), -1, "points[0].step is a number: expected an integer"),
        (("algorithms", "sft", "update", "points", 0, "field", "own"), [[0.0] * 4], "field.own has shape"),
        (("algorithms", "sft", "update", "points", 0, "mse", "shares"), {"99": 0.5}, "expected cells from 0 to 35"),
        (("algorithms", "ift", "update"), {"skipped": 3}, "update.skipped is a number"),
        (("update", "alignment", 0, "pairs", "sft | ift", "all"), 1.5, "expected a cosine in [-1, 1]"),
    ],
)
def test_a_damaged_update_is_one_error_naming_the_field(small: CompareResult, path, value, message) -> None:
    data = copy.deepcopy(small.to_json())
    target = data["maps"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        CompareResult.from_json(data)


def test_without_update_maps_nothing_is_added(small: CompareResult) -> None:
    data = copy.deepcopy(small.to_json())
    for run in data["maps"][0]["algorithms"].values():
        del run["update"]
    del data["maps"][0]["update"]
    back = CompareResult.from_json(data)
    assert back.maps[0].update is None and all(r.update is None for r in back.maps[0].trained().values())
    assert '"update":' not in json.dumps(back.to_json())


def test_sb3_says_why_it_has_none() -> None:
    assert "outside iftgym's loop" in SB3_NO_UPDATE
