"""The policy classes that checkpoints can rebuild by name: the toolkit's own, a user's (:func:`register_policy`)
and those of installed plugins (entry-point group ``iftgym.policies``)."""

from __future__ import annotations

from collections.abc import Sequence

from iftgym.policies.base import Policy
from iftgym.policies.mlp import MLPPolicy
from iftgym.policies.recurrent import GRUPolicy
from iftgym.policies.tabular import TabularPolicy
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.registry import Registry
from iftgym.validate import one_of


def _check_policy(name: str, policy: object) -> None:
    if not (isinstance(policy, type) and issubclass(policy, Policy)):
        raise ValueError(f"policy {name!r} must be a subclass of iftgym.Policy, got {policy!r}")


POLICIES: Registry[type[Policy]] = Registry("policy", "iftgym.policies", _check_policy)


def register_policy(policy: type[Policy], name: str | None = None, *, replace: bool = False) -> type[Policy]:
    """Make a :class:`Policy` subclass loadable from checkpoints, under ``name`` (default: its class name).
    Usable as a class decorator."""
    return POLICIES.register(name or policy.__name__, policy, replace=replace)


for _policy in (MLPPolicy, GRUPolicy, TabularPolicy, TinyGPT):
    register_policy(_policy)


FROZEN_LAKE_POLICIES = {"mlp": MLPPolicy, "gru": GRUPolicy, "tabular": TabularPolicy}


def frozen_lake_policy(kind: str, n_ids: int, n_actions: int, hidden: int, seeds: Sequence[int]) -> Policy:
    """A Frozen Lake policy by kind: ``"mlp"`` (the paper's two-layer network), ``"gru"`` (with memory of the
    cells visited so far) or ``"tabular"`` (one softmax per cell; ``hidden`` does not apply)."""
    one_of("policy", kind, FROZEN_LAKE_POLICIES)
    if kind == "tabular":
        return TabularPolicy(n_ids, n_actions, seeds=seeds)
    return FROZEN_LAKE_POLICIES[kind](n_ids, n_actions, hidden=hidden, seeds=seeds)
