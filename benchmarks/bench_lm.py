"""Cost of one training step of SFT, IFT, DPO, the SFT variants (DFT, EAFT, iw-SFT, ASFT) and GRPO on the same
TinyGPT, batch and sequence length.

One training step is: the rule's collect (GRPO: sampling its groups, generation included; nothing for the others),
its loss, backward, an Adam step and the rule's after-step (IFT's re-sync). All rules share one model and one batch
of sequences (DPO: the same sequences as chosen, plus their rejected twins; iw-SFT and ASFT: their reference, the
model as the rule was set up, iw-SFT's log-probabilities of the batch computed once, ASFT's full-vocabulary forward
pass read at every step; GRPO: ``--batch`` completions of its own per step, in groups of ``--group`` answering one
prompt of the task each, at most the demonstrations' answer length). Step times are measured interleaved, one step
of every rule per round, the order rotated every round, so that a change in the machine's load hits every rule
alike; the median of ``--steps`` rounds is reported. Throughput counts the tokens of the batch (B sequences for SFT,
IFT and the SFT variants, B chosen + B rejected for DPO, GRPO's B sampled sequences padded to its longest). Peak
memory: on CUDA the allocator's peak during one step of the rule (measured rule by rule, DPO's reference model
included); on the CPU, which keeps no such count, the training state (weights, gradients, Adam's two moments) plus
every tensor the step saves for backward (distinct storages, weights excluded). Each rule gets its data as the loop
hands it over (`Rule.prepare`: offline DPO and iw-SFT read the reference's log-probabilities of their fixed pairs or
demonstrations, computed once). Targets: IFT at most 1.40x SFT's step time (one extra no-grad forward: about 4/3 of
SFT), DPO at most 2.1x; DFT, EAFT and iw-SFT at most 1.1x, ASFT (its reference's full-vocabulary forward at every
step) at most 1.5x (issue 21); GRPO's step over SFT's is reported without a target (a random model's completions end
at a random ``<eos>``: its mean completion length is printed beside it).
``--json PATH`` writes the numbers and targets (``benchmarks/_results.py``); on CUDA they include the tokens/s of
SFT, IFT and DPO there.

    .venv/bin/python benchmarks/bench_lm.py                # CUDA if available, else CPU
    .venv/bin/python benchmarks/bench_lm.py --device cuda --batch 64 --length 60 --n-embd 256 --n-layer 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from _results import Results, add_json_option

from iftgym.policies.tiny_gpt import TinyGPT
from iftgym.rules import make_rule
from iftgym.rules.base import Rule
from iftgym.world import seed_generators
from iftgym.worlds.tokens import TokenWorld
from iftgym.worlds.tokens.tasks import SortTask

RULES = ("sft", "ift", "dpo", "dft", "eaft", "iw-sft", "asft", "grpo")
TARGETS = {"ift": 1.40, "dpo": 2.1}  # step time over SFT's
VARIANT_TARGETS = {"dft": 1.1, "eaft": 1.1, "iw-sft": 1.1, "asft": 1.5}  # the SFT variants' (issue 21)
NAMES = {"sft": "SFT", "ift": "IFT", "dpo": "DPO", "dft": "DFT", "eaft": "EAFT", "iw-sft": "iw-SFT", "asft": "ASFT",
         "grpo": "GRPO"}  # fmt: skip


def key_of(name: str) -> str:
    """A rule's name as a number's key: ``iw-sft`` -> ``iw_sft``."""
    return name.replace("-", "_")


def saved_bytes(compute: Callable[[], object], policy: torch.nn.Module) -> int:
    """Bytes of the distinct storages ``compute()`` saves for the backward pass, the model's weights excluded."""
    weights = {p.untyped_storage().data_ptr() for p in policy.parameters()}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in weights:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        compute()
    return sum(storages.values())


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    parser.add_argument("--batch", type=int, default=32, help="sequences (or pairs) per step (default: 32)")
    parser.add_argument("--length", type=int, default=30,
                        help="digits to sort: sequences of 2 * length + 3 tokens (default: 30 -> 63)")  # fmt: skip
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--seeds", type=int, default=1, help="seeds batched in the model (default: 1)")
    parser.add_argument("--steps", type=int, default=30, help="timed rounds of one step per rule (default: 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first (default: 3)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    parser.add_argument("--group", type=int, default=8,
                        help="GRPO's group size, completions per prompt; divides --batch (default: 8)")  # fmt: skip
    add_json_option(parser)
    args = parser.parse_args(argv)
    if args.group < 2 or args.batch % args.group:
        parser.exit(2, f"bench_lm.py: --group {args.group} must be at least 2 and divide --batch {args.batch}\n")
    record = Results("bench_lm", args, sys.argv[1:] if argv is None else argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    world = TokenWorld(SortTask(length=args.length, n_train=args.batch, n_test=1, seed=0))
    policy = TinyGPT(world.n_ids, world.block_size, args.n_layer, args.n_head, args.n_embd, seeds=args.seeds,
                     device=args.device)  # fmt: skip
    device = policy.device
    data = world.training_data()
    demos = data.demos.to(device)
    pairs = data.pairs.to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    prepared: dict[int, object] = {}  # each rule's data as the loop hands it over (DPO's reference computed once)

    def batch_of(rule: Rule):
        return prepared[id(rule)]

    def step(rule: Rule, i: int) -> None:
        rule.collect(policy, i)  # as the loop does (GRPO samples its groups; nothing to collect for the others)
        loss, _ = rule.loss(policy, batch_of(rule), i)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        rule.after_step(policy)

    def setup(name: str) -> Rule:
        rule = make_rule(f"grpo(n_episodes={args.batch},num_generations={args.group})" if name == "grpo" else name)
        rule.setup(policy, world, seed_generators(0, policy.seeds))
        data = {"pairs": pairs, "env": None}.get(rule.data, demos)
        prepared[id(rule)] = rule.prepare(policy, data)
        return rule

    step(setup("sft"), 0)  # Adam's state and lazy imports, before any measurement
    peak_mib = {}
    for name in RULES:  # memory, one rule at a time (DPO's reference model lives only while DPO is measured)
        rule = setup(name)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            step(rule, 0)
            peak_mib[name] = torch.cuda.max_memory_allocated(device) / 2**20
        else:
            state = 4 * sum(p.numel() * p.element_size() for p in policy.parameters())  # weights, grads, 2 moments
            rule.collect(policy, 0)  # GRPO's groups, sampled without gradient (nothing for the others)
            peak_mib[name] = (
                state + saved_bytes(lambda rule=rule: rule.loss(policy, batch_of(rule), 0), policy)
            ) / 2**20
        del rule

    rules = {name: setup(name) for name in RULES}
    times: dict[str, list[float]] = {name: [] for name in RULES}
    for i in range(args.warmup + args.steps):
        for name in RULES[i % len(RULES) :] + RULES[: i % len(RULES)]:  # each rule in each place of the order in turn
            rule = rules[name]
            sync()
            start = time.perf_counter()
            step(rule, i)
            sync()
            if i >= args.warmup:
                times[name].append(time.perf_counter() - start)

    results = {}
    for name, rule in rules.items():
        batch = batch_of(rule)
        if rule.data == "env":  # GRPO: the sequences it sampled last, padded to the longest
            tokens = rule.current_samples().batch.ids.numel()
        elif rule.data == "pairs":
            tokens = batch.chosen.ids.numel() + batch.rejected.ids.numel()
        else:
            tokens = batch.ids.numel()
        step_s = statistics.median(times[name])
        results[name] = {"step_s": step_s, "tokens_per_s": tokens / step_s, "peak_mib": peak_mib[name]}
    for r in results.values():
        r.update({f"{key}_vs_sft": r[key] / results["sft"][key] for key in ("step_s", "tokens_per_s", "peak_mib")})

    print(f"TinyGPT n_layer={args.n_layer} n_embd={args.n_embd} n_head={args.n_head} seeds={args.seeds}, "
          f"batch {args.batch} x {demos.ids.shape[-1]} tokens, device {device}, threads {torch.get_num_threads()}, "
          f"median of {args.steps} interleaved steps")  # fmt: skip
    print(f"{'rule':<8}{'step ms':>10}{'x SFT':>8}{'tokens/s':>12}{'x SFT':>8}{'peak MiB':>11}{'x SFT':>8}")
    for name, r in results.items():
        print(f"{NAMES[name]:<8}{1000 * r['step_s']:>10.1f}{r['step_s_vs_sft']:>8.2f}{r['tokens_per_s']:>12.0f}"
              f"{r['tokens_per_s_vs_sft']:>8.2f}{r['peak_mib']:>11.1f}{r['peak_mib_vs_sft']:>8.2f}")  # fmt: skip
    for name, target in {**TARGETS, **VARIANT_TARGETS}.items():
        ratio = results[name]["step_s_vs_sft"]
        print(f"{NAMES[name]} step time = {ratio:.2f} x SFT (target <= {target:.2f}): "
              f"{'met' if ratio <= target else 'NOT met'}")  # fmt: skip
    grpo_samples = rules["grpo"].current_samples().batch
    grpo_length = float(grpo_samples.mask.sum(-1).float().mean())
    answer_length = float(demos.mask.sum(-1).float().mean())
    print(f"GRPO step time = {results['grpo']['step_s_vs_sft']:.2f} x SFT (no target; generation of {args.batch} "
          f"completions in groups of {args.group} included; their mean length {grpo_length:.1f} tokens, the "
          f"demonstrations' answers {answer_length:.1f})")  # fmt: skip
    size = f"TinyGPT {args.n_layer}x{args.n_embd}, batch {args.batch} x {demos.ids.shape[-1]} tokens"
    for name, target in TARGETS.items():
        record.number(f"{name}_step", results[name]["step_s_vs_sft"], "x", name.upper(), ("<=", target))
    for key, what in (("tokens_per_s", "tokens/s"), ("peak_mib", "peak memory")):
        for name in ("ift", "dpo"):
            record.number(f"{name}_{key}", results[name][f"{key}_vs_sft"], "x", f"{name.upper()} {what} / SFT's")
    record.target(f"offline DPO step at most {TARGETS['dpo']:g}x an SFT step, IFT at most {TARGETS['ift']:.2f}x "
                  f"({size}, {device.type}, median of {args.steps} interleaved steps)", "dpo_step", "ift_step",
                  *(f"{name}_{key}" for key in ("tokens_per_s", "peak_mib") for name in ("ift", "dpo")))  # fmt: skip
    for name, target in VARIANT_TARGETS.items():
        record.number(f"{key_of(name)}_step", results[name]["step_s_vs_sft"], "x", NAMES[name], ("<=", target))
    record.target(f"DFT, EAFT and iw-SFT steps at most {VARIANT_TARGETS['dft']:g}x an SFT step, ASFT (with its "
                  f"reference pass) at most {VARIANT_TARGETS['asft']:g}x ({size}, {device.type}, median of "
                  f"{args.steps} interleaved steps)",
                  *(f"{key_of(name)}_step" for name in VARIANT_TARGETS))  # fmt: skip
    record.number("grpo_step", results["grpo"]["step_s_vs_sft"], "x", "GRPO")
    record.number("grpo_completion", grpo_length, "tokens", "GRPO's mean completion")
    record.number("sft_answer", answer_length, "tokens", "SFT's answers")
    record.target(f"GRPO step / SFT step, reported (generation of {args.batch} completions in groups of "
                  f"{args.group} included; {size}, {device.type}, median of {args.steps} interleaved steps)",
                  "grpo_step", "grpo_completion", "sft_answer")  # fmt: skip
    on_cuda = device.type == "cuda"
    for name in ("sft", "ift", "dpo"):
        record.number(f"cuda_{name}", results[name]["tokens_per_s"] if on_cuda else None, "tokens/s", name.upper())
    record.target(f"tokens/s on CUDA for SFT / IFT / DPO ({size})", *(f"cuda_{name}" for name in ("sft", "ift", "dpo")),
                  note=None if on_cuda else f"this run: {device.type}")  # fmt: skip
    record.info.update(device=str(device), threads=torch.get_num_threads(), results=results,
                       grpo={"group": args.group, "mean_completion_tokens": grpo_length,
                             "mean_answer_tokens": answer_length})  # fmt: skip
    record.write()
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
