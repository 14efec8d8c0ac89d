"""Hugging Face causal LMs as policies: K seeds on the toolkit's API, every rule trains them, IFT on a GPT-2 equals
IFT on a TinyGPT with the same weights, and the key-value cache decodes as the full recomputation does."""

from __future__ import annotations

import pytest
import torch

from iftgym.decoding import generate
from iftgym.loop import TrainConfig, make_stages, train
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.rules import make_rule
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld

transformers = pytest.importorskip("transformers")
from iftgym.policies.hf import HFPolicy  # noqa: E402  (needs transformers)

NO_DROPOUT = {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}


def gpt2(world: TokenWorld, **settings) -> dict:
    """A tiny GPT-2 config for ``world``, as TinyGPT is built: exact GELU, untied head, no dropout."""
    return {"model_type": "gpt2", "vocab_size": world.n_ids, "n_positions": world.block_size, "n_embd": 16,
            "n_layer": 2, "n_head": 2, "activation_function": "gelu", "tie_word_embeddings": False, **NO_DROPOUT,
            **settings}  # fmt: skip


def port_to_tiny_gpt(policy: HFPolicy, world: TokenWorld) -> TinyGPT:
    """A TinyGPT holding the same weights as each seed of a GPT-2 policy (GPT-2's Conv1D stores (in, out), as
    TinyGPT's linear layers do; the head is GPT-2's lm_head transposed, with a zero bias)."""
    config = policy.config
    tiny = TinyGPT(world.n_ids, world.block_size, config.n_layer, config.n_head, config.n_embd, seeds=policy.seeds,
                   device="cpu")  # fmt: skip
    with torch.no_grad():
        for k, model in enumerate(policy.models):
            body = model.transformer
            tiny.wte[k], tiny.wpe[k] = body.wte.weight, body.wpe.weight[: world.block_size]
            for block, layer in zip(tiny.blocks, body.h):
                for mine, theirs in ((block.ln_1, layer.ln_1), (block.ln_2, layer.ln_2),
                                     (block.c_attn, layer.attn.c_attn), (block.attn_proj, layer.attn.c_proj),
                                     (block.c_fc, layer.mlp.c_fc), (block.mlp_proj, layer.mlp.c_proj)):  # fmt: skip
                    mine.weight[k], mine.bias[k] = theirs.weight, theirs.bias
            tiny.ln_f.weight[k], tiny.ln_f.bias[k] = body.ln_f.weight, body.ln_f.bias
            tiny.head.weight[k], tiny.head.bias[k] = model.lm_head.weight.T, 0.0
    return tiny


def test_seeds_start_alone_as_beside_others_and_dropout_stays_off(reverse) -> None:
    pair = HFPolicy(gpt2(reverse, resid_pdrop=0.5), seeds=[3, 4], device="cpu")
    alone = HFPolicy(gpt2(reverse, resid_pdrop=0.5), seeds=[4], device="cpu")
    assert pair.embedding_table().shape == (2, reverse.n_ids, 16)
    for mine, theirs in zip(pair.models[1].parameters(), alone.models[0].parameters()):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)
    assert not torch.equal(pair.models[0].transformer.wte.weight, pair.models[1].transformer.wte.weight)
    pair.train()
    ids = reverse.training_data().demos.ids[:4]
    torch.testing.assert_close(pair(ids), pair(ids))  # no dropout even in train mode
    torch.testing.assert_close(pair(ids)[1], alone(ids)[0])


def test_forward_and_embeddings_follow_the_model(reverse) -> None:
    policy = HFPolicy(gpt2(reverse), seeds=2, device="cpu")
    ids = reverse.training_data().demos.ids[:3]
    embedded = policy.embed(ids)
    torch.testing.assert_close(embedded, policy.embedding_table()[:, ids])
    for k, model in enumerate(policy.models):
        torch.testing.assert_close(policy(ids)[k], model(input_ids=ids).logits)
        torch.testing.assert_close(policy(embedded)[k], model(input_ids=ids).logits)


