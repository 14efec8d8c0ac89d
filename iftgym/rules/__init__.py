"""Policy-update rules, one per file (``sft.py``, ``dpo.py``, ``orpo.py``, ``ppo.py``, ``reinforce.py``, ``ift.py``,
``dft.py``, ``grpo.py``, ``rloo.py``, ``asft.py``, ``eaft.py``, ``iw_sft.py``, ``psft.py``, ``chord.py``), and the
registry of the names they go by (:mod:`iftgym.rules.registry`)."""

from iftgym.rules.asft import ASFT, ASFTConfig
from iftgym.rules.base import NoConfig, Rule
from iftgym.rules.chord import CHORD, CHORDConfig
from iftgym.rules.common import masked_mean, sequence_logps, step_logps
from iftgym.rules.dft import DFT, DFTConfig
from iftgym.rules.dpo import DPO, DPOConfig, OnlineDPO
from iftgym.rules.eaft import EAFT, EAFTConfig
from iftgym.rules.grpo import GRPO, GRPOConfig
from iftgym.rules.ift import IFT, IFTConfig
from iftgym.rules.iw_sft import IWSFT, IWSFTConfig
from iftgym.rules.orpo import ORPO, ORPOConfig
from iftgym.rules.ppo import PPO, PPOConfig
from iftgym.rules.psft import PSFT, PSFTConfig
from iftgym.rules.registry import (
    RULES,
    config_fields,
    load_rule,
    make_rule,
    parse_recipe,
    register_rule,
    rule_names,
    rule_spec,
)
from iftgym.rules.reinforce import REINFORCE, REINFORCEConfig
from iftgym.rules.rloo import RLOO, RLOOConfig
from iftgym.rules.sft import SFT, SFTConfig

__all__ = [
    "ASFT", "CHORD", "DFT", "DPO", "EAFT", "GRPO", "IFT", "IWSFT", "ORPO", "PPO", "PSFT", "REINFORCE", "RLOO", "RULES",
    "SFT",
    "ASFTConfig", "CHORDConfig", "DFTConfig", "DPOConfig", "EAFTConfig", "GRPOConfig", "IFTConfig", "IWSFTConfig",
    "NoConfig", "ORPOConfig", "OnlineDPO", "PPOConfig", "PSFTConfig", "REINFORCEConfig", "RLOOConfig", "Rule",
    "SFTConfig", "config_fields", "load_rule", "make_rule", "masked_mean", "parse_recipe", "register_rule",
    "rule_names", "rule_spec", "sequence_logps", "step_logps",
]  # fmt: skip
