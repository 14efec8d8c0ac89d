"""Policies: K seeds of one architecture evaluated as one batched model."""

from iftgym.policies.base import Policy
from iftgym.policies.mlp import MLPPolicy
from iftgym.policies.tabular import TabularPolicy
from iftgym.policies.tiny_gpt import TinyGPT

# class name -> class, for rebuilding a policy from a checkpoint (see iftgym.checkpoint)
POLICIES: dict[str, type[Policy]] = {cls.__name__: cls for cls in (MLPPolicy, TabularPolicy, TinyGPT)}

__all__ = ["POLICIES", "MLPPolicy", "Policy", "TabularPolicy", "TinyGPT"]
