"""Sweeps: specs are checked before any cell runs, grids and random samples expand reproducibly, cells are keyed by
their full settings, written atomically, skipped when finished, retried when failed or damaged, and the local and
Ray engines give the same cells."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from iftgym.experiments import sweep as sweep_module
from iftgym.experiments.sweep import CELLS, finished, load_spec, parse_spec, run_sweep

TINY = {"base": {"algos": ["sft", "ift"], "seeds": 2, "steps": 3},
        "grid": {"ift.lam": [0.0, 0.5], "ift.gamma": [0.0, 0.95]}}  # fmt: skip


def test_a_grid_expands_to_every_combination_and_random_axes_are_seeded() -> None:
    cells = parse_spec(TINY).cells()
    assert [dict(c.axes) for c in cells] == [
        {"ift.lam": lam, "ift.gamma": g} for lam in (0.0, 0.5) for g in (0.0, 0.95)
    ]
    assert cells[3].config.rule_overrides == {"ift": {"lam": 0.5, "gamma": 0.95}} and cells[3].config.seeds == 2
    spec = {**TINY, "random": {"samples": 3, "seed": 1, "dpo.beta": [0.05, 0.5]}, "base": {**TINY["base"],
            "algos": ["sft", "ift", "dpo"]}}  # fmt: skip
    first, again = parse_spec(spec).cells(), parse_spec(spec).cells()
    assert len(first) == 12 and [c.axes for c in first] == [c.axes for c in again]
    betas = {dict(c.axes)["dpo.beta"] for c in first}
    assert len(betas) == 3 and all(0.05 <= b <= 0.5 for b in betas)
    maps = parse_spec({"base": {"algos": ["sft"], "seeds": 2}, "grid": {"maps": [["paper"], ["4x4"]]}}).cells()
    assert [c.config.maps for c in maps] == [["paper"], ["4x4"]]


def test_a_cell_key_changes_with_any_setting() -> None:
    cell = parse_spec(TINY).cells()[0]
    assert cell.key() == parse_spec(TINY).cells()[0].key()
    for change in ({"seeds": 3}, {"steps": 4}, {"lr": 0.02}, {"slippery": True}):
        other = replace(cell, config=replace(cell.config, **change))
        assert other.key() != cell.key(), change
    assert len({c.key() for c in parse_spec(TINY).cells()}) == 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({**TINY, "sweep": {}}, r"unknown section \[sweep\]: expected \[base\], \[grid\] and \[random\]"),
        ({"grid": {"colour": [1]}}, r"unknown \[grid\] setting 'colour': expected RULE.PARAM or one of algos, "),
        ({"grid": {"ift.lam": []}}, r"grid axis 'ift.lam' is \[\]: expected a non-empty list of values"),
        ({"grid": {"ift.": [1]}}, r"\[grid\] 'ift.' is malformed: expected RULE.PARAM"),
        ({"base": {"algos": ["sft"]}}, r"the sweep has no axes"),
        ({"grid": {"lr": [0.1]}, "random": {"lr": [0.1, 0.2], "samples": 2}}, r"axis 'lr' is both in \[grid\] and"),
        ({"random": {"lr": [0.1, 0.2]}}, r"\[random\] has axes but samples = 0"),
        ({"random": {"lr": [0.3, 0.2], "samples": 2}}, r"random axis 'lr' is \[0.3, 0.2\]: expected \[low, high\]"),
    ],
)
def test_bad_specs_are_refused_in_one_line(spec, message) -> None:
    with pytest.raises(ValueError, match=f"^spec: {message}"):
        parse_spec(spec)


def test_a_bad_value_is_refused_naming_its_cell_before_anything_runs() -> None:
    spec = parse_spec({**TINY, "grid": {"ift.lam": [0.5, 2.0]}})
    with pytest.raises(ValueError, match=r"^sweep cell ift.lam=2.0: lam=2.0 is out of range"):
        spec.cells()
    with pytest.raises(ValueError, match=r"^sweep cell lr=-1: lr=-1 is out of range"):
        parse_spec({**TINY, "grid": {"lr": [-1]}}).cells()


def test_finished_cells_are_skipped_failed_ones_recorded_and_retried(tmp_path, monkeypatch) -> None:
    spec = parse_spec(TINY)
    real = sweep_module.compare

    def flaky(config, workers=None):
        if config.rule_overrides["ift"] == {"lam": 0.5, "gamma": 0.95}:
            raise RuntimeError("boom")
        return real(config, workers=workers)

    monkeypatch.setattr(sweep_module, "compare", flaky)
    seen = []
    state = run_sweep(spec, tmp_path, workers=0, progress=lambda s: seen.append((s.done, s.failed)))
    assert (state.total, state.done, state.failed, state.skipped) == (4, 3, 1, 0) and seen[-1] == (3, 1)
    records = finished(tmp_path)
    failed = [r for r in records.values() if "error" in r]
    assert len(records) == 4 and len(failed) == 1 and failed[0]["error"] == "RuntimeError: boom"
    assert failed[0]["axes"] == {"ift.lam": 0.5, "ift.gamma": 0.95}
    monkeypatch.setattr(sweep_module, "compare", real)
    state = run_sweep(spec, tmp_path, workers=0)  # the failed cell runs again, the others are skipped
    assert (state.done, state.failed, state.skipped) == (1, 0, 3)
    first = next(iter(sorted((tmp_path / CELLS).glob("*.json"))))
    first.write_text("{damaged")  # a damaged record is run again
    assert run_sweep(spec, tmp_path, workers=0).done == 1
    changed = parse_spec({**TINY, "base": {**TINY["base"], "steps": 4}})  # a changed setting: no stale reuse
    assert run_sweep(changed, tmp_path, workers=0).done == 4
    assert len(list((tmp_path / CELLS).glob("*.json"))) == 8


def test_an_interrupted_sweep_keeps_its_finished_cells_and_the_next_run_completes_it(tmp_path) -> None:
    spec = parse_spec(TINY)

    def interrupt(state):
        if state.done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path, workers=0, progress=interrupt)
    assert len(finished(tmp_path)) == 2
    assert not [p for p in (tmp_path / CELLS).iterdir() if not p.name.endswith(".json")]  # no partial files
    state = run_sweep(spec, tmp_path, workers=0)
    assert (state.done, state.skipped) == (2, 2)


def test_the_local_workers_and_ray_give_the_same_cells(tmp_path) -> None:
    pytest.importorskip("ray")
    spec = parse_spec({**TINY, "grid": {"ift.lam": [0.0, 0.5]}})
    run_sweep(spec, tmp_path / "here", workers=0)
    run_sweep(spec, tmp_path / "workers", workers=1)
    run_sweep(spec, tmp_path / "ray", backend="ray", workers=1)

    def numbers(folder):
        def strip(value):
            if isinstance(value, dict):
                return {k: strip(v) for k, v in value.items() if k not in ("wall_time", "seconds")}
            return [strip(v) for v in value] if isinstance(value, list) else value

        return {
            key: strip({**record, "results": record["results"].to_json()}) for key, record in finished(folder).items()
        }

    assert numbers(tmp_path / "here") == numbers(tmp_path / "workers") == numbers(tmp_path / "ray")
    assert json.loads((tmp_path / "ray" / "sweep.json").read_text())["grid"] == {"ift.lam": [0.0, 0.5]}


# -- hostile inputs (issue 23) ---------------------------------------------------------------------------------
def test_a_maps_axis_reaches_the_report(tmp_path) -> None:
    """The module's own documented example, a ``maps`` axis, is reported (its values are lists)."""
    from iftgym.explain.sweep import equal_budget, rule_tables

    spec = parse_spec({"base": {"algos": ["sft", "ift"], "seeds": 2, "steps": 2},
                       "grid": {"maps": [["paper"], ["4x4"]]}})  # fmt: skip
    run_sweep(spec, tmp_path, workers=0)
    records = finished(tmp_path)
    assert len(records) == 2 and len(rule_tables(records)) == 2 and set(equal_budget(records)) == {"sft", "ift"}


