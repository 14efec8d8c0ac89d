"""``iftgym lm --save`` then ``iftgym generate``: a TinyGPT with characters and a Hugging Face GPT-2 with a Hugging
Face tokenizer trained on chat data, saved, read back and answering; bad requests refused in one line."""

from __future__ import annotations

import json

import pytest

from iftgym.cli import main

TINY = ["--steps", "40", "--seeds", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--batch-size", "16",
        "--device", "cpu", "--lr", "1e-2"]  # fmt: skip


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A TinyGPT trained on the reverse sample with SFT, saved."""
    root = tmp_path_factory.mktemp("generate")
    assert main(["lm", "--data", "reverse", "--algo", "sft", *TINY, "--out", str(root / "run"),
                 "--save", str(root / "models")]) == 0  # fmt: skip
    return root / "models" / "sft"


def test_generate_answers_with_every_seed_greedily_and_sampled(saved, capsys) -> None:
    capsys.readouterr()
    assert main(["generate", "--model", str(saved), "--prompt", "reverse apple:", "--prompt", "reverse lemon:"]) == 0
    out = capsys.readouterr().out
    assert "reverse apple:" in out and "greedy" in out and "new tokens in" in out
    for flags in (["--sample", "--top-k", "3", "--temperature", "0.5", "--seed", "1"], ["--no-cache"]):
        assert main(["generate", "--model", str(saved), "--prompt", "reverse apple:", *flags]) == 0


def test_cached_and_uncached_generation_agree(saved) -> None:
    from iftgym.experiments.generate import GenerateConfig, generate_text

    prompts = ["reverse apple:", "reverse river:", "reverse a:"]
    runs = [generate_text(GenerateConfig(str(saved), prompts, sample=True, seed=3, cache=cache)) for cache in
            (True, False)]  # fmt: skip
    assert runs[0]["answers"] == runs[1]["answers"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--top-k", "3"], "only apply to sampling"),
        (["--sample", "--top-p", "0"], "top_p=0.0 is out of range"),
        (["--max-new-tokens", "0"], "max_new_tokens=0 is out of range"),
        (["--max-new-tokens", "500"], "max_new_tokens=500 is out of range: the longest prompt is"),
        (["--prompt", "reverse Zebra:"], "character 'Z' is not in the vocabulary"),
        (["--chat"], "expected shorter prompts"),  # the chat template makes the prompt longer than the context
    ],
)
def test_bad_generation_requests_are_refused_in_one_line(saved, capsys, args, message) -> None:
    status = main(["generate", "--model", str(saved), "--prompt", "reverse apple:", *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.count("\n") == 1, err


def test_a_missing_model_folder_is_refused(tmp_path, capsys) -> None:
    assert main(["generate", "--model", str(tmp_path / "nope"), "--prompt", "x"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_a_gpt2_with_a_hugging_face_tokenizer_trains_on_chat_saves_and_answers(tmp_path, capsys) -> None:
    pytest.importorskip("transformers")
    from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer
    from iftgym.worlds.tokens.jsonl import JSONLTask

    character_tokenizer(JSONLTask("chat").alphabet).save(tmp_path / "tokenizer")
    (tmp_path / "gpt2.json").write_text(json.dumps({"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 32,
                                                    "n_positions": 48, "resid_pdrop": 0.0, "embd_pdrop": 0.0,
                                                    "attn_pdrop": 0.0}))  # fmt: skip
    args = ["lm", "--data", "chat", "--model-config", str(tmp_path / "gpt2.json"), "--tokenizer",
            str(tmp_path / "tokenizer"), "--algo", "ift", "--steps", "3", "--seeds", "1", "--batch-size", "8",
            "--device", "cpu", "--out", str(tmp_path / "run"), "--save", str(tmp_path / "models")]  # fmt: skip
    assert main(args) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    task, config = results["maps"][0]["task"], results["config"]
    assert task["tokenizer"] == "HFTokenizer" and config["model_config"]["model_type"] == "gpt2"
    log = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3] and not (tmp_path / "run" / "metrics.live.jsonl").exists()
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "models" / "ift"), "--chat", "--prompt", "apple",
                 "--max-new-tokens", "4"]) == 0  # fmt: skip
    assert "apple" in capsys.readouterr().out


def test_lm_trains_on_from_a_pretrained_hugging_face_folder(tmp_path) -> None:
    pytest.importorskip("transformers")
    from iftgym.policies.hf import HFPolicy
    from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer
    from iftgym.worlds.tokens.jsonl import JSONLTask

    tokenizer = character_tokenizer(JSONLTask("reverse").alphabet)
    source = HFPolicy({"model_type": "gpt2", "vocab_size": tokenizer.vocab_size + 6, "n_positions": 40, "n_embd": 16,
                       "n_layer": 1, "n_head": 2}, seeds=[0], device="cpu")  # fmt: skip
    source.models[0].save_pretrained(tmp_path / "base")
    tokenizer.save(tmp_path / "base")
    args = ["lm", "--data", "reverse", "--pretrained", str(tmp_path / "base"), "--algo", "sft", "--steps", "2",
            "--seeds", "2", "--batch-size", "8", "--device", "cpu", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())["maps"][0]
    assert results["task"]["vocab_size"] == tokenizer.vocab_size + 6 and results["task"]["tokenizer"] == "HFTokenizer"


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """Plain Hugging Face folders with a character tokenizer: one whose model reads every token, and one whose
    model reads fewer tokens than its tokenizer has."""
    pytest.importorskip("transformers")
    from iftgym.policies.hf import HFPolicy
    from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer

    root = tmp_path_factory.mktemp("hf")
    tokenizer = character_tokenizer("abcdefghijklmnopqrstuvwxyz :")
    for name, vocab in (("fits", tokenizer.vocab_size), ("small", tokenizer.vocab_size - 10)):
        policy = HFPolicy({"model_type": "gpt2", "vocab_size": vocab, "n_positions": 32, "n_embd": 16, "n_layer": 1,
                           "n_head": 2}, seeds=[0], device="cpu")  # fmt: skip
        policy.models[0].save_pretrained(root / name)
        tokenizer.save(root / name)
    return root


@pytest.mark.parametrize(
    ("folder", "prompt", "message"),
    [
        ("fits", "ab\udcffc", "prompt 1 is not UTF-8 text (byte 0xff at character 3)"),  # as argv delivers it
        ("fits", "reverse AB:", "prompt 1 has characters the model's tokenizer lacks: 'A', 'B'"),
        ("small", "ab", "has 35 tokens and the model reads 25: expected a tokenizer no larger"),
    ],
)
def test_bad_prompts_and_tokenizers_of_hugging_face_folders_are_refused(hf_folders, capsys, folder, prompt,
                                                                         message) -> None:  # fmt: skip
    assert main(["generate", "--model", str(hf_folders / folder), "--prompt", prompt]) == 2
    err = capsys.readouterr().err
    # transformers, imported by the fixture before the command could quiet it, may draw its loading bar first
    lines = [line for line in err.splitlines() if line.strip() and "Loading weights" not in line]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in err, err


def test_a_hugging_face_folder_answers_its_prompts(hf_folders, capsys) -> None:
    assert main(["generate", "--model", str(hf_folders / "fits"), "--prompt", "reverse ab:", "--max-new-tokens",
                 "3"]) == 0  # fmt: skip
    assert "reverse ab:" in capsys.readouterr().out
