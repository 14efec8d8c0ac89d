"""User data in JSONL: both TRL formats, malformed lines named, lines split on newlines only, file errors."""

from __future__ import annotations

import json

import pytest

from iftgym.worlds.tokens.jsonl import JSONLTask, load_jsonl
from iftgym.worlds.tokens.tasks import Example
from iftgym.worlds.tokens.tokenizer import Message


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
        (
            '{"prompt": [{"role": "user", "content": "a"}], "completion": "b"}',
            "line 2: .*'completion' is str: expected a list of",
        ),
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


# -- broken files refused at load time, each with one line naming the file and the line ---------------------------
def _load_lines(tmp_path, *lines: str | bytes) -> list[Example]:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"".join((line.encode() if isinstance(line, str) else line) + b"\n" for line in lines))
    return load_jsonl(path)


def _refused(tmp_path, *lines: str | bytes) -> str:
    with pytest.raises(ValueError) as info:
        _load_lines(tmp_path, *lines)
    message = str(info.value)
    assert "\n" not in message and "data.jsonl" in message, message
    return message


@pytest.mark.parametrize(
    ("line", "field"),
    [
        (r'{"prompt": "a", "completion": "\ud800"}', "completion"),
        (r'{"prompt": "x\udfffy", "completion": "b"}', "prompt"),
        (r'{"prompt": "a", "chosen": "b\ud83d", "rejected": "c"}', "chosen"),
        (r'{"prompt": "a", "chosen": "b", "rejected": "\udc00c"}', "rejected"),
    ],
)
def test_a_lone_surrogate_is_refused_naming_file_line_and_field(tmp_path, line, field):
    # valid JSON, but no text: it used to load and crash later while drawing figures
    message = _refused(tmp_path, '{"prompt": "p", "completion": "q"}', line)
    assert f"line 2: field {field!r} is not valid Unicode text (a lone surrogate)" in message


def test_an_escaped_surrogate_pair_is_text(tmp_path):
    assert _load_lines(tmp_path, r'{"prompt": "a", "completion": "\ud83d\ude00"}')[0].completion == "\U0001f600"


def test_identical_chosen_and_rejected_are_refused(tmp_path):
    message = _refused(tmp_path, '{"prompt": "a", "chosen": "b", "rejected": "c"}',
                       '{"prompt": "a", "chosen": "xy", "rejected": "xy"}')  # fmt: skip
    assert "line 2: chosen and rejected are identical ('xy')" in message


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ('{"prompt": "a", "completion": "b"}', '{"prompt": "c", "chosen": "d", "rejected": "e"}',
         "line 3: format prompt/chosen/rejected differs from line 1 (prompt/completion)"),
        ('{"prompt": "c", "chosen": "d", "rejected": "e"}', '{"prompt": "a", "completion": "b"}',
         "line 3: format prompt/completion differs from line 1 (prompt/chosen/rejected)"),
    ],
)  # fmt: skip
def test_a_file_mixing_formats_is_refused_at_the_first_other_line(tmp_path, first, second, message):
    # DPO used to drop the prompt/completion lines of such a file without a word
    assert message in _refused(tmp_path, first, "", second, first)


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"prompt": "", "completion": ""}', "completion"),
        ('{"prompt": "a", "chosen": "", "rejected": "b"}', "chosen"),
        ('{"prompt": "a", "chosen": "b", "rejected": ""}', "rejected"),
    ],
)
def test_empty_answers_are_refused(tmp_path, line, field):
    # an all-empty file trained on an empty alphabet and reported exact match 1.000
    assert f"line 1: field {field!r} is empty: expected at least one character" in _refused(tmp_path, line, line)


