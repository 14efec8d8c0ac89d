"""iftgym's ``grpo`` against TRL's ``GRPOTrainer``: completions per second on one tiny GPT-2 on the CPU, generation
included.

Run: ``.venv/bin/python benchmarks/bench_grpo.py [--quick] [--json PATH]`` (default: about 2 minutes on 2 cores;
``--quick``: under 30 s; ``--json``: the numbers and their targets, ``benchmarks/_results.py``).

Both sides train the same model: the GPT-2 of ``examples/gpt2-tiny.json`` (2 layers, 4 heads, 64 wide, dropout 0)
with the task's vocabulary and special ids, built from the config in code (nothing is downloaded), the same initial
weights (seed 0), fp32 on the CPU. The task is ``envs/tokens/reverse.jsonl`` (``--task``) with the character
tokenizer built in code (``character_tokenizer``); a prompt is ``<s>`` and its characters on both sides (checked:
TRL's tokenisation of every prompt string must equal iftgym's prompt ids, or the script stops). Every step samples
``--prompts`` prompts and ``--group`` completions of each (TRL: ``per_device_train_batch_size = prompts x group``,
``num_generations = group``, one generation batch per step; iftgym: ``grpo(n_episodes=prompts x group,
num_generations=group)``), at temperature 1 with no top-k, top-p or min-p, with the KV cache, each completion at most
the task's longest answer + 1 tokens (TRL's ``max_completion_length``, iftgym's cap) and stopping at ``</s>``. The
reward is the same function on both sides, the task's exact match (:meth:`TokenWorld.final_reward`: 1 for the
reference answer ending in ``</s>``). The rule's settings are TRL's defaults on both: ``loss_type="dapo"``,
``beta=0`` (no reference model), ``scale_rewards="group"``, ``epsilon=0.2``, ``num_iterations=1``; AdamW with weight
decay 0, a constant learning rate and no gradient clipping. TRL's trainer runs with ``use_cpu=True``, ``bf16=False``,
no vLLM, logging, saving and evaluation off; iftgym's with :func:`iftgym.loop.train`.

A step is the wall time from one optimiser step's end to the next's (iftgym: the loop's ``log`` callback; TRL:
``on_step_end``): sampling the prompts, generating, scoring, the loss, backward and the optimiser step, with each
library's bookkeeping; the first ``--warmup`` steps of every run are dropped. The two run in turn, ``--rounds`` rounds
of ``--steps`` steps each, the order reversed every other round. Throughput: completions per second (both generate
``prompts x group`` completions a step, so the ratio is the ratio of steps per second) and completion tokens per
second (every token generated, ``</s>`` included, counted on each side where its reward reads the completions: the
two sample independently, so their completions' lengths differ a little). The ratio iftgym / TRL is the median of the
rounds' ratios; target: at least 1.5x completions per second.

``--threads`` defaults to 1: these models gain nothing from a second thread, and on shared cores two threads make
the step times swing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from _results import Results, add_json_option, round_count
from bench_hf import IftgymRun, TrlRun, quiet

from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.hf_tokenizer import character_tokenizer
from iftgym.worlds.tokens.tasks import make_task

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "examples" / "gpt2-tiny.json"
TARGET = 1.5  # iftgym's completions/s over TRL's
QUICK = {"rounds": 2, "steps": 10, "warmup": 2}
VOCAB = 64  # the character tokenizer's ids, rounded up (as bench_hf)


def model_config(tokenizer: Any) -> dict[str, Any]:
    """``examples/gpt2-tiny.json`` with the task's vocabulary and the tokenizer's special ids."""
    config = json.loads(MODEL.read_text())
    config.update(vocab_size=VOCAB, bos_token_id=tokenizer.bos_id, eos_token_id=tokenizer.eos_id,
                  pad_token_id=tokenizer.pad_id)  # fmt: skip
    return config


class Counter:
    """Completions and completion tokens generated, as each side's scoring sees them."""

    def __init__(self) -> None:
        self.completions, self.tokens, self.rewards = 0, 0, 0.0

    def add(self, lengths: list[int], rewards: list[float]) -> None:
        self.completions += len(lengths)
        self.tokens += sum(lengths)
        self.rewards += sum(rewards)

    def take(self) -> tuple[int, int, float]:
        out = (self.completions, self.tokens, self.rewards)
        self.completions, self.tokens, self.rewards = 0, 0, 0.0
        return out


def counting_world(world: TokenWorld, counter: Counter) -> TokenWorld:
    """``world`` whose :meth:`~TokenWorld.sample_like` (where GRPO answers each start ``group`` times) also counts the
    completions, their tokens and their rewards (the starts' one-token draws are not completions: not counted)."""
    sample_like = world.sample_like

    def counted(*args: Any, **kwargs: Any):
        batch = sample_like(*args, **kwargs)
        counter.add(batch.mask.sum(-1).flatten().tolist(), batch.rewards.sum(-1).flatten().tolist())
        return batch

    world.sample_like = counted
    return world


