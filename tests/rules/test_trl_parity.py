"""Parity with TRL: iftgym's SFT, DFT, DPO, ORPO, GRPO (every loss type) and RLOO losses on a tiny Hugging Face
GPT-2 equal the losses TRL's own trainers compute on the same model and the same batch (and where a normalisation
genuinely differs, the difference is pinned down exactly).

TRL's loss code is called as TRL ships it: ``SFTTrainer.compute_loss``, ``DPOTrainer._compute_loss``,
``ORPOTrainer.get_batch_loss_metrics``, ``GRPOTrainer._compute_loss`` and ``RLOOTrainer._compute_loss`` run on a
trainer instance whose ``__init__`` is skipped (building a real trainer needs a tokenizer, a ``datasets`` pipeline
and an accelerator) and which holds only the attributes those methods read, set the way the trainers' ``__init__``
sets them from their configs' defaults. The model gets TRL's fused LM head (``trl.trainer.utils.add_fused_lm_head``,
as the trainers' ``__init__`` patch it), and the batches come from TRL's own collators
(``DataCollatorForLanguageModeling``, ``DataCollatorForPreference``, ``DPODataCollatorWithPadding``) fed with the
token ids of iftgym's world, so the test also pins iftgym's ``StepBatch`` layout (ids, shifted actions, completion
mask) against TRL's labels. GRPO and RLOO score the groups iftgym's rule sampled: TRL's per-token log-probabilities
of the current, sampling and reference models come from its own ``_get_per_token_logps_and_entropies``; its
advantages, computed inside its sampling code, are written out line by line with TRL's ``nanstd``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import warnings
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from iftgym import TrainConfig, train
from iftgym.policies.hf import HFPolicy
from iftgym.rules import make_rule
from iftgym.rules.common import step_logps
from iftgym.types import StepBatch
from iftgym.world import seed_generators
from iftgym.worlds.tokens.tasks import Example, make_task
from iftgym.worlds.tokens.world import TokenWorld

pytest.importorskip("transformers")
pytest.importorskip("trl")
trl_utils = pytest.importorskip("trl.trainer.utils")
sft_trainer = pytest.importorskip("trl.trainer.sft_trainer")
sft_config = pytest.importorskip("trl.trainer.sft_config")
dpo_trainer = pytest.importorskip("trl.trainer.dpo_trainer")
dpo_config = pytest.importorskip("trl.trainer.dpo_config")
grpo_trainer = pytest.importorskip("trl.trainer.grpo_trainer")
grpo_config = pytest.importorskip("trl.trainer.grpo_config")
rloo_trainer = pytest.importorskip("trl.trainer.rloo_trainer")
rloo_config = pytest.importorskip("trl.trainer.rloo_config")

RTOL, ATOL = 1e-5, 1e-6  # float32 throughout
CPU = torch.device("cpu")


def _import_orpo():
    """TRL's ORPO lives in ``trl.experimental`` (which warns on import); its trainer, config and collator."""
    from trl.import_utils import TRLExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TRLExperimentalWarning)
        trainer = pytest.importorskip("trl.experimental.orpo.orpo_trainer")
        config = pytest.importorskip("trl.experimental.orpo.orpo_config")
        utils = pytest.importorskip("trl.experimental.utils")
    return trainer, config, utils


# -- the world, the model and TRL's trainers without their __init__ ----------------------------------------------


@pytest.fixture(scope="module")
def world() -> TokenWorld:
    """The shipped preference data (TRL's prompt/chosen/rejected format) with the character tokenizer: prompts of
    15-16 tokens (``<bos>`` included), answers of 6 tokens (the first 7 examples) or 7 (the rest), ``<eos>``
    included; chosen and rejected answers of a pair have equal lengths."""
    return TokenWorld(make_task("jsonl", path="reverse_preference"))


def make_policy(world: TokenWorld, seed: int = 0) -> HFPolicy:
    config = {"model_type": "gpt2", "vocab_size": world.n_ids, "n_positions": 64, "n_embd": 32, "n_layer": 2,
              "n_head": 4, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
              "bos_token_id": world.tokenizer.bos_id, "eos_token_id": world.eos}  # fmt: skip
    return HFPolicy(config, seeds=[seed], device="cpu")


