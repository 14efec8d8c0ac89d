"""Making rules by name: unknown names and hyper-parameters are refused."""

from __future__ import annotations

import pytest

from iftgym.rules import make_rule


def test_make_rule_rejects_unknown_names_and_hyper_parameters() -> None:
    with pytest.raises(ValueError, match=r"unknown rule 'kto'.*sft"):
        make_rule("kto")
    with pytest.raises(ValueError, match=r"rule 'dpo' has no hyper-parameter gamma.*beta"):
        make_rule("dpo", gamma=0.9)
    with pytest.raises(ValueError, match="online"):  # fixed by the rule's name, not a free hyper-parameter
        make_rule("dpo", online=True)
    with pytest.raises(ValueError, match="none"):
        make_rule("sft", lr=0.1)
