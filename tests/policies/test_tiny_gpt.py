"""TinyGPT: its config, shapes, inputs as ids or embeddings, seeds, causality, generation, devices, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from iftgym.loop import TrainConfig, train
from iftgym.policies.base import resolve_device
from iftgym.policies.tiny_gpt import TinyGPT, TinyGPTConfig
from iftgym.rules import make_rule
from iftgym.world import seed_generators
from iftgym.worlds.tokens import EOS, TokenWorld
from iftgym.worlds.tokens.tasks import SortTask

V, T = 11, 12


def gpt(seeds=2, **kwargs) -> TinyGPT:
    return TinyGPT(V, T, n_layer=2, n_head=2, n_embd=16, seeds=seeds, device="cpu", **kwargs)


def test_logits_shape_from_ids_and_from_embeddings():
    model = gpt(seeds=3)
    ids = torch.randint(0, V, (4, 7))
    logits = model(ids)
    assert logits.shape == (3, 4, 7, V) and model.markov is False and model.n_actions == V
    torch.testing.assert_close(model(model.embed(ids)), logits)
    per_seed_ids = torch.randint(0, V, (3, 4, 7))
    torch.testing.assert_close(model.logits_at(per_seed_ids), model(model.embed(per_seed_ids)))
    for k in range(3):  # per-seed ids are embedded with each seed's own table
        torch.testing.assert_close(model.embed(per_seed_ids)[k], model.wte[k][per_seed_ids[k]])


def test_embedding_table_is_the_token_embedding_weight():
    model = gpt(seeds=3)
    table = model.embedding_table()
    assert table.shape == (3, V, 16) and table.data_ptr() == model.wte.data_ptr()
    probs = torch.softmax(torch.randn(3, 4, 7, V), -1)  # a distribution over tokens, per seed
    mixed = model.embed_distribution(probs)
    torch.testing.assert_close(mixed[1, 2, 3], probs[1, 2, 3] @ model.wte[1])


def test_a_seed_starts_the_same_alone_or_beside_others():
    alone, together = gpt(seeds=[5]), gpt(seeds=[3, 5, 8])
    for (name, a), (_, b) in zip(alone.named_parameters(), together.named_parameters()):
        assert torch.equal(a[0], b[1]), name
    assert not torch.equal(together.wte[0], together.wte[1])


def test_spec_rebuilds_the_same_model():
    model = gpt(seeds=[2, 7])
    rebuilt = TinyGPT(**model.spec(), device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), rebuilt.parameters()))


def test_causal_and_seeds_independent():
    model = gpt()
    ids = torch.randint(0, V, (2, 8))
    changed = ids.clone()
    changed[:, 5] = (changed[:, 5] + 1) % V
    torch.testing.assert_close(model(ids)[..., :5, :], model(changed)[..., :5, :])
    assert not torch.allclose(model(ids)[..., 5:, :], model(changed)[..., 5:, :])
    model(ids)[0].sum().backward()  # a loss on seed 0 only
    for name, p in model.named_parameters():
        assert p.grad[1].abs().sum() == 0, name


def test_bad_shapes_and_settings():
    with pytest.raises(ValueError, match="longer than block_size=12"):
        gpt()(torch.zeros(1, 13, dtype=torch.long))
    with pytest.raises(ValueError, match="not divisible"):
        TinyGPT(V, T, n_head=3, n_embd=16, device="cpu")
    with pytest.raises(ValueError, match="n_layer=0"):
        TinyGPT(V, T, n_layer=0, device="cpu")


def test_the_config_checks_its_sizes_and_builds_the_same_model_as_the_arguments():
    config = TinyGPTConfig(V, T, n_layer=2, n_head=2, n_embd=16)
    model = TinyGPT.from_config(config, seeds=2, device="cpu")
    assert model.config == config and model.spec() == {**gpt().spec(), "seeds": [0, 1]}
    for mine, theirs in zip(model.parameters(), gpt().parameters(), strict=True):
        assert torch.equal(mine, theirs)
    with pytest.raises(ValueError, match="n_embd=16 is not divisible by n_head=3"):
        TinyGPTConfig(V, T, n_head=3, n_embd=16)
    for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        with pytest.raises(ValueError, match=f"{name}=0 is out of range"):
            TinyGPTConfig(**{"vocab_size": V, "block_size": T, name: 0})
    with pytest.raises(ValueError, match=r"n_layer=1\.5 is float"):
        TinyGPTConfig(V, T, n_layer=1.5)
    numpy_sizes = TinyGPTConfig(np.int64(V), np.int64(T), n_layer=np.int64(1))  # sizes read from arrays
    assert json.loads(json.dumps(TinyGPT.from_config(numpy_sizes, device="cpu").spec()))["n_layer"] == 1


def test_devices():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="not a device"):
        resolve_device("gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_generation_greedy_and_sampled():
    model = gpt(seeds=2)
    prompts = torch.randint(3, V, (3, 4))
    greedy = model.generate(prompts, max_new_tokens=5)
    assert greedy.shape == (2, 3, 5) and torch.equal(greedy, model.generate(prompts, max_new_tokens=5))
    sampled = [model.generate(prompts, max_new_tokens=5, greedy=False, generators=seed_generators(1, model.seeds))
               for _ in range(2)]  # fmt: skip
    assert torch.equal(*sampled)
    for seed in greedy.tolist():  # nothing but padding after <eos>
        for row in seed:
            if EOS in row:
                assert all(t == 0 for t in row[row.index(EOS) + 1 :])
    with pytest.raises(ValueError, match="temperature"):
        model.generate(prompts, greedy=False, temperature=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_autocast_training_and_generation():
    world = TokenWorld(SortTask(length=3, n_train=32, n_test=8))
    model = TinyGPT(world.n_ids, world.block_size, n_layer=1, n_head=2, n_embd=16, seeds=2, device="auto")
    assert model.device.type == "cuda"
    ids = world.training_data().demos.ids.cuda()
    assert model(ids).dtype == torch.bfloat16
    for algo in ("sft", "ift", "dpo"):
        result = train(model, make_rule(algo), world, world.training_data(), TrainConfig(steps=2, lr=1e-3))
        assert torch.isfinite(torch.as_tensor(result.history["loss"])).all()
    assert world.score(model, "test").shape == (2,)
    assert world.sample(model, 4, seed_generators(0, model.seeds)).ids.device.type == "cuda"


def test_embed_reads_a_given_table():
    model = gpt(seeds=2)
    ids = torch.randint(0, V, (4, 7))
    copy = model.embedding_table().detach().clone() + 1.0  # shaped like embedding_table(), as IFT's frozen copy
    torch.testing.assert_close(model.embed(ids, copy), model.embed(ids).detach() + 1.0)


def test_checkpoint_round_trip(tmp_path):
    from iftgym.policies.checkpoint import load_policy, save_policy

    model = gpt(seeds=[4, 9])
    path = save_policy(model, tmp_path / "gpt.safetensors", {"task": "sort"})
    loaded = load_policy(path)
    assert isinstance(loaded, TinyGPT) and loaded.spec() == model.spec() and loaded.device.type == "cpu"
    ids = torch.randint(0, V, (3, T))
    assert torch.equal(loaded(ids), model(ids))