def perturb(policy: HFPolicy, scale: float, seed: int) -> None:
    """Add seeded Gaussian noise to every parameter (moves the policy away from its reference / sharpens it)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.add_(scale * torch.randn(parameter.shape, generator=generator))


class _Accelerator:
    """What the trainers' loss code reads of an ``accelerate.Accelerator``: one CPU process."""

    device = CPU
    num_processes = 1
    is_main_process = True
    parallelism_config = None

    @staticmethod
    def gather(tensor):
        return tensor

    gather_for_metrics = gather

    @staticmethod
    def reduce(tensor, reduction="sum"):
        return tensor

    @staticmethod
    def autocast():
        return contextlib.nullcontext()


def _default(config_class, name: str):
    """A TRL config field's default, read from the dataclass (instantiating ``TrainingArguments`` would validate
    devices and precision for the machine the test runs on)."""
    field = next(f for f in dataclasses.fields(config_class) if f.name == name)
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def bare_trainer(trainer_class, model, **attributes):
    """A TRL trainer whose ``__init__`` is skipped: TRL's own loss methods, with the attributes they read."""
    trainer = object.__new__(trainer_class)
    trainer.__dict__.update(
        model=model,
        accelerator=_Accelerator(),
        aux_loss_enabled=False,
        _metrics={"train": defaultdict(list), "eval": defaultdict(list)},
        _total_train_tokens=0,
        _tp_size=1,
        **attributes,
    )
    return trainer


def grads(model: torch.nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(model.parameters())))


def assert_grads_close(got: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)


# -- SFT -----------------------------------------------------------------------------------------------------------


def trl_sft(world: TokenWorld, model, examples: list[Example], loss_type: str | None = None):
    """TRL's SFT loss and per-token log-probabilities on prompt-completion examples.

    Dataset preparation (trl/trainer/sft_trainer.py, ``_prepare_dataset``): ``input_ids`` = prompt + completion
    token ids, ``completion_mask`` = 0 on the prompt and 1 on the completion (lines 1366-1369), then labels =
    ``input_ids`` with -100 where the mask is 0 (``build_labels``, lines 1407-1432, a closure, so it is reproduced
    here); ``DataCollatorForLanguageModeling`` pads (labels with -100); ``SFTTrainer.compute_loss`` runs the model
    with its fused LM head and divides the summed negative log-likelihood by the number of label tokens of the
    whole batch (lines 1611-1618; ``num_items_in_batch``, which ``Trainer`` passes as the same count for a single
    batch without gradient accumulation, is left ``None``). ``loss_type="dft"`` weights each token's loss by its
    detached probability (lines 1613-1615) before that division."""
    features = []
    for ex in examples:
        prompt, completion = world.prompt_ids(ex.prompt), world.answer_ids(ex.completion, ex.prompt)
        input_ids = [*prompt, *completion]
        completion_mask = [0] * len(prompt) + [1] * len(completion)
        labels = [token if bit else -100 for token, bit in zip(input_ids, completion_mask, strict=True)]
        features.append({"input_ids": input_ids, "labels": labels})
    inputs = sft_trainer.DataCollatorForLanguageModeling(pad_token_id=world.pad)(features)
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # as SFTTrainer.__init__ does
    loss_type = _default(sft_config.SFTConfig, "loss_type") if loss_type is None else loss_type
    args = SimpleNamespace(loss_type=loss_type, average_tokens_across_devices=False)
    trainer = bare_trainer(sft_trainer.SFTTrainer, model, args=args, compute_loss_func=None, label_smoother=None)
    loss = trainer.compute_loss(model, dict(inputs))
    with torch.no_grad():
        per_token = model(**inputs, fused_lm_head=True).log_probs  # (B, T - 1): log p(token t + 1), 0 off labels
    return loss, per_token, inputs["labels"][:, 1:] != -100


def iftgym_sft(
    world: TokenWorld, policy: HFPolicy, examples: list[Example], average: str = "sequence"
) -> tuple[torch.Tensor, StepBatch]:
    batch = world.step_batch([(ex.prompt, ex.completion) for ex in examples])
    rule = make_rule("sft", average=average)
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    loss, _ = rule.loss(policy, rule.prepare(policy, batch), 0)
    return loss, batch