@pytest.mark.parametrize("algo", ["ift", "sft", "ift(lam=0.5,gamma=0.9)"])
def test_ift_on_gpt2_equals_ift_on_a_tiny_gpt_with_the_same_weights(reverse, algo) -> None:
    policy = HFPolicy(gpt2(reverse), seeds=2, device="cpu")
    tiny = port_to_tiny_gpt(policy, reverse)
    batch = reverse.training_data().demos.select(torch.arange(6))
    torch.testing.assert_close(tiny(batch.ids), policy(batch.ids), rtol=1e-5, atol=1e-5)
    losses = []
    for model in (policy, tiny):
        rule = make_rule(algo)
        rule.setup(model, reverse, seed_generators(0, model.seeds))
        loss, _ = rule.loss(model, rule.prepare(model, batch), 0)
        loss.sum().backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-6)
    for k, model in enumerate(policy.models):  # the gradient of every ported weight agrees
        body = model.transformer
        pairs = [(tiny.blocks[0].c_attn.weight.grad[k], body.h[0].attn.c_attn.weight.grad),
                 (tiny.blocks[1].mlp_proj.weight.grad[k], body.h[1].mlp.c_proj.weight.grad),
                 (tiny.ln_f.weight.grad[k], body.ln_f.weight.grad),
                 (tiny.head.weight.grad[k], model.lm_head.weight.grad.T),
                 (tiny.wpe.grad[k], body.wpe.weight.grad[: reverse.block_size])]  # fmt: skip
        for mine, theirs in pairs:
            torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
        if algo.startswith("ift"):  # IFT reads its inputs from a frozen copy of the input embedding
            assert body.wte.weight.grad is None or not body.wte.weight.grad.any()
            assert tiny.wte.grad is None or not tiny.wte.grad.any()


@pytest.mark.parametrize("algo", ["sft", "ift", "dpo", "dpo-online", "orpo", "reinforce", "ppo", "sft+dpo"])
def test_every_rule_trains_a_hugging_face_model_through_the_loop(reverse, algo) -> None:
    # on-policy rules learn from a reward an untrained model can earn: per token of the reference's prefix
    world = TokenWorld(reverse.task, reward="token") if algo in ("reinforce", "ppo") else reverse
    policy = HFPolicy(gpt2(world, n_layer=1), seeds=2, device="cpu")
    before = [p.detach().clone() for p in policy.parameters()]
    stages = make_stages(algo, 4, overrides={"dpo": {"n_samples": 2}} if algo == "dpo-online" else None)
    result = train(policy, stages, world, config=TrainConfig(steps=4, lr=1e-3, batch_size=4))
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in result.history.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters()))


def test_sft_lowers_the_loss_of_a_hugging_face_model(reverse) -> None:
    policy = HFPolicy(gpt2(reverse), seeds=1, device="cpu")
    result = train(policy, "sft", reverse, config=TrainConfig(steps=30, lr=3e-3, batch_size=16))
    assert result.history["loss"][-5:].mean() < 0.85 * result.history["loss"][:5].mean()


@pytest.mark.parametrize("greedy", [True, False])
def test_the_key_value_cache_decodes_as_full_recomputation(reverse, greedy) -> None:
    policy = HFPolicy(gpt2(reverse), seeds=2, device="cpu")
    with torch.no_grad():  # a confident random model, so that answers run long and differ by seed
        for parameter in policy.parameters():
            parameter.mul_(8)
    prompts = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 0, 0, 0], [1, 4, 4, 0, 0]])
    lengths = torch.tensor([5, 2, 3])
    runs = [generate(policy, prompts, lengths, 8, greedy, generators=seed_generators(0, policy.seeds), cache=cache)
            for cache in (True, False)]  # fmt: skip
    assert torch.equal(runs[0], runs[1])


