"""iftgym against TRL on one tiny Hugging Face GPT-2, iftgym's own step-cost ratios, and KV-cached generation.

Run: ``.venv/bin/python benchmarks/bench_hf.py [--quick] [--json PATH]`` (default: about 1.5 minutes on 2 cores;
``--quick``: under 30 s; ``--json``: the numbers and their targets, ``benchmarks/_results.py``). Everything runs in fp32
on the CPU, on models built from configs in code (nothing is downloaded), with the preference data shipped in
``envs/tokens/reverse_preference.jsonl`` and a character tokenizer (``character_tokenizer``), the same token sequences
for both libraries.

1. **iftgym against TRL, time per optimiser step.** One GPT-2 (``n_layer=2, n_head=4, n_embd=64``, dropout 0),
   ``--batch`` sequences per step (DPO: that many pairs, chosen and rejected), AdamW (weight decay 0, constant
   learning rate, no gradient clipping) on both sides. iftgym trains with :func:`iftgym.loop.train` (SFT, offline
   DPO, whose reference log-probabilities the rule computes once before the first step); TRL with ``SFTTrainer``
   (data given as ``input_ids`` and ``labels``, already tokenised) and ``DPOTrainer`` with
   ``precompute_ref_log_probs=True`` (the same once-only reference), both with ``bf16=False``, no gradient
   checkpointing, ``use_cpu=True``, logging, saving and evaluation off. A further row times TRL's default DPO, which
   runs the reference model at every step. A step is the wall time from one optimiser step's end to the next's
   (iftgym: the loop's ``log`` callback; TRL: ``on_step_end``), data loading and the trainers' own bookkeeping
   included; the first ``--warmup`` steps of every run are dropped. The contenders run in turn, ``--rounds`` rounds
   of ``--steps`` steps each, the order reversed every other round; the ratio iftgym/TRL (steps/s) is the median of
   the rounds' ratios.
2. **iftgym's step-cost ratios**: offline DPO / SFT and IFT / SFT step time, on this GPT-2 and on iftgym's
   ``TinyGPT`` of the same size, the same batch every step (the rule's loss, backward, an AdamW step and the rule's
   after-step, as the loop runs them), the rules interleaved step by step; medians of ``--rule-steps`` steps. Targets:
   DPO at most 2.1x SFT, IFT at most 1.40x SFT.
3. **Generation with the KV cache against recomputing the whole sequence** at every token: greedy answers of
   ``--new-tokens`` tokens to ``--gen-batch`` prompts of the task, for TinyGPT and the GPT-2 (``initializer_range``
   0.3 for the generation GPT-2, so that its random greedy answers vary and a cache bug cannot hide behind a constant
   answer). The end-of-sequence id is one the model never writes (checked), so every answer runs its full length.
   Cached and recomputed answers must be identical (checked and printed; the script exits with status 1 otherwise).
   Target: cached at least 5x the tokens/s. Repeats alternate the modes; medians.
4. Whether CUDA was available: generation (3) also runs there when it is; nothing else does.

``--threads`` defaults to 1: these models gain nothing from a second thread, and on shared cores two threads make
the step times swing by 5x or more.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from _results import Results, add_json_option, round_count
from rich.console import Console
from rich.table import Table

from iftgym.decoding import generate
from iftgym.loop import TrainConfig, train
from iftgym.policies.base import Policy
from iftgym.policies.hf import HFPolicy
from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.rules import make_rule
from iftgym.types import StepBatch
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer
from iftgym.worlds.tokens.tasks import make_task

TASK = "reverse_preference"
RULES = ("sft", "ift", "dpo")
TARGETS = {"dpo": 2.1, "ift": 1.40, "cache_speedup": 5.0, "over_trl": 1.5}
QUICK = {"rounds": 2, "steps": 15, "warmup": 3, "rule_steps": 12, "gen_repeats": 2}


def gpt2_config(vocab: int, positions: int, tokenizer: Any, initializer_range: float = 0.02) -> dict[str, Any]:
    """The tiny GPT-2 of every measurement, dropout off, its special ids the tokenizer's."""
    return {"model_type": "gpt2", "vocab_size": vocab, "n_positions": positions, "n_embd": 64, "n_layer": 2,
            "n_head": 4, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
            "initializer_range": initializer_range, "bos_token_id": tokenizer.bos_id,
            "eos_token_id": tokenizer.eos_id, "pad_token_id": tokenizer.pad_id}  # fmt: skip


