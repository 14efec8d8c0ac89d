"""Open registries: a user's rule, policy and task join by name, in code, from a file (``--plugin``) or through the
entry points of an installed distribution."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import iftgym
from iftgym import FrozenLakeMDP, TrainConfig, load_plugin, make_rule, register_rule, rule_names, train
from iftgym.cli import main
from iftgym.policies import POLICIES, MLPPolicy
from iftgym.registry import Registry
from iftgym.rules import RULES, load_rule, masked_mean, rule_spec, step_logps
from iftgym.worlds.tokens import TASKS


@dataclass
class HalfConfig:
    scale: float = 0.5


class HalfSFT(iftgym.Rule):
    """SFT's loss times a constant: a stand-in for a user's rule."""

    data = "demos"
    config_class = HalfConfig

    def loss(self, policy, batch, step):
        loss = self.config.scale * masked_mean(-step_logps(policy, batch), batch.mask).mean(-1)
        return loss, {"loss": loss.detach()}


@pytest.fixture
def half_sft():
    register_rule("half-sft", HalfSFT)
    yield "half-sft"
    RULES.unregister("half-sft")


def test_registry_rejects_bad_names_duplicates_and_wrong_kinds() -> None:
    registry: Registry[int] = Registry("thing", "iftgym.test-things", lambda name, x: None)
    registry.register("one", 1)
    assert registry.get("one") == 1 and "one" in registry and registry.names() == ["one"]
    with pytest.raises(ValueError, match="thing 'one' is already registered: pass replace=True"):
        registry.register("one", 2)
    registry.register("one", 2, replace=True)
    assert registry.get("one") == 2
    hostile = ("../../x", "a/b", "..", ".hidden", "a\nb", "a\x00b", "-dash", "9lives", "x" * 65, "a\\b", "ä")
    for bad in ("", "a b", "a+b", "x(y)", "a,b", *hostile, 5, None):
        with pytest.raises(ValueError, match=r"name .* is invalid"):
            registry.register(bad, 3)
    with pytest.raises(ValueError, match=r"unknown thing 'two': expected one of one"):
        registry.get("two")
    with pytest.raises(ValueError, match=r"must be a subclass of iftgym\.Rule"):
        register_rule("not-a-rule", dict)
    with pytest.raises(ValueError, match=r"must be a subclass of iftgym\.Policy"):
        iftgym.register_policy(dict, "not-a-policy")


def test_a_registered_rule_trains_and_round_trips_through_its_spec(half_sft: str) -> None:
    assert half_sft in rule_names()
    rule = make_rule(half_sft, scale=0.25)
    assert rule.name == half_sft and rule.config.scale == 0.25
    assert load_rule(json.loads(json.dumps(rule_spec(rule)))).config == rule.config
    with pytest.raises(ValueError, match="rule 'half-sft' has no hyper-parameter beta: accepted: scale"):
        make_rule(half_sft, beta=1.0)
    world = FrozenLakeMDP.from_map("paper")
    half, full = (MLPPolicy(world.n_states, 4, hidden=8, seeds=2) for _ in range(2))
    first = train(half, f"{half_sft}+sft", world, config=TrainConfig(steps=6))  # recipes take it too
    train(full, "sft+sft", world, config=TrainConfig(steps=6))
    assert [s["name"] for s in first.stages] == [half_sft, "sft"] and first.stages[0]["config"] == {"scale": 0.5}
    assert not torch.equal(half.action_probs(), full.action_probs())  # half the SFT gradient at the start


def test_a_rule_file_joins_compare_through_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "halving.py"
    plugin.write_text(
        textwrap.dedent("""
        from dataclasses import dataclass

        import iftgym
        from iftgym.rules import masked_mean, step_logps


        @dataclass
        class HalvingConfig:
            scale: float = 0.5


        class Halving(iftgym.Rule):
            data = "demos"
            config_class = HalvingConfig

            def loss(self, policy, batch, step):
                loss = self.config.scale * masked_mean(-step_logps(policy, batch), batch.mask).mean(-1)
                return loss, {"loss": loss.detach()}


        iftgym.register_rule("halving", Halving, replace=True)
    """)
    )
    out = tmp_path / "out"
    args = ["compare", "--plugin", str(plugin), "--algos", "sft,halving,sft+halving", "--seeds", "2", "--steps", "4",
            "--set", "halving.scale=0.25", "--out", str(out)]  # fmt: skip
    try:
        assert main(args) == 0
        results = json.loads((out / "results.json").read_text())
        entry = results["maps"][0]["algorithms"]
        assert set(entry) == {"sft", "halving", "sft+halving"}
        assert entry["halving"]["stages"][0]["config"] == {"scale": 0.25}
        assert len(entry["halving"]["per_seed"]["mse"]) == 2
    finally:
        RULES.unregister("halving")


def test_plugin_errors_are_one_line(tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('no luck')\n")
    cases = [
        (str(broken), "plugin '.*broken.py' failed to load: RuntimeError: no luck"),
        (str(tmp_path / "missing.py"), "plugin file .* does not exist"),
        ("no_such_module_xyz", "plugin 'no_such_module_xyz' failed to load: ModuleNotFound"),
    ]
    for plugin, message in cases:
        with pytest.raises(ValueError, match=message):
            load_plugin(plugin)
        assert main(["compare", "--plugin", plugin, "--out", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err


@pytest.fixture
def distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A throw-away installed distribution ``iftgym-demo-plugin`` on ``sys.path``, declaring a rule, a policy and a
    task through iftgym's entry-point groups."""
    package = tmp_path / "demo_plugin"
    package.mkdir()
    (package / "__init__.py").write_text(
        textwrap.dedent("""
        import iftgym
        from iftgym.policies import MLPPolicy
        from iftgym.rules import SFT
        from iftgym.worlds.tokens.tasks import SortTask


        class PluginSFT(SFT):
            '''SFT under another name, shipped by a plugin.'''


        class PluginMLP(MLPPolicy):
            '''The MLP under another name.'''


        class PluginSort(SortTask):
            name = "plugin-sort"
    """)
    )
    info = tmp_path / "iftgym_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: iftgym-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""
        [iftgym.rules]
        plugin-sft = demo_plugin:PluginSFT

        [iftgym.policies]
        PluginMLP = demo_plugin:PluginMLP

        [iftgym.tasks]
        plugin-sort = demo_plugin:PluginSort
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield
    for registry, name in ((RULES, "plugin-sft"), (POLICIES, "PluginMLP"), (TASKS, "plugin-sort")):
        registry.unregister(name)
    sys.modules.pop("demo_plugin", None)


