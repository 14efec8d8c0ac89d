"""Cost of one training step of SFT, IFT and DPO on the same TinyGPT, batch and sequence length.

Each rule runs in a fresh process (so that peak memory is its own): build the model, the batch and the optimiser,
run ``--warmup`` steps, then time ``--steps`` steps (forward, backward, optimiser step, the rule's after-step).
Reported per rule: median step time, training throughput in tokens/s (tokens of the batch: B sequences for SFT
and IFT, B chosen + B rejected sequences for DPO) and peak memory, each also as a ratio to SFT. On CUDA peak memory
is the allocator's peak; on the CPU, which keeps no such count, it is the training state (weights, gradients and
Adam's two moments) plus every tensor the step saves for the backward pass (distinct storages, weights excluded).
IFT's target: at most 1.45x SFT's step time (one extra no-grad forward pass: about 4/3 of SFT's compute).

    .venv/bin/python benchmarks/bench_lm.py                # CPU if no GPU
    .venv/bin/python benchmarks/bench_lm.py --device cuda --batch 64 --length 60 --n-embd 256 --n-layer 6
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time

import torch

RULES = ("sft", "ift", "dpo")


def saved_bytes(compute, policy: torch.nn.Module) -> int:
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


def measure(rule_name: str, args: argparse.Namespace) -> dict[str, float]:
    """Time one rule's training steps in this process."""
    from iftgym.policies.tiny_gpt import TinyGPT
    from iftgym.rules import make_rule
    from iftgym.token_tasks import SortTask
    from iftgym.tokens import TokenWorld

    if args.threads:
        torch.set_num_threads(args.threads)
    world = TokenWorld(SortTask(length=args.length, n_train=args.batch, n_test=1, seed=0))
    policy = TinyGPT(world.n_ids, world.block_size, args.n_layer, args.n_head, args.n_embd, seeds=args.seeds,
                     device=args.device)  # fmt: skip
    device = policy.device
    data = world.training_data()
    rule = make_rule(rule_name)
    batch = data.pairs if rule.data == "pairs" else data.demos
    batch = type(batch)(*(b.to(device) for b in vars(batch).values()))
    tokens = sum(b.ids.numel() for b in (vars(batch).values() if rule.data == "pairs" else [batch]))
    rule.setup(policy, world, torch.Generator().manual_seed(0))
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step(i: int) -> None:
        loss, _ = rule.loss(policy, batch, i)
        optimizer.zero_grad(set_to_none=True)
        loss.sum().backward()
        optimizer.step()
        rule.after_step(policy)

    step(0)  # Adam's state and lazy imports
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup):
        step(i)
    times = []
    for i in range(args.steps):
        sync()
        start = time.perf_counter()
        step(i)
        sync()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        state = 4 * sum(p.numel() * p.element_size() for p in policy.parameters())  # weights, grads, 2 moments
        peak_mib = (state + saved_bytes(lambda: rule.loss(policy, batch, 0), policy)) / 2**20
    step_time = statistics.median(times)
    return {"step_s": step_time, "tokens_per_s": tokens / step_time, "peak_mib": peak_mib, "tokens": tokens,
            "sequence_length": int(batch.ids.shape[-1] if rule.data != "pairs" else batch.chosen.ids.shape[-1]),
            "device": str(device)}  # fmt: skip


def _worker(rule_name: str, args: argparse.Namespace, queue: mp.Queue) -> None:
    queue.put(measure(rule_name, args))


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
    parser.add_argument("--steps", type=int, default=20, help="timed steps per rule (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)

    context = mp.get_context("spawn")
    results = {}
    for name in RULES:
        queue = context.Queue()
        process = context.Process(target=_worker, args=(name, args, queue))
        process.start()
        results[name] = queue.get()
        process.join()
    sft = results["sft"]
    for r in results.values():
        r.update({f"{key}_vs_sft": r[key] / sft[key] for key in ("step_s", "tokens_per_s", "peak_mib")})
    first = results["sft"]
    print(f"TinyGPT n_layer={args.n_layer} n_embd={args.n_embd} n_head={args.n_head} seeds={args.seeds}, "
          f"batch {args.batch} x {first['sequence_length']} tokens, device {first['device']}, "
          f"median of {args.steps} steps")  # fmt: skip
    print(f"{'rule':<6}{'step ms':>10}{'x SFT':>8}{'tokens/s':>12}{'x SFT':>8}{'peak MiB':>11}{'x SFT':>8}")
    for name, r in results.items():
        print(f"{name:<6}{1000 * r['step_s']:>10.1f}{r['step_s_vs_sft']:>8.2f}{r['tokens_per_s']:>12.0f}"
              f"{r['tokens_per_s_vs_sft']:>8.2f}{r['peak_mib']:>11.1f}{r['peak_mib_vs_sft']:>8.2f}")  # fmt: skip
    ratio = results["ift"]["step_s_vs_sft"]
    print(f"IFT step time = {ratio:.2f} x SFT (target <= 1.45): {'met' if ratio <= 1.45 else 'NOT met'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
