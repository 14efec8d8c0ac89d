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
    accepted = "embedding, average, transform, power"
    with pytest.raises(ValueError, match=rf"^rule 'sft' has no hyper-parameter lr: accepted: {accepted}$"):
        make_rule("sft", lr=0.1)


def test_variants_are_rules_with_settings_named_by_their_text() -> None:
    from iftgym.rules.registry import base_name, make_rule, parse_recipe, parse_variant, split_outside_parentheses

    assert parse_variant("ift(lam=0, detach=x, kind=\"logps\", on=true)") == (
        "ift", {"lam": 0, "detach": "x", "kind": "logps", "on": True})  # fmt: skip
    assert parse_variant(" sft ") == ("sft", {})
    rule = make_rule("ift(lam=0, gamma=0.5)", lam=0.3, kind="logps")  # the variant's own settings come first
    assert rule.name == "ift(lam=0, gamma=0.5)" and base_name(rule.name) == "ift"
    assert (rule.config.lam, rule.config.gamma, rule.config.kind) == (0, 0.5, "logps")
    assert make_rule("ift").name == "ift"
    assert parse_recipe("sft+ift(lam=0,gamma=1e+0)") == ["sft", "ift(lam=0,gamma=1e+0)"]  # '+' inside: no split
    assert split_outside_parentheses("sft,ift(lam=0,gamma=0),dpo", ",") == ["sft", "ift(lam=0,gamma=0)", "dpo"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ift(lam=0", r"variant 'ift\(lam=0' is malformed: expected RULE\(PARAM=VALUE, ...\)"),
        ("ift(lam)", r"variant 'ift\(lam\)' is malformed at 'lam': expected PARAM=VALUE"),
        ("ift(lam=0,lam=1)", r"variant 'ift\(lam=0,lam=1\)' sets lam twice"),
        ("ift(foo=1)", r"rule 'ift' has no hyper-parameter foo: accepted: lam, "),
        ("kto(lam=0)", r"unknown rule 'kto': expected one of sft, .*a variant such as ift\(lam=0\)"),
        ("ift(lam=yes)", r"ift.lam='yes' is str: expected a number"),
    ],
)
def test_bad_variants_are_refused_in_one_line(text: str, message: str) -> None:
    from iftgym.rules.registry import make_rule

    with pytest.raises(ValueError, match=f"^{message}"):
        make_rule(text)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: make_rule(5), TypeError, "name=5 is int: expected a rule name"),
        (lambda: make_rule(None), TypeError, "name=None is NoneType"),
        (lambda: make_rule("ppo", n_episodes=10**12), ValueError, r"ppo.n_episodes=1000000000000 is out of range"),
        (lambda: make_rule("reinforce", n_episodes=-(10**30)), ValueError, "reinforce.n_episodes=.* is out of range"),
        (lambda: make_rule("ppo", n_episodes=2.5), ValueError, "ppo.n_episodes=2.5 is float: expected an integer"),
        (lambda: make_rule("ift", lam=0.1, lam_min=0.9), ValueError, "lam_min=0.9 is out of range: expected lam_min <= "
         "lam=0.1"),
        (lambda: make_rule("ift(lam=0.1, lam_min=0.9, schedule=linear)"), ValueError, "lam_min=0.9 is out of range"),
    ],
)  # fmt: skip
def test_make_rule_checks_its_arguments_as_the_command_line_does(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()