def test_sft_matches_trl_on_equal_length_completions(world: TokenWorld) -> None:
    """Every completion 7 tokens long: iftgym's mean over sequences of per-sequence means is TRL's token mean, so the
    losses (and their gradients) agree; the step log-probabilities agree position by position, i.e. the StepBatch
    (ids, shifted actions, mask) is TRL's (input_ids, labels[1:]) layout."""
    examples = world.task.train[7:15]
    policy = make_policy(world)
    model = policy.models[0]
    loss, batch = iftgym_sft(world, policy, examples)
    assert set(batch.lengths.tolist()) == {7}
    trl_loss, per_token, label_mask = trl_sft(world, model, examples)
    torch.testing.assert_close(loss, trl_loss.reshape(1), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(batch.mask, label_mask)
    with torch.no_grad():
        torch.testing.assert_close(step_logps(policy, batch)[0], per_token, rtol=RTOL, atol=ATOL)
    assert_grads_close(grads(model, loss.sum()), grads(model, trl_loss))


def test_sft_normalisation_differs_from_trl_on_unequal_lengths_unless_asked_to_average_tokens(
    world: TokenWorld,
) -> None:
    """Completions of 6 and 7 tokens: iftgym averages each sequence's token losses, then the sequences (every
    demonstration weighs the same); TRL divides the batch's summed token losses by its token count (every token
    weighs the same). Both are checked against their formula on the same per-token log-probabilities, and shown
    to differ; ``sft(average="token")`` is TRL's."""
    examples = [*world.task.train[:4], *world.task.train[7:11]]
    policy = make_policy(world)
    perturb(policy, 0.3, seed=1)  # spread the per-sequence losses so the two averages separate clearly
    model = policy.models[0]
    loss, batch = iftgym_sft(world, policy, examples)
    assert batch.lengths.tolist() == [6] * 4 + [7] * 4
    trl_loss, per_token, label_mask = trl_sft(world, model, examples)
    nll = -per_token.detach() * label_mask
    per_sequence = (nll.sum(-1) / label_mask.sum(-1)).mean()  # iftgym: mean over sequences of sequence means
    token_mean = nll.sum() / label_mask.sum()  # TRL: mean over all completion tokens of the batch
    torch.testing.assert_close(loss.detach(), per_sequence.reshape(1), rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(trl_loss.detach(), token_mean, rtol=RTOL, atol=ATOL)
    assert abs(loss.item() - trl_loss.item()) > 1e-3
    token_loss, _ = iftgym_sft(world, policy, examples, average="token")
    torch.testing.assert_close(token_loss.detach(), trl_loss.detach().reshape(1), rtol=RTOL, atol=ATOL)


# -- DFT -----------------------------------------------------------------------------------------------------------


def test_dft_matches_trl_sft_with_loss_type_dft(world: TokenWorld) -> None:
    """``dft(average="token")`` is ``SFTTrainer.compute_loss`` with ``SFTConfig(loss_type="dft")`` (the batch's sum of
    ``-sg(p_t) log p_t`` over its token count), on completions of 6 and 7 tokens: loss and gradient. iftgym's
    default ``average="sequence"`` is checked against its formula on TRL's per-token log-probabilities."""
    examples = [*world.task.train[:4], *world.task.train[7:11]]
    policy = make_policy(world)
    perturb(policy, 1.0, seed=5)  # probabilities spread far from uniform, so the weights matter
    model = policy.models[0]
    batch = world.step_batch([(ex.prompt, ex.completion) for ex in examples])
    assert batch.lengths.tolist() == [6] * 4 + [7] * 4
    rule = make_rule('dft(average="token")')
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    loss, _ = rule.loss(policy, rule.prepare(policy, batch), 0)
    trl_loss, per_token, label_mask = trl_sft(world, model, examples, loss_type="dft")
    torch.testing.assert_close(loss, trl_loss.reshape(1), rtol=RTOL, atol=ATOL)
    assert_grads_close(grads(model, loss.sum()), grads(model, trl_loss))

    token_losses = -per_token.exp() * per_token * label_mask
    sequence_mean = (token_losses.sum(-1) / label_mask.sum(-1)).mean()
    sequence_loss, _ = make_rule("dft").loss(policy, batch, 0)
    torch.testing.assert_close(sequence_loss.detach(), sequence_mean.reshape(1), rtol=RTOL, atol=ATOL)
    assert abs(sequence_loss.item() / trl_loss.item() - 1) > 0.01  # the two averages differ on unequal lengths


# -- DPO -----------------------------------------------------------------------------------------------------------


# TRL's disable_gradient_checkpointing reads model.is_gradient_checkpointing, which transformers 5 deprecates.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_matches_trl(world: TokenWorld, beta: float) -> None:
    """iftgym's offline DPO (reference log-probabilities computed once in ``prepare``) against
    ``DPOTrainer._compute_loss`` (trl/trainer/dpo_trainer.py, line 1285: sigmoid loss, reverse KL, summed completion
    log-probabilities, reference model run in the loss): loss, gradient and the logged rewards and log-probs."""
    examples = world.task.train[:8]
    policy = make_policy(world)
    model = policy.models[0]
    ref_model = copy.deepcopy(model).eval()  # TRL's reference, taken independently of iftgym's frozen copy
    rule = make_rule("dpo", beta=beta)
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    data = rule.prepare(policy, world.pair_batch(examples))
    perturb(policy, 0.05, seed=2)  # the policy moves away from the reference (otherwise the loss is log 2)
    loss, metrics = rule.loss(policy, data, 0)

    features = [{"prompt_ids": list(world.prompt_ids(ex.prompt)),
                 "chosen_ids": list(world.answer_ids(ex.completion, ex.prompt)),
                 "rejected_ids": list(world.answer_ids(ex.rejected, ex.prompt))} for ex in examples]  # fmt: skip
    inputs = dpo_trainer.DataCollatorForPreference(pad_token_id=world.pad)(features)
    # As DPOTrainer.__init__ does (dpo_trainer.py, lines 957-962): the policy's fused head with the metrics' fields
    trl_utils.add_fused_lm_head(model, outputs=("log_probs", "entropy", "mean_logits", "is_top1"))
    trl_utils.add_fused_lm_head(ref_model)
    loss_types = _default(dpo_config.DPOConfig, "loss_type")
    trainer = bare_trainer(
        dpo_trainer.DPOTrainer,
        model,
        ref_model=ref_model,
        args=SimpleNamespace(gradient_checkpointing_kwargs=None),
        beta=beta,
        precompute_ref_logps=False,
        loss_types=loss_types,
        loss_weights=[1.0] * len(loss_types),
        ld_alpha=_default(dpo_config.DPOConfig, "ld_alpha"),
        f_divergence_type=_default(dpo_config.DPOConfig, "f_divergence_type"),
        f_alpha_divergence_coef=_default(dpo_config.DPOConfig, "f_alpha_divergence_coef"),
        label_smoothing=_default(dpo_config.DPOConfig, "label_smoothing"),
        use_weighting=_default(dpo_config.DPOConfig, "use_weighting"),
    )
    assert loss_types == ["sigmoid"]
    trl_loss = trainer._compute_loss(model, dict(inputs), return_outputs=False)

    assert abs(loss.item() - math.log(2)) > 1e-3  # the perturbation moved the policy off its reference
    torch.testing.assert_close(loss, trl_loss.reshape(1), rtol=RTOL, atol=ATOL)
    assert_grads_close(grads(model, loss.sum()), grads(model, trl_loss))
    logged = trainer._metrics["eval"]  # the models are in eval mode (HFPolicy keeps dropout off)
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies", "logps/chosen",
                "logps/rejected"):  # fmt: skip
        assert metrics[key].item() == pytest.approx(logged[key][-1], rel=1e-5, abs=1e-6), key


# -- ORPO ----------------------------------------------------------------------------------------------------------


def trl_orpo(world: TokenWorld, model, examples: list[Example], beta: float):
    """TRL's ORPO loss and metrics: features as ``ORPOTrainer.tokenize_row`` builds them
    (trl/experimental/orpo/orpo_trainer.py, lines 546-557: ``*_input_ids`` = prompt + answer, ``*_labels`` the same
    with -100 on the prompt; ``<bos>`` and ``<eos>`` are already there), padded by ``DPODataCollatorWithPadding``
    (its default collator), then ``get_batch_loss_metrics`` (line 824): the chosen NLL of ``concatenated_forward``
    (cross-entropy over every attended token, prompt included, line 799) minus the mean of ``odds_ratio_loss``
    (line 670) on the mean completion log-probabilities of ``get_batch_logps``."""
    orpo_trainer, orpo_config, orpo_utils = _import_orpo()
    features = []
    for ex in examples:
        prompt = list(world.prompt_ids(ex.prompt))
        feature = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
        for side, answer in (("chosen", ex.completion), ("rejected", ex.rejected)):
            ids = [*prompt, *world.answer_ids(answer, ex.prompt)]
            feature[f"{side}_input_ids"] = ids
            feature[f"{side}_attention_mask"] = [1] * len(ids)
            feature[f"{side}_labels"] = [-100] * len(prompt) + ids[len(prompt) :]
        features.append(feature)
    inputs = orpo_utils.DPODataCollatorWithPadding(pad_token_id=world.pad, is_encoder_decoder=False)(features)
    trainer = bare_trainer(orpo_trainer.ORPOTrainer, model, beta=beta, is_encoder_decoder=False,
                           padding_value=world.pad)  # fmt: skip
    assert _default(orpo_config.ORPOConfig, "beta") == 0.1  # TRL's default; iftgym's is 0.25: both set explicitly
    return trainer.get_batch_loss_metrics(model, inputs, train_eval="train")


def iftgym_orpo(world: TokenWorld, policy: HFPolicy, examples: list[Example], beta: float):
    rule = make_rule("orpo", beta=beta)
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    return rule.loss(policy, rule.prepare(policy, world.pair_batch(examples)), 0)


def test_orpo_matches_trl_when_the_nll_terms_coincide(world: TokenWorld) -> None:
    """Prompts of ``<bos>`` alone and answers of equal lengths: TRL's NLL (a token mean over every predicted token,
    prompt included) is then iftgym's (mean over pairs of each chosen answer's mean), so the whole ORPO losses and
    their gradients agree."""
    examples = [Example("", ex.completion, ex.rejected) for ex in world.task.train[7:15]]
    assert all(world.prompt_ids(ex.prompt) == (world.tokenizer.bos_id,) for ex in examples)
    policy = make_policy(world)
    perturb(policy, 0.3, seed=3)
    model = policy.models[0]
    loss, metrics = iftgym_orpo(world, policy, examples, beta=0.25)
    trl_loss, trl_metrics = trl_orpo(world, model, examples, beta=0.25)
    torch.testing.assert_close(loss, trl_loss.reshape(1), rtol=RTOL, atol=ATOL)
    assert metrics["nll_loss"].item() == pytest.approx(trl_metrics["nll_loss"], rel=1e-5, abs=1e-6)
    assert_grads_close(grads(model, loss.sum()), grads(model, trl_loss))


def test_orpo_odds_ratio_term_matches_trl_and_nll_normalisation_differs(world: TokenWorld) -> None:
    """The shipped pairs (real prompts, answers of 6 and 7 tokens): the odds-ratio term agrees exactly — the same
    mean completion log-probabilities (TRL's ``logps/chosen``, ``logps/rejected``), the same log-odds (TRL's
    ``log_odds_chosen``, iftgym's ``log_odds_ratio``; TRL's own ``log_odds_ratio`` is the mean log-sigmoid of it) and
    the same ``loss - nll_loss``. The NLL terms differ: iftgym's is the mean over pairs of each chosen answer's mean
    token loss; TRL's is the token mean over the chosen sequences' every predicted token, prompt included."""
    examples = [*world.task.train[:4], *world.task.train[7:11]]
    beta = 0.25
    policy = make_policy(world)
    perturb(policy, 0.3, seed=4)
    model = policy.models[0]
    loss, metrics = iftgym_orpo(world, policy, examples, beta)
    trl_loss, trl_metrics = trl_orpo(world, model, examples, beta)

    close = {"rel": 1e-5, "abs": 1e-6}
    assert metrics["log_odds_ratio"].item() == pytest.approx(trl_metrics["log_odds_chosen"], **close)
    assert -metrics["nll_loss"].item() == pytest.approx(trl_metrics["logps/chosen"], **close)
    odds_term = loss.item() - metrics["nll_loss"].item()
    assert odds_term == pytest.approx(trl_loss.item() - trl_metrics["nll_loss"], **close)
    assert odds_term == pytest.approx(-beta * trl_metrics["log_odds_ratio"], **close)

    # The NLL terms against their formulas, from the policy's own step log-probabilities of the chosen sequences.
    chosen = world.pair_batch(examples).chosen
    with torch.no_grad():
        logps = torch.log_softmax(policy(chosen.ids)[0], -1).gather(-1, chosen.actions.unsqueeze(-1)).squeeze(-1)
    steps = torch.stack([torch.arange(chosen.ids.shape[-1]) < len(world.prompt_ids(ex.prompt))
                         + len(world.answer_ids(ex.completion, ex.prompt)) - 1 for ex in examples])  # fmt: skip
    per_sequence = ((-logps * chosen.mask).sum(-1) / chosen.mask.sum(-1)).mean()  # completion only
    token_mean = (-logps * steps).sum() / steps.sum()  # prompt and completion
    assert metrics["nll_loss"].item() == pytest.approx(per_sequence.item(), **close)
    assert trl_metrics["nll_loss"] == pytest.approx(token_mean.item(), **close)
    assert abs(metrics["nll_loss"].item() - trl_metrics["nll_loss"]) > 1e-2


# -- GRPO and RLOO: iftgym's sampled groups scored by TRL's loss code ------------------------------------------------


@pytest.fixture(scope="module")
def addition() -> TokenWorld:
    """Two-digit sums, rewarded per correct token: every prompt has the same length, so TRL's left-padded prompts
    need no padding and the sequences TRL's model reads are iftgym's, position for position."""
    return TokenWorld(make_task("addition", digits=2, n_train=40, n_test=10, seed=1), reward="token")


@pytest.fixture(scope="module")
def warm(addition: TokenWorld) -> dict[str, torch.Tensor]:
    """The weights of a policy after a few SFT steps: its completions differ in reward within a group."""
    policy = make_policy(addition)
    train(policy, "sft", addition, config=TrainConfig(steps=30, lr=1e-2))
    return copy.deepcopy(policy.state_dict())


def trl_group_inputs(batch: StepBatch) -> dict[str, torch.Tensor]:
    """The first seed's sampled episodes as TRL's ``_generate_and_score_completions`` hands them to the loss
    (trl/trainer/grpo_trainer.py): ``prompt_ids``/``prompt_mask`` (left-padded, here all one length) and
    ``completion_ids``/``completion_mask`` (right-padded with 0s); a step batch's answer is its masked actions, its
    prompt the inputs up to the first answer step."""
    ids, actions, mask = batch.ids[0], batch.actions[0], batch.mask[0]
    first = mask.float().argmax(-1)
    prompts = [ids[b, : first[b] + 1] for b in range(batch.size)]
    assert len({len(p) for p in prompts}) == 1
    completions = [actions[b][mask[b]] for b in range(batch.size)]
    longest = max(len(c) for c in completions)
    completion_ids = torch.stack([torch.nn.functional.pad(c, (0, longest - len(c))) for c in completions])
    completion_mask = (torch.arange(longest) < torch.tensor([len(c) for c in completions])[:, None]).long()
    prompt_ids = torch.stack(prompts)
    return {"prompt_ids": prompt_ids, "prompt_mask": torch.ones_like(prompt_ids),
            "completion_ids": completion_ids, "completion_mask": completion_mask}  # fmt: skip


def trl_per_token_logps(trainer, model, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """TRL's own ``_get_per_token_logps_and_entropies`` of the completions under ``model`` (with TRL's fused head)."""
    input_ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
    attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
    with torch.no_grad():
        return trainer._get_per_token_logps_and_entropies(model, input_ids, attention_mask,
                                                          inputs["completion_ids"].size(1))[0]  # fmt: skip


def sampled_and_moved(world: TokenWorld, warm: dict[str, torch.Tensor], rule_name: str, **settings):
    """A policy whose reference (the policy at ``setup``), sampling policy (at ``collect``) and current policy (at the
    loss) all differ, so that the KL, the ratios and the clipping all act; TRL's copies of the three models, taken
    independently of iftgym's, and iftgym's loss at the second iteration on the collected groups."""
    policy = make_policy(world)
    policy.load_state_dict(warm)
    perturb(policy, 0.02, seed=11)
    model = policy.models[0]
    rule = make_rule(rule_name, **settings)
    rule.setup(policy, world, seed_generators(0, policy.seeds))
    ref_model = copy.deepcopy(model).eval()
    perturb(policy, 0.05, seed=12)  # the sampling policy moves away from the reference
    rule.collect(policy, 0)
    old_model = copy.deepcopy(model).eval()
    perturb(policy, 0.05, seed=13)  # an optimiser step's worth: ratios around 1, some outside the clip range
    loss, metrics = rule.loss(policy, None, 1)
    models = {"model": model, "old": old_model, "ref": ref_model}
    for name, m in models.items():
        trl_utils.add_fused_lm_head(m, outputs=("log_probs", "entropy") if name == "model" else ("log_probs",))
    return rule, loss, metrics, models


def test_grpo_defaults_are_trl_s() -> None:
    from iftgym.rules.grpo import GRPOConfig

    for name in ("num_generations", "loss_type", "epsilon", "epsilon_high", "beta", "scale_rewards", "num_iterations",
                 *SOFT_WEIGHTS):  # fmt: skip
        assert getattr(GRPOConfig(), name) == _default(grpo_config.GRPOConfig, name), name


# SAPO's gate temperatures and VESPO's gamma weight, set away from TRL's defaults so that each is seen to act
SOFT_WEIGHTS = {"sapo_temperature_pos": 0.8, "sapo_temperature_neg": 1.3, "vespo_k_pos": 1.5, "vespo_lambda_pos": 2.5,
                "vespo_k_neg": 2.5, "vespo_lambda_neg": 1.5}  # fmt: skip


# TRL's disable_gradient_checkpointing reads model.is_gradient_checkpointing, which transformers 5 deprecates.
@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo", "bnpo", "cispo", "sapo", "luspo", "vespo"])
@pytest.mark.parametrize("scale_rewards", ["group", "batch", "none"])
def test_grpo_matches_trl(addition: TokenWorld, warm: dict, loss_type: str, scale_rewards: str) -> None:
    """iftgym's GRPO on its own sampled groups (8 completions in groups of 4, mu = 2, beta > 0) against
    ``GRPOTrainer._compute_loss`` (trl/trainer/grpo_trainer.py, line 3020) on the same completions, TRL computing
    the per-token, old and reference log-probabilities itself from copies of the three models: loss, gradient and
    the logged KL and clip fraction (VESPO: its mean weight; SAPO logs neither). The advantages are TRL's lines
    2764-2788 (``sum_then_normalize``) written out with TRL's ``nanstd``."""
    epsilon_high = 1.05 if loss_type == "cispo" else 0.28
    rule, loss, metrics, models = sampled_and_moved(
        addition, warm, "grpo", n_episodes=8, num_generations=4, loss_type=loss_type, beta=0.04,
        epsilon_high=epsilon_high, scale_rewards=scale_rewards, num_iterations=2, max_completion_length=6,
        **SOFT_WEIGHTS,
    )  # fmt: skip
    samples = rule.samples
    inputs = trl_group_inputs(samples.batch)
    assert inputs["completion_mask"].sum(-1).unique().numel() > 1 or loss_type != "grpo"  # lengths differ

    rewards = samples.batch.rewards[0].sum(-1)
    grouped = rewards.view(-1, 4)
    mean = grouped.mean(1).repeat_interleave(4)
    if scale_rewards == "batch":
        std = trl_utils.nanstd(rewards).expand_as(rewards)
    else:
        std = trl_utils.nanstd(grouped, dim=1).repeat_interleave(4)
    advantages = rewards - mean if scale_rewards == "none" else (rewards - mean) / (std + 1e-4)
    torch.testing.assert_close(samples.advantages[0], advantages)
    assert advantages.abs().max() > 0  # some group has a reward signal

    model = models["model"]
    trainer = bare_trainer(
        grpo_trainer.GRPOTrainer, model,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1, **SOFT_WEIGHTS),
        loss_type=loss_type, beta=0.04, epsilon_low=0.2, epsilon_high=epsilon_high, max_completion_length=6,
        importance_sampling_level="token", top_entropy_quantile=1.0, off_policy_mask_threshold=None, use_vllm=False,
        current_gradient_accumulation_steps=1, _entropy_bonus_enabled=False,
    )  # fmt: skip
    inputs["old_per_token_logps"] = trl_per_token_logps(trainer, models["old"], inputs)
    inputs["ref_per_token_logps"] = trl_per_token_logps(trainer, models["ref"], inputs)
    inputs["advantages"] = advantages
    inputs["num_items_in_batch"] = inputs["completion_mask"].sum()
    trl_loss = trainer._compute_loss(model, inputs)

    torch.testing.assert_close(loss, trl_loss.reshape(1), rtol=RTOL, atol=ATOL)
    assert_grads_close(grads(model, loss.sum()), grads(model, trl_loss))
    logged = trainer._metrics["eval"]
    assert metrics["kl"].item() == pytest.approx(logged["kl"][-1], rel=1e-5, abs=1e-6)
    if loss_type == "sapo":  # a soft gate: nothing is clipped
        assert "clip_ratio" not in metrics and not any(key.startswith(("clip", "cispo")) for key in logged)
    elif loss_type == "vespo":
        assert metrics["phi"].item() == pytest.approx(logged["vespo/phi_seq_mean"][-1], rel=1e-5)
        assert abs(logged["vespo/phi_seq_mean"][-1] - 1) > 1e-3  # the weights act (1 at ratio 1)
    else:
        clip_key = "cispo_clip_ratio" if loss_type == "cispo" else "clip_ratio/region_mean"
        assert metrics["clip_ratio"].item() == pytest.approx(logged[clip_key][-1], rel=1e-5, abs=1e-6)
        assert logged[clip_key][-1] > 0  # the clipping acts on some tokens


def test_rloo_defaults_are_trl_s() -> None:
    from iftgym.rules.rloo import RLOOConfig

    for name in ("num_generations", "beta", "epsilon", "epsilon_high", "num_iterations", "normalize_advantages"):
        assert getattr(RLOOConfig(), name) == _default(rloo_config.RLOOConfig, name), name


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
@pytest.mark.parametrize(("beta", "normalize"), [(0.05, False), (0.05, True), (0.0, False)])
def test_rloo_matches_trl(addition: TokenWorld, warm: dict, beta: float, normalize: bool) -> None:
    """iftgym's RLOO on its own sampled groups (8 completions in groups of 4, two iterations) against
    ``RLOOTrainer._compute_loss`` (trl/trainer/rloo_trainer.py, line 1794: the clipped surrogate on each completion's
    summed log-probability, averaged over completions): loss, gradient and clip ratio. The advantages are TRL's lines
    1664-1699 written out: the reward minus ``beta`` times the summed ``log pi_old - log pi_ref`` of the completion,
    the leave-one-out baseline, optionally standardised with TRL's ``nanstd``."""
    rule, loss, metrics, models = sampled_and_moved(
        addition, warm, "rloo", n_episodes=8, num_generations=4, beta=beta, epsilon_high=0.28, num_iterations=2,
        normalize_advantages=normalize,
    )  # fmt: skip
    samples = rule.samples
    inputs = trl_group_inputs(samples.batch)
    model = models["model"]
    trainer = bare_trainer(rloo_trainer.RLOOTrainer, model, epsilon_low=0.2, epsilon_high=0.28)
    old_per_token_logps = trl_per_token_logps(trainer, models["old"], inputs)
    completion_mask = inputs["completion_mask"]
    rewards = samples.batch.rewards[0].sum(-1)
    if beta != 0.0:
        ref_per_token_logps = trl_per_token_logps(trainer, models["ref"], inputs)
        kl = ((old_per_token_logps - ref_per_token_logps) * completion_mask).sum(-1)
        rewards = rewards - beta * kl
        torch.testing.assert_close(samples.kl[0], kl, rtol=RTOL, atol=1e-5)
    grouped = rewards.view(-1, 4)
    baselines = ((grouped.sum(1, keepdim=True) - grouped) / (4 - 1)).view(-1)
    advantages = rewards - baselines
    if normalize:
        advantages = (advantages - advantages.mean()) / (trl_utils.nanstd(advantages) + 1e-4)
    torch.testing.assert_close(samples.advantages[0], advantages, rtol=RTOL, atol=1e-5)
    assert advantages.abs().max() > 0

    inputs["old_logps"] = (old_per_token_logps * completion_mask).sum(1)
    inputs["advantages"] = advantages
    trl_loss = trainer._compute_loss(model, inputs)
    torch.testing.assert_close(loss, trl_loss.reshape(1), rtol=RTOL, atol=ATOL)
    assert_grads_close(grads(model, loss.sum()), grads(model, trl_loss))
    logged = trainer._metrics["eval"]
    assert metrics["clip_ratio"].item() == pytest.approx(logged["clip_ratio/region_mean"][-1], rel=1e-5, abs=1e-6)
    assert 0 < logged["clip_ratio/region_mean"][-1] < 1  # some completions clipped, some not
    if beta != 0.0:
        assert metrics["kl"].item() == pytest.approx((kl.sum() / completion_mask.sum()).item(), rel=1e-5, abs=1e-6)