def test_empty_prompts_are_kept_for_unconditional_generation(tmp_path):
    from iftgym.worlds.tokens import TokenWorld

    examples = _load_lines(tmp_path, '{"prompt": "", "completion": "ab"}', '{"prompt": "x", "completion": "b"}')
    assert examples[0] == Example("", "ab")
    world = TokenWorld(JSONLTask(tmp_path / "data.jsonl"))
    assert world.prompt_ids("") == (1,) and world.training_data().demos.mask.sum() == 5  # "ab<eos>" and "b<eos>"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a", "completion": "b", "score": NaN}'], "line 1: invalid JSON (NaN is not a JSON value"),
        (['{"prompt": "a", "completion": -Infinity}'], "line 1: invalid JSON (-Infinity is not a JSON value"),
        (['{"prompt": "a", "completion": "b", "prompt": "c"}'], "line 1: key 'prompt' appears twice"),
        (['{"prompt": "a", "completion": "b", "meta": {"k": 1, "k": 2}}'], "line 1: key 'k' appears twice"),
        (['{"prompt": "a", "completion": "b"}', b'\xef\xbb\xbf{"prompt": "c", "completion": "d"}'],
         "line 2: the line starts with a byte order mark"),
        ([b'{"prompt": "a", "completion": "\xff"}'], "line 1: not UTF-8 text (byte 0xff at byte 32)"),
        (['{"prompt": "a", "completion": "b"}', "[" * 100_000 + "]" * 100_000], "line 2: invalid JSON (nested too"),
        (['{"prompt": "a", "completion": "b", "n": ' + "1" * 5000 + "}"], "line 1: invalid JSON (Exceeds the limit"),
        (['{"prompt": "a", "completion": null}'], "line 1: field 'completion' is null, expected a string"),
        (['{"prompt": {"text": "a"}, "completion": "b"}'], "line 1: field 'prompt' is dict, expected a string"),
        (['{"prompt": "a", "completion": "' + "b" * 1001 + '"}'],
         "line 1: field 'completion' is 1001 characters long: expected at most 1000"),
        (['{"messages": [{"role": "user", "content": "a"}]}'], "line 1: 'messages' must end with an assistant turn"),
        (['{"text": "a b c"}'], "line 1: key 'text' marks TRL's language-modelling format"),
        (['{"chosen": "a", "rejected": "b"}'], "line 1: 'chosen' and 'rejected' without 'prompt' are TRL's implicit"),
        (['{"prompt": "a", "chosen": [{"role": "assistant", "content": "b"}], "rejected": "c"}'],
         "line 1: field 'chosen' is a list of messages"),
    ],
)  # fmt: skip
def test_other_broken_lines_are_refused(tmp_path, lines, message):
    assert message in _refused(tmp_path, *lines)


def test_a_byte_order_mark_at_the_start_of_the_file_is_skipped(tmp_path):
    examples = _load_lines(
        tmp_path, b'\xef\xbb\xbf{"prompt": "a", "completion": "b"}', '{"prompt": "c", "completion": "d"}'
    )
    assert examples == [Example("a", "b"), Example("c", "d")]


def test_extra_keys_are_ignored_as_trl_ignores_extra_columns(tmp_path):
    assert _load_lines(tmp_path, '{"prompt": "a", "completion": "b", "id": 7}') == [Example("a", "b")]


def test_a_huge_line_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    import iftgym.worlds.tokens.jsonl as jsonl

    monkeypatch.setattr(jsonl, "MAX_LINE_BYTES", 100)
    ok = '{"prompt": "a", "completion": "b", "pad": "' + "x" * 40 + '"}'
    assert len(_load_lines(tmp_path, ok, ok)) == 2
    message = _refused(tmp_path, ok, '{"prompt": "a", "completion": "b", "pad": "' + "x" * 10**6 + '"}', ok)
    assert "line 2: the line is longer than 100 bytes" in message


def test_a_huge_file_is_refused_while_it_is_read(tmp_path, monkeypatch):
    import iftgym.worlds.tokens.jsonl as jsonl

    monkeypatch.setattr(jsonl, "MAX_EXAMPLES", 3)
    line = '{"prompt": "a", "completion": "b"}'
    assert len(_load_lines(tmp_path, *[line] * 3)) == 3
    message = _refused(tmp_path, *[line] * 10)
    assert "line 4: data file" in message and "is too large: expected at most 3 examples" in message
    monkeypatch.setattr(jsonl, "MAX_EXAMPLES", 100)
    monkeypatch.setattr(jsonl, "MAX_TOTAL_CHARS", 5)  # two characters an example
    assert "line 3: data file" in _refused(tmp_path, *[line] * 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": 5}, "path=5 is int: expected a path to a JSONL file"),
        ({"path": None}, "path=None is NoneType: expected a path to a JSONL file"),
        ({"path": "a\0b.jsonl"}, r"path='a\\x00b.jsonl' holds a NUL character"),
        ({"path": "reverse", "test_path": 3.5}, "test_path=3.5 is float: expected a path"),
    ],
)
def test_jsonl_task_paths_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}"):
        JSONLTask(**kwargs)
    if kwargs["path"] != "reverse":
        with pytest.raises(ValueError, match=f"^{message}"):
            load_jsonl(kwargs["path"])


