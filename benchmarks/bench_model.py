"""Training speed of the course-sized ChatGLM3: forward + backward tokens per second.

Compares the explicit attention path with PyTorch's fused one, in fp32 and bf16, on the
small config of issue 4 (4 layers, hidden 256, 4 heads, 2 KV groups, about 5 M
parameters). Prints a table with each speed's ratio to fused fp32.

    python benchmarks/bench_model.py                      # CPU, about 20 s on 2 cores
    python benchmarks/bench_model.py --seq-len 512 --steps 3
    python benchmarks/bench_model.py --device cuda

Numbers depend on the machine and on whatever else runs on it; compare rows of one run.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from glm3_teach.device import pick_device, seed_everything
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM, count_parameters

COURSE_CONFIG = dict(num_layers=4, hidden_size=256, ffn_hidden_size=683, kv_channels=64, num_attention_heads=4,
                     multi_query_group_num=2, padded_vocab_size=4096, seq_length=1024)


def train_step(model: ChatGLMForCausalLM, input_ids: torch.Tensor) -> None:
    """One next-token-prediction forward + backward (no optimiser step: it does not depend on attention)."""
    logits = model(input_ids[:, :-1]).logits                             # [b, s-1, vocab]
    loss = F.cross_entropy(logits.float().flatten(0, 1), input_ids[:, 1:].flatten())
    loss.backward()
    model.zero_grad(set_to_none=True)


def tokens_per_second(impl: str, dtype: torch.dtype, args: argparse.Namespace, device: torch.device) -> float:
    seed_everything(0)
    model = ChatGLMForCausalLM(ChatGLMConfig(**COURSE_CONFIG, attention_impl=impl)).to(device=device, dtype=dtype)
    model.train()
    input_ids = torch.randint(0, COURSE_CONFIG["padded_vocab_size"], (args.batch, args.seq_len + 1)).to(device)
    train_step(model, input_ids)  # warm-up: allocations, kernel choice
    best = float("inf")
    for _ in range(args.repeats):  # best of a few: other work on a shared machine only slows a run down
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            train_step(model, input_ids)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return args.batch * args.seq_len * args.steps / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3, help="the best repeat is reported")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's choice)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    config = ChatGLMConfig(**COURSE_CONFIG)
    print(f"course model: {count_parameters(config):,} parameters | batch {args.batch} x seq {args.seq_len} | "
          f"best of {args.repeats} x {args.steps} steps | device {device}" + (f" ({torch.get_num_threads()} threads)"
                                                           if device.type == "cpu" else ""))
    rows = [(impl, dtype) for dtype in (torch.float32, torch.bfloat16) for impl in ("fused", "explicit")]
    speeds = {row: tokens_per_second(*row, args, device) for row in rows}
    base = speeds[("fused", torch.float32)]
    print("\n| attention | dtype    | tokens/s (fwd+bwd) | vs fused fp32 |\n|---|---|---:|---:|")
    for (impl, dtype), speed in speeds.items():
        print(f"| {impl:9} | {str(dtype).removeprefix('torch.'):8} | {speed:18,.0f} | {speed / base:12.2f}x |")


if __name__ == "__main__":
    main()
