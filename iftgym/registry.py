"""Open registries: rules, policies and token tasks that users add by name, in code or from installed plugins.

A :class:`Registry` maps names to objects. Three ways fill it:

* the toolkit's own entries, registered where they are defined;
* ``register(...)`` calls in a user's code (``iftgym.register_rule("myrule", MyRule)``), including a file given
  to the command line with ``--plugin my_rule.py``;
* Python entry points of installed distributions: an entry point ``myrule = mypkg.rules:MyRule`` in the group
  ``iftgym.rules`` (``iftgym.policies``, ``iftgym.tasks``) is registered under its name the first time a name is
  looked up or listed, so ``pip install`` of a plugin is enough.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}")  # an identifier with dashes: safe in a path, a flag, a recipe


class Registry(Generic[T]):
    """Named entries of one kind (``"rule"``, ``"policy"``, ``"task"``), with entry-point discovery.

    Args:
        kind: what an entry is, for error messages.
        group: the entry-point group scanned for plugins.
        check: called on every new entry; raises ``ValueError`` when it is not of the right kind.
    """

    def __init__(self, kind: str, group: str, check: Callable[[str, T], None] | None = None) -> None:
        self.kind, self.group, self.check = kind, group, check
        self._entries: dict[str, T] = {}
        self._scanned: set[str] = set()  # entry points already loaded (by "name = value")

    def register(self, name: str, entry: T, *, replace: bool = False) -> T:
        """Add ``entry`` under ``name``; an existing name needs ``replace=True``. Returns ``entry``."""
        if not isinstance(name, str) or not NAME.fullmatch(name):
            shown = repr(name[:60]) + ("..." if len(name) > 60 else "") if isinstance(name, str) else repr(name)
            raise ValueError(f"{self.kind} name {shown} is invalid: expected letters, digits, '_' and '-' (at most "
                             "64, not starting with a digit or '-'), e.g. my-rule")  # fmt: skip
        if name in self._entries and not replace and self._entries[name] is not entry:
            raise ValueError(f"{self.kind} {name!r} is already registered: pass replace=True to replace it")
        if self.check is not None:
            self.check(name, entry)
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests and notebooks that register throw-away entries)."""
        self._entries.pop(name, None)

    def load_entry_points(self) -> None:
        """Register every entry point of :attr:`group` not loaded yet; a broken one raises ``ValueError``."""
        for point in entry_points(group=self.group):
            key = f"{point.name} = {point.value}"
            if key in self._scanned:
                continue
            self._scanned.add(key)
            try:
                entry = point.load()
            except Exception as err:  # a plugin's import can fail in any way: report which plugin
                raise ValueError(f"the {self.kind} plugin {point.name!r} ({point.value}, entry-point group "
                                 f"{self.group!r}) failed to load: {type(err).__name__}: {err}") from None  # fmt: skip
            self.register(point.name, entry, replace=True)

    def get(self, name: str) -> T:
        """The entry registered as ``name``; an unknown name raises ``ValueError`` listing the known ones."""
        if name not in self._entries:
            self.load_entry_points()
        if name not in self._entries:
            shown = repr(name[:60]) + "..." if isinstance(name, str) and len(name) > 60 else repr(name)
            raise ValueError(f"unknown {self.kind} {shown}: expected one of {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        """Every registered name, plugins included, in registration order."""
        self.load_entry_points()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        if name not in self._entries:
            self.load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())


def load_plugin(spec: str) -> None:
    """Import a plugin so that its ``register_*`` calls run: a Python file (``my_rule.py``) or a module name
    (``mypkg.rules``). Errors name the plugin."""
    path = Path(spec)
    if path.suffix == ".py" and not path.is_file():
        raise ValueError(f"plugin file {spec!r} does not exist: expected a Python file or an importable module name")
    try:
        if path.suffix == ".py":
            name = f"iftgym_plugin_{path.stem}"
            loaded = sys.modules.get(name)
            if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path.resolve():
                return  # loaded already (a worker process and its parent load the same plugins)
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            module_spec.loader.exec_module(module)
        else:
            importlib.import_module(spec)
    except (Exception, SystemExit) as err:  # user code can fail in any way, exit included: one line naming it
        raise ValueError(f"plugin {spec!r} failed to load: {type(err).__name__}: {str(err)[:200]}") from None


def from_plugin(entry: object, plugins: list[str] | tuple[str, ...]) -> bool:
    """Whether ``entry`` (a class or function) was defined by one of ``plugins`` (files or module names as given to
    :func:`load_plugin`), so that a process that loads the same plugins finds it under the same name."""
    module = getattr(entry, "__module__", "") or ""
    for spec in plugins:
        path = Path(spec)
        name = f"iftgym_plugin_{path.stem}" if path.suffix == ".py" else spec
        if module == name or module.startswith(name + "."):
            return True
    return False