def test_a_pretrained_folder_starts_every_seed_from_its_weights(reverse, tmp_path) -> None:
    source = HFPolicy(gpt2(reverse), seeds=[5], device="cpu")
    source.models[0].save_pretrained(tmp_path / "model")
    loaded = HFPolicy(pretrained=tmp_path / "model", seeds=2, device="cpu")
    ids = reverse.training_data().demos.ids[:2]
    for k in range(2):
        torch.testing.assert_close(loaded(ids)[k], source(ids)[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "expected exactly one of them"),
        ({"config": {"n_layer": 2}}, "expected a transformers config or a dict with a 'model_type'"),
        ({"config": {"model_type": "no-such-model"}}, "model_type 'no-such-model' is unknown to transformers"),
        ({"config": {"model_type": "gpt2", "n_layer": "two"}}, "cannot build a gpt2 config from"),
        ({"pretrained": "/nonexistent"}, "is not a model folder"),
    ],
)
def test_bad_models_are_refused_in_one_line(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        HFPolicy(**kwargs, device="cpu")


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("gpt2", {"n_layer": 2, "n_embd": 32, "n_head": 4, "vocab_size": 50, "n_positions": 32}),
        ("gpt2", {"n_layer": 3, "n_embd": 16, "n_head": 2, "vocab_size": 70, "n_positions": 24, "n_inner": 100,
                  "tie_word_embeddings": False}),
        ("llama", {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 80, "num_attention_heads": 4,
                   "num_key_value_heads": 2, "vocab_size": 50}),
        ("qwen2", {"num_hidden_layers": 2, "hidden_size": 32, "intermediate_size": 80, "num_attention_heads": 4,
                   "vocab_size": 50}),
        ("mixtral", {"num_hidden_layers": 1, "hidden_size": 16, "intermediate_size": 40, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "num_local_experts": 3, "vocab_size": 50}),
    ],
)  # fmt: skip
def test_the_parameter_count_read_from_a_config_bounds_the_model_closely(kind, settings) -> None:
    from iftgym.policies.hf import estimate_parameters, model_config

    config = model_config({"model_type": kind, **settings})
    actual = transformers.AutoModelForCausalLM.from_config(config).num_parameters()
    assert actual <= estimate_parameters(config) <= 1.5 * actual


def test_a_huge_config_is_refused_before_any_weights_are_built(monkeypatch) -> None:
    def build(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_config", build)
    huge = {"model_type": "gpt2", "n_layer": 10_000, "vocab_size": 10**8}
    with pytest.raises(ValueError, match=r"a gpt2 config with 3 seeds \([\d,]+ parameters\) needs about .* more than "
                       "this machine's") as err:  # fmt: skip
        HFPolicy(huge, seeds=3, device="cpu")
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


def test_a_pickle_named_model_safetensors_is_refused_and_never_unpickled(reverse, tmp_path, monkeypatch) -> None:
    import pickle

    HFPolicy(gpt2(reverse), seeds=[0], device="cpu").models[0].save_pretrained(tmp_path / "model")
    torch.save({"weight": torch.zeros(3)}, tmp_path / "model" / "model.safetensors")  # a pickle under the name

    def unpickle(*args, **kwargs):
        raise AssertionError("a pickle was loaded")

    monkeypatch.setattr(pickle, "load", unpickle)
    monkeypatch.setattr(torch, "load", unpickle)
    with pytest.raises(ValueError, match=r"model\.safetensors' is not a valid safetensors file") as err:
        HFPolicy(pretrained=tmp_path / "model", device="cpu")
    assert "\n" not in str(err.value)


def test_a_config_error_echoes_a_short_part_of_the_config() -> None:
    with pytest.raises(ValueError, match="cannot build a gpt2 config from") as err:
        HFPolicy({"model_type": "gpt2", "n_layer": "two", "note": "x" * 50_000}, device="cpu")
    assert len(str(err.value)) < 300


def test_train_checks_a_hugging_face_policy_against_the_world(reverse) -> None:
    policy = HFPolicy(gpt2(reverse, vocab_size=reverse.n_ids + 3), seeds=2, device="cpu")
    assert policy.n_ids == reverse.n_ids + 3
    with pytest.raises(ValueError, match=f"the policy reads {reverse.n_ids + 3} input ids"):
        train(policy, "sft", reverse)
