"""Training speed of the base recipe's model: whole optimizer steps (forward, backward, AdamW) per second.

Uses the model and batch shape of ``configs/base.toml`` (lesson 06) and the package's own loop
pieces (``next_token_loss``, ``build_optimizer``, clipping). Rows:

- CPU: fused (SDPA) vs explicit attention, with 1 and 2 threads;
- CUDA, when present: fp32 vs bf16 autocast, ``torch.compile`` off and on.

Each row reports training tokens per second, the best of a few repeats (other work on a
shared machine only slows a run down), and its ratio to the first row of its device.

    python benchmarks/bench_train.py                     # CPU rows, about a minute on 2 idle cores
    python benchmarks/bench_train.py --steps 2 --repeats 2
    python benchmarks/bench_train.py --cuda-only

Numbers depend on the machine and on whatever else runs on it; compare rows of one run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from glm3_teach.device import seed_everything
from glm3_teach.model import ChatGLMForCausalLM, count_parameters
from glm3_teach.train import TrainConfig, build_optimizer, next_token_loss

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "base.toml"


def step_fn(model: torch.nn.Module, optimizer: torch.optim.Optimizer, amp_dtype: torch.dtype | None,
            device: torch.device, forward) -> callable:
    def step(input_ids: torch.Tensor) -> None:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = forward(input_ids[:, :-1]).logits                      # [batch, seq, vocab]
        next_token_loss(logits, input_ids).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def tokens_per_second(config: TrainConfig, device: torch.device, impl: str = "fused", threads: int | None = None,
                      amp_dtype: torch.dtype | None = None, compile: bool = False, steps: int = 3,
                      repeats: int = 3) -> float:
    if threads is not None:
        torch.set_num_threads(threads)
    seed_everything(0)
    model = ChatGLMForCausalLM(config.model_config().__class__(**{**config.model, "attention_impl": impl})).to(device)
    optimizer, _ = build_optimizer(model, config)
    step = step_fn(model, optimizer, amp_dtype, device, torch.compile(model) if compile else model)
    input_ids = torch.randint(0, model.config.padded_vocab_size, (config.batch_size, config.block_size + 1)).to(device)
    for _ in range(2 if compile else 1):  # warm-up: allocations, kernel choice, compilation
        step(input_ids)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step(input_ids)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return config.batch_size * config.block_size * steps / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(RECIPE), help="the recipe whose model and batch are timed")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="the best repeat is reported")
    parser.add_argument("--cuda-only", action="store_true", help="skip the CPU rows")
    args = parser.parse_args()
    config = TrainConfig.from_file(args.config)
    print(f"{Path(args.config).name}: {count_parameters(config.model_config()):,} parameters | batch "
          f"{config.batch_size} x block {config.block_size} | best of {args.repeats} x {args.steps} steps")
    rows: list[tuple[str, str, float]] = []
    if not args.cuda_only:
        cpu = torch.device("cpu")
        default_threads = torch.get_num_threads()
        for threads in (1, 2):
            for impl in ("fused", "explicit"):
                speed = tokens_per_second(config, cpu, impl, threads, steps=args.steps, repeats=args.repeats)
                rows.append(("cpu", f"{impl} attention, {threads} thread{'s' * (threads > 1)}, fp32", speed))
        torch.set_num_threads(default_threads)
    if torch.cuda.is_available():
        cuda = torch.device("cuda")
        for amp_dtype in (None, torch.bfloat16):
            for compile in (False, True):
                speed = tokens_per_second(config, cuda, "fused", None, amp_dtype, compile, args.steps, args.repeats)
                rows.append(("cuda", f"{'bf16 autocast' if amp_dtype else 'fp32'}, compile {'on' if compile else 'off'}",
                             speed))
    print("\n| device | setting | train tokens/s | vs first row of device |\n|---|---|---:|---:|")
    first: dict[str, float] = {}
    for device, setting, speed in rows:
        base = first.setdefault(device, speed)
        print(f"| {device} | {setting} | {speed:,.0f} | {speed / base:.2f}x |")


if __name__ == "__main__":
    main()