def sequences(batch: StepBatch) -> list[list[int]]:
    """Each row's whole token sequence (its first input, then every action through the last target)."""
    out = []
    for ids, actions, mask in zip(batch.ids.tolist(), batch.actions.tolist(), batch.mask.tolist()):
        last = max(t for t, m in enumerate(mask) if m)
        out.append([ids[0], *actions[: last + 1]])
    return out


def quiet() -> None:
    """Silence the libraries' progress bars, warnings and info lines (they would scramble the tables)."""
    os.environ["TQDM_DISABLE"] = "1"
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


# -- 1. iftgym against TRL ---------------------------------------------------------------------------------------
class IftgymRun:
    """iftgym's loop on one HFPolicy: each ``run`` trains ``steps`` steps and returns the step intervals."""

    def __init__(self, rule: str, config: dict, world: TokenWorld, data: Any, args: argparse.Namespace) -> None:
        self.rule, self.world, self.data, self.args = rule, world, data, args
        self.policy = HFPolicy(config, seeds=1, device="cpu")
        self.round = 0

    def run(self) -> list[float]:
        ends: list[float] = []
        config = TrainConfig(steps=self.args.steps, lr=self.args.lr, optimizer="adamw", batch_size=self.args.batch,
                             seed=self.round)  # fmt: skip
        train(self.policy, self.rule, self.world, self.data, config, log=lambda _: ends.append(time.perf_counter()))
        self.round += 1
        return [b - a for a, b in itertools.pairwise(ends)]