@pytest.mark.parametrize(
    "damage",
    [lambda r: {**r, "results": {"schema": "iftgym.compare/1", "maps": []}},
     lambda r: {**r, "results": {"schema": "other"}},
     lambda r: {**r, "results": {**r["results"], "maps": [{"algorithms": {"sft": {"per_seed": {}}}}]}},
     lambda r: {key: value for key, value in r.items() if key != "axes"},
     lambda r: {"key": r["key"]}],
)  # fmt: skip
def test_a_damaged_cell_with_the_right_key_runs_again(tmp_path, damage) -> None:
    spec = parse_spec({"base": {"algos": ["sft"], "seeds": 2, "steps": 2}, "grid": {"lr": [0.01, 0.02]}})
    run_sweep(spec, tmp_path, workers=0)
    path = sorted((tmp_path / CELLS).glob("*.json"))[0]
    path.write_text(json.dumps(damage(json.loads(path.read_text()))))
    assert len(finished(tmp_path)) == 1  # not counted as finished: the report does not read it
    state = run_sweep(spec, tmp_path, workers=0)
    assert (state.skipped, state.done) == (1, 1) and len(finished(tmp_path)) == 2


def test_the_cell_cap_is_checked_from_the_axis_sizes_before_any_cell_is_listed(monkeypatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("the grid was listed")

    monkeypatch.setattr(sweep_module.itertools, "product", never)
    spec = parse_spec({"base": {"algos": ["sft"]}, "grid": {f"ift.x{i}": list(range(10)) for i in range(6)}})
    with pytest.raises(ValueError, match="the sweep has 1,000,000 cells: expected at most 100,000"):
        spec.cells()


def test_deep_toml_is_refused_in_one_line(tmp_path) -> None:
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ValueError, match=r"nested too deeply|not valid TOML"):
        sweep_module.load_spec(deep)


