"""``iftgym lm``: end to end on tiny settings, results JSON and figures, one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest

from iftgym.cli import main
from iftgym.experiments.config import CompareConfig
from iftgym.experiments.results import SCHEMA

TINY = ["--steps", "2", "--seeds", "2", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--batch-size", "8",
        "--device", "cpu"]  # fmt: skip
RUN = ["--steps", "2", "--seeds", "2", "--batch-size", "8", "--device", "cpu"]  # a Hugging Face model's: no shape


def test_lm_trains_scores_and_writes_results_and_figures(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["lm", "--task", "sort", "--task-arg", "length=3", "--train-size", "16", "--test-size", "4",
            "--algo", "sft,ift,sft+dpo", "--stage-lr", "dpo=1e-4"]  # fmt: skip
    assert main([*args, *TINY, "--out", str(out)]) == 0
    full = json.loads((out / "results.json").read_text())
    results = full["maps"][0]
    assert full["schema"] == SCHEMA and full["world"] == "tokens" and results["task"]["n_test"] == 4
    assert list(results["algorithms"]) == ["sft", "ift", "sft+dpo"] and full["config"]["stage_lrs"] == {"dpo": 1e-4}
    chain = results["algorithms"]["sft+dpo"]
    assert chain["curves"]["steps"] == [1, 2] and len(chain["history"]["loss"]) == 2
    entry = results["algorithms"]["ift"]
    assert len(entry["per_seed"]["greedy_test"]) == 2 and set(entry["summary"]) == set(entry["per_seed"])
    strip = entry["strips"][0]
    assert strip["tokens"][-1] == "<eos>" and len(strip["on_policy"][0]) == len(strip["tokens"])
    for k in range(2):  # on-policy = running product of the teacher-forced probabilities
        running = 1.0
        for p_teacher, p_on in zip(strip["teacher_forced"][k], strip["on_policy"][k]):
            running *= p_teacher
            assert p_on == pytest.approx(running, rel=1e-4, abs=1e-7)
    assert {p.name for p in out.glob("*.png")} == {"curves.png", "strips_sft.png", "strips_ift.png",
                                                   "strips_sft-dpo.png"}  # fmt: skip
    text = capsys.readouterr().out
    assert "greedy held-out" in text and "difference to sft, paired by seeds" in text
    assert CompareConfig(**full["config"]).algos == ["sft", "ift", "sft+dpo"]  # the saved config can be re-run


def test_lm_on_user_jsonl_data(tmp_path):
    assert main(["lm", "--data", "reverse_preference", "--algo", "orpo", *TINY, "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())["maps"][0]
    assert results["task"]["name"] == "jsonl" and results["task"]["n_train"] == 59


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--task", "chess"], "unknown task 'chess'"),
        (["--algo", "sft,magic"], "unknown rule 'magic'"),
        (["--task", "jsonl"], "task 'jsonl' reads --data"),
        (["--data", "reverse", "--algo", "dpo"], "'dpo' trains on preference pairs"),
        (["--set", "ift.lam=2"], "lam=2 is out of range"),
        (["--device", "tpu9"], "not a device"),
        (["--stage-lr", "dpo=fast"], "stage learning rate dpo=fast is invalid"),
        (["--stage-lr", "dpo=true"], "stage learning rate dpo=True is invalid"),
        (["--task-arg", "digits=two"], "task 'addition': digits='two' is str: expected an integer"),
        (["--set", "ift.lam=x"], "ift.lam='x' is str: expected a number"),
        (["--algo", "sft,ift,sft"], "algorithm 'sft' is listed twice"),
        (["--algo", "sft+dpo", "--steps", "1"], "steps=1 is out of range for 'sft+dpo'"),
    ],
)
def test_lm_errors_are_one_line_with_exit_2(tmp_path, capsys, extra, message):
    assert main(["lm", *TINY, "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_malformed_jsonl_names_the_line(tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n')
    assert main(["lm", "--data", str(data), *TINY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "bad.jsonl" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("files", "extra", "message"),
    [
        ({"m.json": '{"model_type": "nope"}'}, ["--model-config", "m.json"], "model_type 'nope' is unknown"),
        ({"m.json": '{"model_type": "gpt2", "n_layer": "two"}'}, ["--model-config", "m.json"],
         "cannot build a gpt2 config from"),
        ({"m.json": "[1]"}, ["--model-config", "m.json"], "model_config is list: expected a JSON object"),
        ({"empty/.keep": ""}, ["--pretrained", "empty"], "pretrained folder 'empty' is not a model folder"),
        ({"empty/.keep": ""}, ["--tokenizer", "empty"], "'empty' holds no tokenizer"),
        ({"chat.jsonl": '{"messages": [{"role": "user", "content": "a"}, {"role": "bot", "content": "b"}]}\n'},
         ["--data", "chat.jsonl"], "line 1: message 2 of 'messages' has role 'bot'"),
    ],
)  # fmt: skip
def test_bad_models_tokenizers_and_chat_data_are_refused_before_any_output(
    tmp_path, capsys, monkeypatch, files, extra, message
):
    pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    task = [] if "--data" in extra else ["--data", "reverse"]
    assert main(["lm", *RUN, *task, *extra, "--out", "run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()  # not even the folder of the live log


@pytest.mark.parametrize(
    ("flags", "model", "message"),
    [
        (["--n-layer", "2"], "--model-config", "--n-layer has no effect with --model-config"),
        (["--n-head", "2", "--n-embd", "16"], "--model-config", "--n-head, --n-embd have no effect with"),
        (["--n-embd", "64"], "--pretrained", "--n-embd has no effect with --pretrained"),
    ],
)
def test_tiny_gpt_shape_flags_beside_a_hugging_face_model_are_refused(tmp_path, capsys, monkeypatch, flags, model,
                                                                      message):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.json").write_text('{"model_type": "gpt2", "n_layer": 1}')
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text('{"model_type": "gpt2"}')
    value = "m.json" if model == "--model-config" else "base"
    assert main(["lm", *RUN, "--data", "reverse", model, value, *flags, "--out", "run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_a_huge_model_config_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    transformers = pytest.importorskip("transformers")

    def build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config", build)
    (tmp_path / "m.json").write_text('{"model_type": "gpt2", "n_layer": 10000, "vocab_size": 100000000}')
    assert main(["lm", *RUN, "--data", "reverse", "--model-config", str(tmp_path / "m.json"),
                 "--out", str(tmp_path / "run")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "a gpt2 config with 2 seeds" in err and "more than this machine's" in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_data_characters_the_tokenizer_lacks_are_refused(tmp_path, capsys):
    pytest.importorskip("transformers")
    from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer

    character_tokenizer("abcdefghijklmnopqrstuvwxyz :").save(tmp_path / "tokenizer")
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "reverse ab:", "completion": "ba"}\n{"prompt": "reverse Zé:", "completion": "éZ"}\n')
    (tmp_path / "m.json").write_text('{"model_type": "gpt2", "n_layer": 1, "n_head": 2, "n_embd": 16}')
    assert main(["lm", *RUN, "--data", str(data), "--model-config", str(tmp_path / "m.json"), "--tokenizer",
                 str(tmp_path / "tokenizer"), "--out", str(tmp_path / "run")]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "lacks characters of the data file" in err and "data.jsonl" in err and "'Z', 'é'" in err, err
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()