def test_entry_points_of_an_installed_plugin_are_discovered(distribution, tmp_path: Path) -> None:
    assert "plugin-sft" in rule_names()
    rule = make_rule("plugin-sft")
    assert type(rule).__name__ == "PluginSFT" and rule.data == "demos"
    # the plugin's policy checkpoints by its registered name
    policy = POLICIES.get("PluginMLP")(36, 4, hidden=8, seeds=2)
    iftgym.save_policy(policy, tmp_path / "p.safetensors")
    assert type(iftgym.load_policy(tmp_path / "p.safetensors")).__name__ == "PluginMLP"
    # the plugin's task by name
    assert iftgym.make_task("plugin-sort", length=3, n_train=5, n_test=2).train[0].prompt.endswith("=")
    # and the rule in a comparison, with no --plugin flag: installing the plugin is enough
    out = tmp_path / "out"
    assert main(["compare", "--algos", "sft,plugin-sft", "--seeds", "2", "--steps", "3", "--out", str(out)]) == 0
    entry = json.loads((out / "results.json").read_text())["maps"][0]["algorithms"]
    np.testing.assert_array_equal(entry["plugin-sft"]["policies"], entry["sft"]["policies"])


def test_a_broken_entry_point_names_the_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "iftgym_broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: iftgym-broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[iftgym.test-broken]\nbad = no_such_module_abc:Rule\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    registry: Registry[object] = Registry("rule", "iftgym.test-broken")
    with pytest.raises(ValueError, match=r"the rule plugin 'bad' \(no_such_module_abc:Rule.*failed to load"):
        registry.names()