def test_an_unreachable_ray_address_is_refused_within_seconds() -> None:
    import time

    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"cannot reach the Ray cluster at '127\.0\.0\.1:1'"):
        sweep_module.reachable("127.0.0.1:1", timeout=2)
    assert time.perf_counter() - start < 5


def test_plugin_rules_train_in_every_worker(tmp_path) -> None:
    """A --plugin rule is known to the spawned worker processes: every cell finishes."""
    plugin = tmp_path / "half_sft.py"
    plugin.write_text("import iftgym\nfrom iftgym.rules.sft import SFT\n\n\nclass HalfSFT(SFT):\n"
                      "    def loss(self, policy, batch, step):\n"
                      "        loss, metrics = super().loss(policy, batch, step)\n"
                      "        return loss / 2, metrics\n\n\niftgym.register_rule('half-sft', HalfSFT)\n")  # fmt: skip
    from iftgym.registry import load_plugin
    from iftgym.rules.registry import RULES

    load_plugin(str(plugin))  # as iftgym sweep --plugin does, which also puts it in every cell's settings
    spec = parse_spec({"base": {"algos": ["sft", "half-sft"], "seeds": 2, "steps": 2},
                       "grid": {"lr": [0.01, 0.02, 0.03]}})  # fmt: skip
    spec.base = {**spec.base, "plugins": [str(plugin)]}
    try:
        state = run_sweep(spec, tmp_path, workers=1)
    finally:
        RULES.unregister("half-sft")
    assert (state.done, state.failed) == (3, 0)
    assert all("half-sft" in r["results"].maps[0].algorithms for r in finished(tmp_path).values())


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[2] / "examples" / "sweeps").glob("*.toml")),
                         ids=lambda path: path.stem)  # fmt: skip
def test_the_example_specs_are_valid_sweeps(path) -> None:
    spec = load_spec(path)
    cells = spec.cells()  # every cell's comparison is checked as it is built
    assert len(cells) == spec.size() and len({cell.key() for cell in cells}) == len(cells)
    assert f"iftgym sweep examples/sweeps/{path.name}" in path.read_text()  # its command is in its header
