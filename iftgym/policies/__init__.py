"""Policies: K seeds of one architecture evaluated as one batched model, and their checkpoints."""

from iftgym.policies.base import Policy
from iftgym.policies.checkpoint import load_metadata, load_policy, save_policy
from iftgym.policies.folder import load_model, save_model
from iftgym.policies.hf import HFPolicy
from iftgym.policies.mlp import MLPPolicy
from iftgym.policies.recurrent import GRUPolicy
from iftgym.policies.registry import POLICIES, register_policy
from iftgym.policies.tabular import TabularPolicy
from iftgym.policies.tiny_gpt import TinyGPT, TinyGPTConfig

__all__ = ["POLICIES", "GRUPolicy", "HFPolicy", "MLPPolicy", "Policy", "TabularPolicy", "TinyGPT", "TinyGPTConfig",
           "load_metadata", "load_model", "load_policy", "register_policy", "save_model", "save_policy"]  # fmt: skip
