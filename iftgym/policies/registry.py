"""The policy classes that checkpoints can rebuild by name: the toolkit's own, a user's (:func:`register_policy`)
and those of installed plugins (entry-point group ``iftgym.policies``)."""

from __future__ import annotations

from iftgym.policies.base import Policy
from iftgym.policies.mlp import MLPPolicy
from iftgym.policies.tabular import TabularPolicy
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.registry import Registry


def _check_policy(name: str, policy: object) -> None:
    if not (isinstance(policy, type) and issubclass(policy, Policy)):
        raise ValueError(f"policy {name!r} must be a subclass of iftgym.Policy, got {policy!r}")


POLICIES: Registry[type[Policy]] = Registry("policy", "iftgym.policies", _check_policy)


def register_policy(policy: type[Policy], name: str | None = None, *, replace: bool = False) -> type[Policy]:
    """Make a :class:`Policy` subclass loadable from checkpoints, under ``name`` (default: its class name).
    Usable as a class decorator."""
    return POLICIES.register(name or policy.__name__, policy, replace=replace)


for _policy in (MLPPolicy, TabularPolicy, TinyGPT):
    register_policy(_policy)