def trl_trainer(config: dict, world: TokenWorld, tokenizer: Any, counter: Counter, folder: str,
                args: argparse.Namespace) -> Any:  # fmt: skip
    """TRL's ``GRPOTrainer`` on the same model, prompts, group size, completion cap and reward."""
    import datasets
    import transformers
    from trl import GRPOConfig, GRPOTrainer

    def exact_match(prompts, completions, completion_ids, task_prompt, **kwargs) -> list[float]:
        rewards = [world.final_reward(world.prompt_ids(p), tuple(ids)) for p, ids in zip(task_prompt, completion_ids)]
        counter.add([len(ids) for ids in completion_ids], rewards)
        return rewards

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the same initial weights as HFPolicy's seed 0
        settings = dict(config)
        model = transformers.AutoModelForCausalLM.from_config(
            transformers.AutoConfig.for_model(settings.pop("model_type"), **settings)
        )
    examples = world.task.train
    rows = [{"prompt": tokenizer.hf.bos_token + ex.prompt, "task_prompt": ex.prompt} for ex in examples]
    copies = math.ceil(args.prompts * (args.steps + 1) / len(rows)) + 1  # no epoch boundary inside a run
    grpo = GRPOConfig(
        output_dir=folder, per_device_train_batch_size=args.prompts * args.group, num_generations=args.group,
        gradient_accumulation_steps=1, max_completion_length=world.max_answer_tokens, temperature=1.0, top_p=1.0,
        top_k=0, beta=0.0, loss_type="dapo", scale_rewards="group", epsilon=0.2, num_iterations=1,
        max_steps=args.steps, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=0.0, optim="adamw_torch", bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False,
        logging_strategy="no", save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True,
        dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        trainer = GRPOTrainer(model=model, reward_funcs=exact_match, args=grpo, processing_class=tokenizer.hf,
                              train_dataset=datasets.Dataset.from_list(rows * copies))  # fmt: skip
    # Like with like: TRL must generate from exactly iftgym's prompt ids.
    trl_ids = tokenizer.hf(text=[row["prompt"] for row in rows])["input_ids"]
    if [list(world.prompt_ids(ex.prompt)) for ex in examples] != [list(ids) for ids in trl_ids]:
        raise SystemExit("TRL's tokenised prompts differ from iftgym's prompt ids: the comparison would be unfair")
    return trainer


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a ~30 s smoke run: fewer rounds and steps")
    parser.add_argument("--task", default="reverse", help="a jsonl task of envs/tokens (default: reverse)")
    parser.add_argument("--group", type=int, default=8, help="completions per prompt, the group size (default 8)")
    parser.add_argument("--prompts", type=int, default=2, help="prompts per step (default 2)")
    parser.add_argument("--steps", type=int, default=40, help="steps per run of a trainer (default 40)")
    parser.add_argument("--rounds", type=round_count, default=5, help="rounds of both contenders (default 5)")
    parser.add_argument("--warmup", type=int, default=5, help="first steps of every run not timed (default 5)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default 1e-3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see above)")
    add_json_option(parser)
    args = parser.parse_args(argv)
    record = Results("bench_grpo", args, sys.argv[1:] if argv is None else argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if args.warmup < 1 or args.steps < args.warmup + 2:
        parser.exit(2, "bench_grpo.py: --warmup must be at least 1 and --steps at least --warmup + 2\n")
    if args.group < 2 or args.prompts < 1:
        parser.exit(2, "bench_grpo.py: --group must be at least 2 (a group compares completions), --prompts >= 1\n")
    torch.set_num_threads(args.threads)
    quiet()
    import transformers
    import trl

    start = time.perf_counter()
    task = make_task("jsonl", path=args.task)
    tokenizer = character_tokenizer(task.alphabet)
    counters = {"iftgym": Counter(), "trl": Counter()}
    world = counting_world(TokenWorld(task, tokenizer=tokenizer, vocab_size=VOCAB), counters["iftgym"])
    config = model_config(tokenizer)
    longest = max(len(world.prompt_ids(ex.prompt)) for ex in task.train) + world.max_answer_tokens
    if longest > config["n_positions"]:
        parser.exit(2, f"bench_grpo.py: prompts + answers of {longest} tokens exceed the model's "
                       f"{config['n_positions']} positions\n")  # fmt: skip
    completions = args.prompts * args.group
    rule = f"grpo(n_episodes={completions},num_generations={args.group})"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, trl {trl.__version__}, "
          f"{torch.get_num_threads()} thread(s); task {args.task!r}: {len(task.train)} prompts; model "
          f"{MODEL.relative_to(ROOT)}; {args.prompts} prompts x {args.group} completions per step, at most "
          f"{world.max_answer_tokens} tokens each; iftgym {rule}")  # fmt: skip

    step_args = argparse.Namespace(steps=args.steps, lr=args.lr, batch=completions)  # what IftgymRun reads
    runs: dict[str, Any] = {"iftgym": IftgymRun(rule, config, world, None, step_args)}
    missing = None
    with tempfile.TemporaryDirectory() as folder:
        try:
            runs["trl"] = TrlRun(trl_trainer(config, world, tokenizer, counters["trl"], folder, args))
        except Exception as error:  # any failure to build TRL's trainer is reported, not hidden
            traceback.print_exc()
            missing = f"TRL's GRPOTrainer could not be built here: {type(error).__name__}: {error}".splitlines()[0]
            print(f"not measured: {missing}")
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        order = list(runs)
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else reversed(order):
                counters[name].take()
                steps = runs[name].run()[args.warmup - 1 :]  # interval i ends step i + 2: drop warmup steps in all
                n, tokens, rewards = counters[name].take()
                step_s = statistics.median(steps)
                rounds[name].append({"step_s": step_s, "completions_per_s": completions / step_s,
                                     "tokens_per_s": tokens / n * completions / step_s,
                                     "completion_tokens": tokens / n, "reward": rewards / n})  # fmt: skip

    results: dict[str, Any] = {}
    for name, per_round in rounds.items():
        results[name] = {key: statistics.median(r[key] for r in per_round) for key in per_round[0]}
        results[name]["rounds"] = per_round
    ratios: dict[str, list[float]] = {}
    if "trl" in results:
        for key in ("completions_per_s", "tokens_per_s"):
            ratios[key] = [ours[key] / theirs[key] for ours, theirs in zip(rounds["iftgym"], rounds["trl"])]
            results[f"over_trl_{key}"] = statistics.median(ratios[key])

    print(f"\nGRPO, GPT-2 2x64 fp32 CPU, median of {args.rounds} rounds x {args.steps - args.warmup} steps")
    print(f"{'trainer':<26}{'step ms':>9}{'completions/s':>15}{'tokens/s':>10}{'tokens/compl.':>15}{'reward':>8}")
    for name, label in (("iftgym", "iftgym loop.train grpo"), ("trl", "TRL GRPOTrainer")):
        if name in results:
            r = results[name]
            print(f"{label:<26}{1000 * r['step_s']:>9.1f}{r['completions_per_s']:>15.1f}{r['tokens_per_s']:>10.0f}"
                  f"{r['completion_tokens']:>15.2f}{r['reward']:>8.3f}")  # fmt: skip
    if ratios:
        ratio = results["over_trl_completions_per_s"]
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"iftgym / TRL: completions/s {ratio:.2f}x (rounds {min(ratios['completions_per_s']):.2f}-"
              f"{max(ratios['completions_per_s']):.2f}; target >= {TARGET:g}x: {verdict}), "
              f"completion tokens/s {results['over_trl_tokens_per_s']:.2f}x")  # fmt: skip
    else:
        print(f"iftgym / TRL: not measured: {missing}")
    print(f"total {time.perf_counter() - start:.0f} s")

    trl_r = results.get("trl")
    record.number("over_trl", results.get("over_trl_completions_per_s"), "x", "completions/s", (">=", TARGET))
    record.number("over_trl_lowest", min(ratios["completions_per_s"]) if ratios else None, "x", "lowest round")
    record.number("over_trl_tokens", results.get("over_trl_tokens_per_s"), "x", "completion tokens/s")
    record.number("iftgym_completions", results["iftgym"]["completions_per_s"], "completions/s", "iftgym")
    record.number("trl_completions", trl_r["completions_per_s"] if trl_r else None, "completions/s", "TRL")
    record.target(f"iftgym's `grpo` at least {TARGET:g}x the throughput of TRL's `GRPOTrainer`, generation included "
                  f"(same GPT-2 2x64 of `examples/gpt2-tiny.json`, fp32 on the CPU, no vLLM; {args.prompts} prompts x "
                  f"{args.group} completions per step of at most {world.max_answer_tokens} tokens, exact-match "
                  f"reward, `loss_type=\"dapo\"`, `beta=0`; medians of {args.rounds} rounds)", "over_trl",
                  "over_trl_lowest", "over_trl_tokens", "iftgym_completions", "trl_completions",
                  note=f"not measured: {missing}" if missing else None)  # fmt: skip
    record.info.update(versions={"torch": torch.__version__, "transformers": transformers.__version__,
                                 "trl": trl.__version__}, rule=rule, results=results, not_measured=missing)  # fmt: skip
    record.write()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