class TrlRun:
    """A TRL trainer built once; each ``run`` calls ``train()`` for ``steps`` steps and returns the step intervals."""

    def __init__(self, trainer: Any) -> None:
        import transformers

        self.ends: list[float] = []
        ends = self.ends

        class Clock(transformers.TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                ends.append(time.perf_counter())

        for printer in (transformers.trainer_callback.PrinterCallback, transformers.trainer_callback.ProgressCallback):
            trainer.remove_callback(printer)
        trainer.add_callback(Clock())
        self.trainer = trainer

    def run(self) -> list[float]:
        self.ends.clear()
        self.trainer.train()
        return [b - a for a, b in itertools.pairwise(self.ends)]


def trl_runs(config: dict, task: Any, tokenizer: Any, data: Any, folder: str, args: argparse.Namespace) -> dict:
    """TRL's SFT, DPO (reference precomputed) and DPO (reference model live) trainers on the same token sequences as
    iftgym's batches."""
    import datasets
    import transformers
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    def model() -> Any:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same initial weights as HFPolicy's seed 0
            settings = dict(config)
            return transformers.AutoModelForCausalLM.from_config(
                transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
            )

    # enough copies of the data that one epoch outlasts a run: no epoch boundary (and sampler restart) inside a run
    copies = math.ceil(args.batch * (args.steps + 1) / data.demos.size) + 1
    demos = sequences(data.demos)
    sft_rows = [{"input_ids": seq, "labels": [-100, *(a if m else -100 for a, m in zip(seq[1:], mask))]}
                for seq, mask in zip(demos, data.demos.mask.tolist())]  # fmt: skip
    # the prompt starts with <s> as iftgym's does; DPOTrainer appends </s> to both answers
    pair_rows = [{"prompt": tokenizer.hf.bos_token + ex.prompt, "chosen": ex.completion, "rejected": ex.rejected}
                 for ex in task.train if ex.rejected is not None]  # fmt: skip
    common = dict(output_dir=folder, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
                  max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0,
                  weight_decay=0.0, max_grad_norm=0.0, optim="adamw_torch", bf16=False, fp16=False, use_cpu=True,
                  gradient_checkpointing=False, logging_strategy="no", save_strategy="no", eval_strategy="no",
                  report_to=[], disable_tqdm=True, dataloader_drop_last=True, dataloader_num_workers=0,
                  max_length=None, seed=0)  # fmt: skip
    hf = tokenizer.hf
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        sft = SFTTrainer(model=model(), args=SFTConfig(**common), train_dataset=datasets.Dataset.from_list(
            sft_rows * copies), processing_class=hf)  # fmt: skip
        dpo = DPOTrainer(
            model=model(),
            args=DPOConfig(**common, precompute_ref_log_probs=True),
            train_dataset=datasets.Dataset.from_list(pair_rows * copies),
            processing_class=hf,
        )
        dpo_live = DPOTrainer(
            model=model(),
            ref_model=model(),
            args=DPOConfig(**common),
            train_dataset=datasets.Dataset.from_list(pair_rows * copies),
            processing_class=hf,
        )
    # Like with like: TRL must train on exactly iftgym's token sequences.
    chosen, rejected = sequences(data.pairs.chosen), sequences(data.pairs.rejected)
    prepared = dpo.train_dataset
    trl_chosen = [p + c for p, c in zip(prepared["prompt_ids"], prepared["chosen_ids"])][: len(chosen)]
    trl_rejected = [p + r for p, r in zip(prepared["prompt_ids"], prepared["rejected_ids"])][: len(rejected)]
    if trl_chosen != chosen or trl_rejected != rejected:
        raise SystemExit("TRL's tokenised pairs differ from iftgym's sequences: the comparison would be unfair")
    return {"trl sft": TrlRun(sft), "trl dpo": TrlRun(dpo), "trl dpo live-ref": TrlRun(dpo_live)}


def against_trl(config: dict, task: Any, tokenizer: Any, world: TokenWorld, args: argparse.Namespace,
                console: Console) -> dict:  # fmt: skip
    data = world.training_data()
    if args.batch > data.demos.size:
        raise SystemExit(f"--batch {args.batch} is more than the task's {data.demos.size} examples")
    with tempfile.TemporaryDirectory() as folder:
        runs: dict[str, Any] = {
            "iftgym sft": IftgymRun("sft", config, world, data, args),
            "iftgym dpo": IftgymRun("dpo", config, world, data, args),
            **trl_runs(config, task, tokenizer, data, folder, args),
        }
        medians: dict[str, list[float]] = {name: [] for name in runs}
        pooled: dict[str, list[float]] = {name: [] for name in runs}
        order = list(runs)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else reversed(order):
                steps = runs[name].run()[args.warmup - 1 :]  # interval i ends step i + 2: drop warmup steps in all
                medians[name].append(statistics.median(steps))
                pooled[name].extend(steps)
    pairs = {"iftgym sft": ("trl sft",), "iftgym dpo": ("trl dpo", "trl dpo live-ref")}
    seq_len = data.demos.ids.shape[-1]
    rows = {
        "iftgym sft": ("sft", "iftgym loop.train", f"{args.batch}", f"{seq_len}"),
        "trl sft": ("sft", "TRL SFTTrainer", f"{args.batch}", f"<= {seq_len + 1}"),
        "iftgym dpo": ("dpo", "iftgym loop.train (offline, reference once)", f"2 x {args.batch}", f"{seq_len}"),
        "trl dpo": ("dpo", "TRL DPOTrainer (precompute_ref_log_probs)", f"{2 * args.batch}", f"<= {seq_len + 1}"),
        "trl dpo live-ref": ("dpo", "TRL DPOTrainer (reference every step)", f"{2 * args.batch}",
                             f"<= {seq_len + 1}"),
    }  # fmt: skip
    results: dict[str, Any] = {}
    for name in runs:
        step_s = statistics.median(pooled[name])
        results[name] = {"step_s": step_s, "steps_per_s": 1 / step_s, "round_medians_s": medians[name]}
    for ours, theirs in pairs.items():
        for other in theirs:
            ratios = [t / o for o, t in zip(medians[ours], medians[other])]
            results[other]["iftgym_over_trl"] = statistics.median(ratios)
            results[other]["iftgym_over_trl_range"] = [min(ratios), max(ratios)]

    table = Table(title=f"1. iftgym vs TRL, time per optimiser step: GPT-2 2x64, fp32 CPU, {torch.get_num_threads()} "
                        f"thread(s), median of {args.rounds} rounds x {args.steps - args.warmup} steps")  # fmt: skip
    for column in ("rule", "trainer", "seqs/step", "tokens/seq", "step ms", "steps/s", "iftgym/TRL steps/s",
                   "rounds' range"):  # fmt: skip
        table.add_column(column, justify="left" if column in ("rule", "trainer") else "right")
    for name in ("iftgym sft", "trl sft", "iftgym dpo", "trl dpo", "trl dpo live-ref"):
        r = results[name]
        rule, trainer, seqs, length = rows[name]
        ratio = f"{r['iftgym_over_trl']:.2f}x" if "iftgym_over_trl" in r else ""
        spread = "{:.2f}-{:.2f}".format(*r["iftgym_over_trl_range"]) if "iftgym_over_trl_range" in r else ""
        table.add_row(rule, trainer, seqs, length, f"{1000 * r['step_s']:.1f}", f"{r['steps_per_s']:.1f}", ratio,
                      spread)  # fmt: skip
    console.print(table)
    return results


# -- 2. iftgym's step-cost ratios ---------------------------------------------------------------------------------
def rule_costs(make_policy: Callable[[], Policy], world: TokenWorld, args: argparse.Namespace) -> dict:
    """Median step time of each rule, the rules interleaved step by step on the same batch."""
    data = world.training_data()
    index = torch.arange(args.batch)
    demos, pairs = data.demos.select(index), data.pairs.select(index)
    contenders = {}
    for name in RULES:
        policy = make_policy()
        rule = make_rule(name)
        rule.setup(policy, world, seed_generators(0, policy.seeds))
        batch = rule.prepare(policy, pairs if rule.data == "pairs" else demos)  # DPO: the reference, once
        optimizer = torch.optim.AdamW([*policy.parameters(), *rule.parameters()], lr=args.lr, weight_decay=0.0)
        contenders[name] = (policy, rule, batch, optimizer)

    def step(name: str, i: int) -> None:
        policy, rule, batch, optimizer = contenders[name]
        rule.collect(policy, i)  # as the loop does (nothing to collect for these rules)
        loss, _ = rule.loss(policy, batch, i)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        rule.after_step(policy)

    times: dict[str, list[float]] = {name: [] for name in RULES}
    for i in range(args.warmup + args.rule_steps):
        for name in RULES[i % 3 :] + RULES[: i % 3]:  # each rule in each place of the order in turn
            start = time.perf_counter()
            step(name, i)
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    return {name: {"step_s": medians[name], "vs_sft": medians[name] / medians["sft"]} for name in RULES}


def step_ratios(config: dict, world: TokenWorld, args: argparse.Namespace, console: Console) -> dict:
    models = {
        "GPT-2 (HFPolicy)": lambda: HFPolicy(config, seeds=1, device="cpu"),
        "TinyGPT": lambda: TinyGPT(world.n_ids, args.positions, 2, 4, 64, seeds=1, device="cpu"),
    }
    results = {name: rule_costs(make, world, args) for name, make in models.items()}
    table = Table(title=f"2. iftgym step cost by rule: batch {args.batch}, {world.training_data().demos.ids.shape[-1]}"
                        f" tokens/seq, median of {args.rule_steps} interleaved steps")  # fmt: skip
    for column in ("model", "SFT ms", "IFT ms", "DPO ms", "IFT / SFT", "DPO / SFT"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model, r in results.items():
        marks = {name: "" if r[name]["vs_sft"] <= TARGETS[name] else " (over)" for name in ("ift", "dpo")}
        table.add_row(model, *(f"{1000 * r[name]['step_s']:.1f}" for name in RULES),
                      f"{r['ift']['vs_sft']:.3f}{marks['ift']}", f"{r['dpo']['vs_sft']:.3f}{marks['dpo']}")  # fmt: skip
    console.print(table)
    for model, r in results.items():
        verdicts = [
            f"{name.upper()} {r[name]['vs_sft']:.3f}x SFT (target <= {TARGETS[name]}): "
            f"{'met' if r[name]['vs_sft'] <= TARGETS[name] else 'NOT met'}"
            for name in ("dpo", "ift")
        ]
        console.print(f"{model}: {'; '.join(verdicts)}")
    return results


# -- 3. generation --------------------------------------------------------------------------------------------------
def never_written(policy: Policy, prompts: torch.Tensor, lengths: torch.Tensor, args: argparse.Namespace,
                  pad: int) -> tuple[int, torch.Tensor]:  # fmt: skip
    """An end-of-sequence id the model's greedy answers never contain (so every answer runs its full length), and
    those answers; ids unused by the tokenizer are tried first."""
    candidates = list(range(policy.n_actions - 1, -1, -1))
    for eos in candidates:
        if eos == pad:
            continue
        with torch.no_grad():
            answers = generate(policy, prompts, lengths, args.new_tokens, greedy=True, eos=eos, pad=pad)
        if not (answers == eos).any():
            return eos, answers
    raise SystemExit("the model writes every token id: no end-of-sequence id leaves the answers their full length")


def generation(world: TokenWorld, tokenizer: Any, args: argparse.Namespace, device: str, console: Console) -> dict:
    examples = world.task.train[: args.gen_batch]
    ids = [world.prompt_ids(ex.prompt) for ex in examples]
    lengths = torch.tensor([len(p) for p in ids])
    width = int(lengths.max())
    if width + args.new_tokens > args.positions:
        raise SystemExit(f"prompts of {width} tokens + {args.new_tokens} new ones exceed --positions {args.positions}")
    prompts = torch.full((len(ids), width), world.pad, dtype=torch.long)
    for b, p in enumerate(ids):
        prompts[b, : len(p)] = torch.tensor(p)
    config = gpt2_config(world.n_ids, args.positions, tokenizer, initializer_range=0.3)
    models = {
        "TinyGPT": lambda: TinyGPT(world.n_ids, args.positions, 2, 4, 64, seeds=1, device=device),
        "GPT-2 (HFPolicy)": lambda: HFPolicy(config, seeds=1, device=device),
    }
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    modes = {"cached": True, "recomputed": False}
    results: dict[str, Any] = {}
    for model, make in models.items():
        policy = make()
        eos, reference = never_written(policy, prompts, lengths, args, world.pad)
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        identical = True
        for r in range(args.gen_repeats + 1):  # the first round warms up
            for mode in list(modes) if r % 2 == 0 else reversed(list(modes)):
                sync()
                start = time.perf_counter()
                answers = generate(policy, prompts, lengths, args.new_tokens, greedy=True, eos=eos, pad=world.pad,
                                   cache=modes[mode])  # fmt: skip
                sync()
                if r:
                    times[mode].append(time.perf_counter() - start)
                identical &= torch.equal(answers, reference)
        tokens = answers.numel()
        medians = {mode: statistics.median(t) for mode, t in times.items()}
        results[model] = {
            "eos": eos,
            "tokens": tokens,
            "identical": bool(identical),
            **{mode: {"s": s, "tokens_per_s": tokens / s} for mode, s in medians.items()},
            "speedup": medians["recomputed"] / medians["cached"],
        }
    table = Table(title=f"3. greedy generation on {device}: {args.gen_batch} prompts of {int(lengths.min())}-{width} "
                        f"tokens, {args.new_tokens} new tokens each, median of {args.gen_repeats} repeats")  # fmt: skip
    for column in ("model", "mode", "ms", "tokens/s", "speed-up", "answers"):
        table.add_column(column, justify="left" if column in ("model", "mode", "answers") else "right")
    for model, r in results.items():
        for mode in modes:
            speedup = {"cached": f"{r['speedup']:.2f}x", "recomputed": "1.00x"}.get(mode, "")
            note = ""
            if mode == "cached":
                note = f"== recomputed: {'identical' if r['identical'] else 'DIFFERENT'}"
            elif mode == "recomputed":
                note = f"all full length (eos id {r['eos']} never written)"
            table.add_row(model, mode, f"{1000 * r[mode]['s']:.1f}", f"{r[mode]['tokens_per_s']:.0f}", speedup, note)
    console.print(table)
    for model, r in results.items():
        met = "met" if r["speedup"] >= TARGETS["cache_speedup"] else "NOT met"
        console.print(f"{model} on {device}: cached {r['speedup']:.2f}x the tokens/s of recomputing "
                      f"(target >= {TARGETS['cache_speedup']:.0f}x): {met}; cached and recomputed answers "
                      f"{'identical' if r['identical'] else 'DIFFER'}")  # fmt: skip
    return results


def record_numbers(record: Results, results: dict[str, Any], args: argparse.Namespace, world: TokenWorld) -> None:
    """The numbers and targets of ``--json``: iftgym against TRL, the step-cost ratios, generation per device."""
    trl = results["trl"]
    for rule, other in (("sft", "trl sft"), ("dpo", "trl dpo")):
        record.number(f"trl_{rule}", trl[other]["iftgym_over_trl"], "x", rule.upper(), (">=", TARGETS["over_trl"]))
    for rule, other in (("sft", "trl sft"), ("dpo", "trl dpo")):
        record.number(f"trl_{rule}_lowest", trl[other]["iftgym_over_trl_range"][0], "x",
                      f"{rule.upper()}'s lowest round")  # fmt: skip
    record.number("trl_dpo_live", trl["trl dpo live-ref"]["iftgym_over_trl"], "x",
                  "against TRL's default DPO (reference model every step)")  # fmt: skip
    record.target(f"iftgym's SFT and DPO steps at least {TARGETS['over_trl']:g}x the throughput of TRL's "
                  f"`SFTTrainer` / `DPOTrainer` (same tiny GPT-2 2x64, batch {args.batch}, fp32 on the CPU, "
                  "`bf16=False`, AdamW, no clipping; TRL's DPO with `precompute_ref_log_probs=True`, as iftgym's "
                  f"offline DPO; medians of {args.rounds} rounds)", "trl_sft", "trl_dpo", "trl_sft_lowest",
                  "trl_dpo_lowest", "trl_dpo_live")  # fmt: skip
    keys = []
    for model, short in (("GPT-2 (HFPolicy)", "gpt2"), ("TinyGPT", "tinygpt")):
        for rule in ("dpo", "ift"):
            keys.append(f"{short}_{rule}")
            record.number(keys[-1], results["step_ratios"][model][rule]["vs_sft"], "x", f"{model.split()[0]} "
                          f"{rule.upper()}", ("<=", TARGETS[rule]))  # fmt: skip
    tokens = world.training_data().demos.ids.shape[-1]
    record.target(f"offline DPO step at most {TARGETS['dpo']:g}x an SFT step; IFT at most {TARGETS['ift']:.2f}x "
                  f"(2x64 models, batch {args.batch} x {tokens} tokens, CPU, median of {args.rule_steps} interleaved "
                  "steps)", *keys)  # fmt: skip
    for device in ("cpu", "cuda"):
        keys = []
        for model, r in results["generation"].get(device, {}).items():
            short = model.split()[0]
            keys.append(f"generation_{device}_{short}")
            record.number(keys[-1], r["speedup"], "x", short, (">=", TARGETS["cache_speedup"]))
            keys.append(f"generation_{device}_{short}_identical")
            record.number(keys[-1], r["identical"], "", f"{short}'s cached and recomputed answers identical",
                          ("==", True))  # fmt: skip
        if not keys:  # no CUDA device
            keys.append(f"generation_{device}")
            record.number(keys[-1], None, "x", "cached / recomputed")
        record.target(f"generation with the KV cache at least {TARGETS['cache_speedup']:g}x full recomputation "
                      f"({device.upper() if device == 'cuda' else 'CPU'}, {args.gen_batch} prompts, "
                      f"{args.new_tokens}-token answers, medians of {args.gen_repeats})", *keys,
                      note=None if device in results["generation"] else "no CUDA device")  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run: fewer rounds, steps and repeats")
    parser.add_argument("--batch", type=int, default=32, help="sequences (DPO: pairs) per step (default 32, <= 59)")
    parser.add_argument("--steps", type=int, default=50, help="steps per run of a trainer in part 1 (default 50)")
    parser.add_argument("--rounds", type=round_count, default=7, help="rounds of every contender in part 1 (default 7)")
    parser.add_argument("--warmup", type=int, default=5, help="first steps of every run not timed (default 5)")
    parser.add_argument("--rule-steps", type=int, default=100, help="timed steps per rule in part 2 (default 100)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--positions", type=int, default=128,
                        help="position embeddings of both models (default 128; >= prompt + --new-tokens)")  # fmt: skip
    parser.add_argument("--gen-batch", type=int, default=16, help="prompts per generation (default 16)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens per answer (default 64)")
    parser.add_argument("--gen-repeats", type=int, default=9, help="timed generations per mode (default 9)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see above)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    record = Results("bench_hf", args, sys.argv[1:] if argv is None else argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.warmup < 1 or args.steps < args.warmup + 2:
        raise SystemExit("--warmup must be at least 1 and --steps at least --warmup + 2")
    torch.set_num_threads(args.threads)
    quiet()
    import transformers
    import trl

    console = Console(width=120)
    start = time.perf_counter()
    task = make_task("jsonl", path=TASK)
    tokenizer = character_tokenizer(task.alphabet)
    vocab = 64  # the tokenizer's 35 ids, rounded up
    world = TokenWorld(task, tokenizer=tokenizer, vocab_size=vocab)
    config = gpt2_config(vocab, args.positions, tokenizer)
    console.print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
                  f"{torch.get_num_threads()} thread(s); task {TASK!r}: {len(task.train)} examples")  # fmt: skip

    results: dict[str, Any] = {"trl": against_trl(config, task, tokenizer, world, args, console)}
    results["step_ratios"] = step_ratios(config, world, args, console)
    cuda = torch.cuda.is_available()
    results["generation"] = {"cpu": generation(world, tokenizer, args, "cpu", console)}
    if cuda:
        results["generation"]["cuda"] = generation(world, tokenizer, args, "cuda", console)
        console.print(f"CUDA available ({torch.cuda.get_device_name()}): generation tokens/s measured there too")
    else:
        console.print("CUDA not available: CUDA tokens/s were not measured (training and generation ran on the CPU)")
    console.print(f"total {time.perf_counter() - start:.0f} s")
    record_numbers(record, results, args, world)
    record.info.update(cuda=cuda, versions={"torch": torch.__version__, "transformers": transformers.__version__,
                                            "trl": trl.__version__}, results=results)  # fmt: skip
    record.write()
    if not all(r["identical"] for per_device in results["generation"].values() for r in per_device.values()):
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
