"""The package root: the public API at the top level, loaded lazily, documented and typed."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import gymnasium as gym

import iftgym


def test_the_public_api_is_at_the_top_level() -> None:
    for name in iftgym.__all__:
        assert getattr(iftgym, name) is not None, name
    assert {"train", "TrainConfig", "make_rule", "register_rule", "MLPPolicy", "TinyGPT", "FrozenLakeMDP",
            "TokenWorld", "World", "compare", "register_world", "make_world"} <= set(iftgym.__all__)  # fmt: skip
    assert callable(iftgym.train) and iftgym.train.__module__ == "iftgym.loop"
    assert "train" in dir(iftgym)


def test_importing_iftgym_registers_the_envs_without_loading_torch() -> None:
    code = "import sys, iftgym, gymnasium; print('torch' in sys.modules, 'iftgym/FrozenLake-v0' in gymnasium.registry)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True"]
    assert {"iftgym/FrozenLake-v0", "iftgym/TokenGen-v0"} <= set(gym.registry)


def test_the_package_ships_its_type_marker() -> None:
    assert (Path(iftgym.__file__).parent / "py.typed").is_file()


def public_objects():
    """Every public class and function defined in the package's modules."""
    for info in pkgutil.walk_packages(iftgym.__path__, "iftgym."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            defined_here = getattr(obj, "__module__", None) == module.__name__
            if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)) and defined_here:
                yield f"{module.__name__}.{name}", obj


def test_every_public_class_and_function_has_a_docstring() -> None:
    missing = [name for name, obj in public_objects() if not (obj.__doc__ or "").strip()]
    assert not missing, "no docstring: " + ", ".join(missing)


def test_pyproject_installs_every_subpackage() -> None:
    import tomllib

    root = Path(iftgym.__file__).parent
    config = tomllib.loads((root.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(root.parent).parts) for p in root.rglob("__init__.py")}
    assert found <= set(config["packages"])
    assert "py.typed" in config["package-data"]["iftgym"]
