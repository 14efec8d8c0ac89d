"""The policy classes that checkpoints can rebuild by name: the toolkit's own, a user's (:func:`register_policy`)
and those of installed plugins (entry-point group ``iftgym.policies``)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from iftgym.policies.base import Policy
from iftgym.policies.mlp import MLPPolicy
from iftgym.policies.recurrent import GRUPolicy
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


for _policy in (MLPPolicy, GRUPolicy, TabularPolicy, TinyGPT):
    register_policy(_policy)


PolicyBuilder = Callable[..., Policy]  # builder(n_ids, n_actions, seeds, **settings) -> K seeds of a policy


def _check_builder(name: str, builder: object) -> None:
    if not callable(builder):
        raise ValueError(f"policy kind {name!r} must be a callable that builds a policy, got {type(builder).__name__}")


POLICY_KINDS: Registry[PolicyBuilder] = Registry("policy kind", "iftgym.policy_kinds", _check_builder)


def register_policy_kind(name: str, builder: PolicyBuilder, *, replace: bool = False) -> PolicyBuilder:
    """Make ``builder`` a choice of ``--policy``: ``builder(n_ids, n_actions, seeds, **settings)`` returns the K
    seeds of a policy, taking the settings it names among ``hidden``, ``block_size``, ``n_layer``, ``n_head``,
    ``n_embd``, ``device``... (the others are not passed to it)."""
    return POLICY_KINDS.register(name, builder, replace=replace)


def build_policy(kind: str, n_ids: int, n_actions: int, seeds: Sequence[int], **settings: Any) -> Policy:
    """K seeds of the policy kind ``kind`` for ``n_ids`` inputs and ``n_actions`` actions, given those of
    ``settings`` its builder takes."""
    builder = POLICY_KINDS.get(kind)
    accepted = inspect.signature(builder).parameters
    chosen = {key: value for key, value in settings.items() if key in accepted}
    if kind in BUILT_IN_KINDS and POLICY_KINDS.get(kind) is BUILT_IN_KINDS[kind]:
        return builder(n_ids, n_actions, seeds, **chosen)
    return _checked(kind, builder, n_ids, n_actions, list(seeds), chosen)


def _checked(kind: str, builder: PolicyBuilder, n_ids: int, n_actions: int, seeds: list[int],
             settings: dict[str, Any]) -> Policy:  # fmt: skip
    """A plugin kind's policy, held to the Policy contract on first use: built without error (``SystemExit``
    included), a :class:`Policy` of ``len(seeds)`` seeds, and logits of shape ``(K, 1, 1, n_actions)`` for one id;
    anything else is one ``ValueError`` naming the kind."""

    def broken(what: str) -> ValueError:
        return ValueError(f"policy kind {kind!r} breaks the Policy contract: {what} (docs/design.md §5)")

    try:
        policy = builder(n_ids, n_actions, seeds, **settings)
        logits = policy.logits_at(torch.zeros(1, 1, dtype=torch.long)) if isinstance(policy, Policy) else None
    except (Exception, SystemExit) as err:  # a plugin's code can fail in any way
        raise broken(f"building it failed: {type(err).__name__}: {str(err)[:200]}") from None
    if not isinstance(policy, Policy):
        raise broken(f"its builder returned {type(policy).__name__}, expected an iftgym.Policy")
    if policy.n_seeds != len(seeds):
        raise broken(f"it has {policy.n_seeds} seeds, expected {len(seeds)}")
    expected = (len(seeds), 1, 1, n_actions)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise broken(f"logits_at of one id gave {shape}, expected {expected}")
    return policy


def _tabular(n_ids: int, n_actions: int, seeds: Sequence[int]) -> Policy:
    return TabularPolicy(n_ids, n_actions, seeds=seeds)


def _mlp(n_ids: int, n_actions: int, seeds: Sequence[int], hidden: int = 64) -> Policy:
    return MLPPolicy(n_ids, n_actions, hidden=hidden, seeds=seeds)


def _gru(n_ids: int, n_actions: int, seeds: Sequence[int], hidden: int = 64) -> Policy:
    return GRUPolicy(n_ids, n_actions, hidden=hidden, seeds=seeds)


def _tiny_gpt(
    n_ids: int, n_actions: int, seeds: Sequence[int], block_size: int, n_layer: int = 2, n_head: int = 4,
    n_embd: int = 64, device: str = "auto",
) -> Policy:  # fmt: skip
    if n_actions != n_ids:
        raise ValueError(f"tiny-gpt predicts its next input: expected as many actions as inputs, got {n_actions} "
                         f"actions and {n_ids} inputs")  # fmt: skip
    return TinyGPT(n_ids, block_size, n_layer, n_head, n_embd, seeds=seeds, device=device)


def _hf(
    n_ids: int, n_actions: int, seeds: Sequence[int], model_config: dict[str, Any] | None = None,
    pretrained: str | None = None, device: str = "auto", special_ids: dict[str, int | None] | None = None,
) -> Policy:  # fmt: skip
    from iftgym.policies.hf import HFPolicy

    if pretrained is not None:
        return HFPolicy(pretrained=pretrained, seeds=seeds, device=device)
    if model_config is None:
        raise ValueError("policy 'hf' is built from model_config or pretrained: expected one of them")
    return HFPolicy({"vocab_size": n_ids, **(special_ids or {}), **model_config}, seeds=seeds, device=device)


BUILT_IN_KINDS: dict[str, PolicyBuilder] = {"tabular": _tabular, "mlp": _mlp, "gru": _gru, "tiny-gpt": _tiny_gpt,
                                             "hf": _hf}  # fmt: skip
for _name, _builder in BUILT_IN_KINDS.items():
    register_policy_kind(_name, _builder)
