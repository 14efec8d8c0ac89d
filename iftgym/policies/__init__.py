"""Policies: K seeds of one architecture evaluated as one batched model."""

from iftgym.policies.base import Policy
from iftgym.policies.mlp import MLPPolicy
from iftgym.policies.tabular import TabularPolicy

__all__ = ["MLPPolicy", "Policy", "TabularPolicy"]
