"""Model folders: a trained policy and its tokenizer round-trip (TinyGPT with characters, a Hugging Face model
with its own tokenizer), plain Hugging Face folders are read, and a folder of the user's is never replaced."""

from __future__ import annotations

import json

import pytest
import torch

from iftgym.policies.folder import MODEL_FILE, check_model_destination, load_model, save_model
from iftgym.worlds.tokens import CharTokenizer


def test_a_tiny_gpt_and_its_tokenizer_round_trip(reverse, tiny, tmp_path) -> None:
    policy = tiny(reverse, seeds=2)
    folder = save_model(policy, reverse.tokenizer, tmp_path / "model", {"algorithm": "sft"})
    loaded, tokenizer = load_model(folder)
    ids = reverse.training_data().demos.ids[:3]
    torch.testing.assert_close(loaded(ids), policy(ids), rtol=0, atol=0)
    assert isinstance(tokenizer, CharTokenizer) and tokenizer.chars == reverse.tokenizer.chars
    spec = json.loads((folder / MODEL_FILE).read_text())
    assert spec["kind"] == "policy" and spec["seeds"] == [0, 1] and spec["metadata"] == {"algorithm": "sft"}
    save_model(tiny(reverse, seeds=1), reverse.tokenizer, folder)  # an earlier model folder is replaced whole
    assert load_model(folder)[0].seeds == [0]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left beside it


def test_a_hugging_face_model_is_saved_per_seed_in_its_own_format(reverse, tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from iftgym.policies.hf import HFPolicy
    from iftgym.worlds.tokens.hf_tokenizer import HFTokenizer, character_tokenizer

    tokenizer = character_tokenizer(reverse.task.alphabet)
    policy = HFPolicy({"model_type": "gpt2", "vocab_size": tokenizer.vocab_size, "n_positions": 32, "n_embd": 16,
                       "n_layer": 1, "n_head": 2}, seeds=[3, 7], device="cpu")  # fmt: skip
    folder = save_model(policy, tokenizer, tmp_path / "model")
    loaded, again = load_model(folder)
    ids = torch.tensor([[1, 5, 6, 7]])
    assert loaded.seeds == [3, 7] and isinstance(again, HFTokenizer)
    torch.testing.assert_close(loaded(ids), policy(ids))
    for k, seed in enumerate((3, 7)):  # each seed's folder is a plain Hugging Face model folder
        model = transformers.AutoModelForCausalLM.from_pretrained(folder / f"seed-{seed}", local_files_only=True)
        torch.testing.assert_close(model(input_ids=ids).logits, policy(ids)[k])
        plain, plain_tokenizer = load_model(folder / f"seed-{seed}")
        torch.testing.assert_close(plain(ids)[0], policy(ids)[k])
        assert plain_tokenizer.encode("apple") == tokenizer.encode("apple")
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))  # safetensors only: nothing pickled


def test_a_folder_that_is_not_a_model_is_neither_replaced_nor_read(tmp_path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="it exists and is not a model folder written by iftgym"):
        check_model_destination(mine)
    check_model_destination(tmp_path / "new")  # a new folder, or an empty one, is fine
    with pytest.raises(ValueError, match=r"is not a model folder: expected iftgym_model\.json"):
        load_model(mine)
    with pytest.raises(ValueError, match="does not exist"):
        load_model(tmp_path / "missing")
    (mine / MODEL_FILE).write_text('{"format": "something else"}')
    with pytest.raises(ValueError, match="is not an iftgym model description"):
        load_model(mine)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_a_tokenizer_larger_than_the_model_is_refused(reverse, tmp_path) -> None:
    pytest.importorskip("transformers")
    from iftgym.policies.hf import HFPolicy
    from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer

    tokenizer = character_tokenizer(reverse.task.alphabet)
    small = HFPolicy({"model_type": "gpt2", "vocab_size": tokenizer.vocab_size - 5, "n_positions": 32, "n_embd": 16,
                      "n_layer": 1, "n_head": 2}, seeds=[0], device="cpu")  # fmt: skip
    small.models[0].save_pretrained(tmp_path / "plain")
    tokenizer.save(tmp_path / "plain")
    with pytest.raises(ValueError, match=f"has {tokenizer.vocab_size} tokens and the model reads "
                       f"{tokenizer.vocab_size - 5}: expected a tokenizer no larger"):  # fmt: skip
        load_model(tmp_path / "plain")


def test_a_weights_file_that_is_not_safetensors_is_named(reverse, tmp_path) -> None:
    pytest.importorskip("transformers")
    from iftgym.policies.hf import HFPolicy
    from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer

    tokenizer = character_tokenizer(reverse.task.alphabet)
    policy = HFPolicy({"model_type": "gpt2", "vocab_size": tokenizer.vocab_size, "n_positions": 32, "n_embd": 16,
                       "n_layer": 1, "n_head": 2}, seeds=[0], device="cpu")  # fmt: skip
    folder = save_model(policy, tokenizer, tmp_path / "model")
    (folder / "seed-0" / "model.safetensors").write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(ValueError, match=r"seed-0/model\.safetensors' is not a valid safetensors file"):
        load_model(folder)
