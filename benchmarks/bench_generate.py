"""Decoding speed with and without the KV cache: new tokens per second of greedy ``generate``.

Without the cache every step runs the whole sequence through the model again, so producing
``n`` tokens after a ``p``-token prompt processes ``p + (p+1) + ... + (p+n-1)`` positions
(quadratic in ``n``); with it the prompt goes through once and each step processes one token
(linear). The speed-up therefore grows with the number of new tokens.

Models: the shipped base checkpoint (``data/checkpoints/base``, loaded in fp32, skipped if
absent) and a larger random config (8 layers, hidden 512, 8 heads, 2 KV groups, about 26 M
parameters). The base model's ``seq_length`` (256) is raised for the long runs: only the
speed is measured, and a longer RoPE table costs the same per step.
Each is timed at 64, 256 and 512 new tokens after a 16-token prompt, on 1 CPU thread and on
all of them, and the table gives each speed and the cache's speed-up.

    python benchmarks/bench_generate.py                         # CPU, about 7 minutes on 2 idle cores
    python benchmarks/bench_generate.py --new-tokens 64 256 --threads 1
    python benchmarks/bench_generate.py --device cuda

Numbers depend on the machine and on whatever else runs on it; compare rows of one run. On a
machine busy with other work, asking for as many threads as there are cores can make every row
many times slower (the threads wait for each other); time with ``--threads 1`` there.
The target of lesson 07 is a speed-up of at least 5x at 256 new tokens.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from glm3_teach.checkpoint import load_pretrained
from glm3_teach.device import pick_device, seed_everything
from glm3_teach.generate import generate
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM, count_parameters
from glm3_teach.paths import data_dir

LARGER_CONFIG = dict(num_layers=8, hidden_size=512, ffn_hidden_size=1368, kv_channels=64, num_attention_heads=8,
                     multi_query_group_num=2, padded_vocab_size=4096, seq_length=1024)
PROMPT_LEN = 16


def seconds_to_generate(model: ChatGLMForCausalLM, prompt: torch.Tensor, new_tokens: int, use_cache: bool,
                        repeats: int) -> float:
    """Best wall time of ``repeats`` greedy runs of exactly ``new_tokens`` tokens (no stop ids)."""
    device = prompt.device
    best = float("inf")
    for _ in range(repeats):  # the best of a few: other work on a shared machine only slows a run down
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = generate(model, prompt, new_tokens, use_cache=use_cache, eos_token_ids=[])
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
        assert out.shape[1] == prompt.shape[1] + new_tokens
    return best


def models(args: argparse.Namespace, device: torch.device) -> dict[str, ChatGLMForCausalLM]:
    """The base checkpoint (in fp32) if present, and the larger random model."""
    found = {}
    longest = PROMPT_LEN + max(args.new_tokens)
    if args.checkpoint.joinpath("config.json").exists():
        base = load_pretrained(args.checkpoint, dtype=torch.float32, device=device)
        if base.config.seq_length < longest:
            # Speed only: the RoPE table is built for seq_length positions each forward, so a longer
            # table costs the same work; the model was not trained past its seq_length.
            print(f"(base checkpoint: seq_length {base.config.seq_length} raised to {longest} for timing only)")
            base.config.seq_length = longest
        found["base checkpoint"] = base
    else:
        print(f"(no checkpoint at {args.checkpoint}: only the random config is timed)")
    seed_everything(0)
    found["random larger"] = ChatGLMForCausalLM(ChatGLMConfig(**LARGER_CONFIG)).to(device)
    return {name: model.eval() for name, model in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help=f"CPU thread counts to try (default: 1 and all {os.cpu_count()})")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per cell; the best is reported")
    parser.add_argument("--checkpoint", type=Path, default=data_dir() / "checkpoints" / "base")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = pick_device(args.device)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    threads = threads if device.type == "cpu" else [torch.get_num_threads()]
    prompt = torch.randint(0, 4000, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0)).to(device)
    print(f"greedy decoding after a {PROMPT_LEN}-token prompt, batch 1, fp32, device {device}, "
          f"best of {args.repeats}")
    timed = models(args, device)
    print("\n| model | params | threads | new tokens | cache tok/s | no cache tok/s | speed-up |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for name, model in timed.items():
        params = f"{count_parameters(model.config) / 1e6:.1f} M"
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            generate(model, prompt, 8, eos_token_ids=[])  # warm-up: allocations, kernel choice
            for new_tokens in args.new_tokens:
                cached = seconds_to_generate(model, prompt, new_tokens, True, args.repeats)
                uncached = seconds_to_generate(model, prompt, new_tokens, False, args.repeats)
                print(f"| {name} | {params} | {n_threads} | {new_tokens} | {new_tokens / cached:,.0f} | "
                      f"{new_tokens / uncached:,.0f} | {uncached / cached:.1f}x |", flush=True)


if __name__ == "__main__":
    main()