def test_a_directory_is_no_data_file(tmp_path):
    with pytest.raises(ValueError, match=r"^cannot read data file .*: Is a directory$"):
        load_jsonl(tmp_path)


# -- conversational formats ----------------------------------------------------------------------------------------
USER, ASSISTANT = {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}


def test_the_three_conversational_formats_load(tmp_path) -> None:
    messages = _load_lines(tmp_path, json.dumps({"messages": [USER, ASSISTANT, {"role": "user", "content": "ok"},
                                                              {"role": "assistant", "content": "fine"}]}))  # fmt: skip
    assert messages == [Example((Message("user", "hi"), Message("assistant", "yo"), Message("user", "ok")), "fine",
                                history_loss=True)]  # fmt: skip
    completion = _load_lines(tmp_path, json.dumps({"prompt": [USER], "completion": [ASSISTANT]}))
    assert completion == [Example((Message("user", "hi"),), "yo")]
    pair = _load_lines(tmp_path, json.dumps({"prompt": [USER], "chosen": [ASSISTANT],
                                             "rejected": [{"role": "assistant", "content": "no"}]}))  # fmt: skip
    assert pair == [Example((Message("user", "hi"),), "yo", "no")]
    shipped = JSONLTask("chat")
    assert all(ex.history_loss and ex.prompt[-1].role == "user" for ex in shipped.train)
    assert shipped.reward(shipped.train[0].prompt, shipped.train[0].completion) == 1.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"messages": [USER]}, "line 1: 'messages' must end with an assistant turn after at least one other message"),
        ({"messages": [ASSISTANT, USER]}, "must end with an assistant turn"),
        ({"messages": [USER, ASSISTANT], "prompt": "x"}, "key 'messages' cannot be mixed with 'prompt'"),
        ({"messages": "hi"}, "field 'messages' is str: expected a list of {'role', 'content'} messages"),
        ({"messages": []}, "field 'messages' is an empty list"),
        (
            {"messages": [{"role": "tool", "content": "x"}, ASSISTANT]},
            "message 1 of 'messages' has role 'tool': expected one of system, user, assistant",
        ),
        (
            {"messages": [{"role": "user"}, ASSISTANT]},
            "message 1 of 'messages' is not a message: expected an object with keys 'role' and 'content'",
        ),
        ({"messages": [{"role": "user", "content": 3}, ASSISTANT]}, "has content of type int: expected a string"),
        ({"messages": [USER, {"role": "assistant", "content": ""}]}, "field 'messages' is empty"),
        (
            {"prompt": [USER], "completion": [USER]},
            "field 'completion' must hold exactly one assistant message, got user",
        ),
        ({"prompt": [USER], "completion": [ASSISTANT, ASSISTANT]}, "exactly one assistant message"),
        (
            {"prompt": "hi", "completion": [ASSISTANT]},
            "field 'completion' is a list of messages while 'prompt' is a string",
        ),
        ({"prompt": [USER], "chosen": [ASSISTANT], "rejected": [ASSISTANT]}, "chosen and rejected are identical"),
    ],
)
def test_broken_conversations_are_refused_in_one_line(tmp_path, line, message) -> None:
    refused = _refused(tmp_path, json.dumps(line))
    assert message in refused and "\n" not in refused, refused


def test_a_file_mixing_standard_and_conversational_lines_is_refused(tmp_path) -> None:
    message = _refused(tmp_path, json.dumps({"prompt": "a", "completion": "b"}),
                       json.dumps({"prompt": [USER], "completion": [ASSISTANT]}))  # fmt: skip
    assert "line 2: format conversational prompt/completion differs from line 1 (prompt/completion)" in message
