"""User data in JSONL: both TRL formats, malformed lines named, lines split on newlines only, file errors."""

from __future__ import annotations

import json

import pytest

from iftgym.worlds.tokens.jsonl import JSONLTask, load_jsonl
from iftgym.worlds.tokens.tasks import Example


def test_shipped_jsonl_samples_load_in_both_trl_formats():
    sft = JSONLTask("reverse")
    assert sft.train[0].rejected is None and sft.test is sft.train
    pref = JSONLTask("reverse_preference")
    assert all(ex.rejected is not None for ex in pref.train)
    assert pref.reward(pref.train[0].prompt, pref.train[0].completion) == 1.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "line 2: invalid JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ('{"completion": "x"}', "line 2: missing key 'prompt'"),
        ('{"prompt": "a", "chosen": "b"}', "line 2: expected key 'completion', or both 'chosen' and 'rejected'"),
        ('{"prompt": [{"role": "user", "content": "a"}], "completion": "b"}', "line 2: .*conversational"),
        ('{"prompt": "a", "completion": 3}', "line 2: field 'completion' is int"),
        ('{"prompt": "a", "completion": "b", "label": false}', "line 2: .*'label'.*unpaired preference"),
        ('{"prompt": "a", "completion": "b", "rejected": "c"}', "line 2: key 'completion' cannot be mixed"),
    ],
)
def test_malformed_jsonl_lines_are_named(tmp_path, line, message):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"prompt": "a", "completion": "b"}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        load_jsonl(path)


def test_jsonl_lines_are_split_on_newlines_only(tmp_path):
    path = tmp_path / "data.jsonl"
    records = [{"prompt": "a\u2028b", "completion": "c\x85d"}, {"prompt": "e", "completion": "f"}]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) + "{bad\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3: invalid JSON"):  # U+2028 and U+0085 do not end a line
        load_jsonl(path)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in records), encoding="utf-8")
    assert load_jsonl(path)[0] == JSONLTask(path).train[0] == Example("a\u2028b", "c\x85d")


def test_jsonl_file_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot read data file"):
        load_jsonl(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match="has no examples"):
        load_jsonl(tmp_path / "empty.jsonl")
