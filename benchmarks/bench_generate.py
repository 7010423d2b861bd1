"""Decoding speed without a KV cache and with its two designs: new tokens per second of greedy ``generate``.

Without the cache every step runs the whole sequence through the model again, so producing
``n`` tokens after a ``p``-token prompt processes ``p + (p+1) + ... + (p+n-1)`` positions
(quadratic in ``n``); with it the prompt goes through once and each step processes one token
(linear). The speed-up therefore grows with the number of new tokens. Two cache designs
(``glm3_teach.generate``'s ``cache_impl``, lesson 07):

- **concat**: the tuple cache, grown by ``torch.cat`` every step (copying the whole past), the
  groups copied out to every head, and the model's inputs checked again at every step;
- **preallocated**: one ``glm3_teach.kv_cache.KVCache`` for every position, written in place
  and read as a slice, SDPA reading the KV groups directly, inputs checked once per call.

Models: the shipped base checkpoint (``data/checkpoints/base``, 4 layers x 256, loaded in fp32,
skipped if absent) and a larger random config (8 layers, hidden 512, 8 heads, 2 KV groups, about
26 M parameters). The base model's ``seq_length`` (256) is raised for the long runs: only the
speed is measured, and a longer RoPE table costs the same per step.
Each is timed after a 16-token prompt, the three designs in turns (``--repeats`` rounds, the best
run of each kept, so a slow spell of a shared machine hits all of them); the table gives tokens/s
of each design (from wall time)
and the speed-ups, from wall time and, in brackets, from the CPU time of this process, which a
busy shared machine disturbs less.

    python benchmarks/bench_generate.py                                   # CPU: 64, 256, 512 tokens
    python benchmarks/bench_generate.py --new-tokens 256 --threads 1 --models base --repeats 3
    python benchmarks/bench_generate.py --device cuda

Numbers depend on the machine and on whatever else runs on it; compare rows of one run. On a
machine busy with other work, asking for as many threads as there are cores can make every row
many times slower (the threads wait for each other); time with ``--threads 1`` there.
The target of lesson 07 is a speed-up of at least 6x at 256 new tokens on the base model.
Measured on the course's 2-core CPU machine, idle, PyTorch 2.13.0, ``--threads 1 --repeats 3``
(2026-12-02): preallocated vs no cache 4.8x / 15.0x / 28.7x at 64 / 256 / 512 new tokens on the
base model, 4.5x / 11.4x / 20.2x on the larger one; ``--new-tokens 256 --models base --repeats 5``:
11.1x. Earlier runs on a busy machine measured 5.3-6.8x at 256 tokens.
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
DESIGNS = {"no cache": dict(use_cache=False), "concat": dict(cache_impl="concat"),
           "preallocated": dict(cache_impl="preallocated")}


def seconds_to_generate(model: ChatGLMForCausalLM, prompt: torch.Tensor, new_tokens: int,
                        **design) -> tuple[float, float, torch.Tensor]:
    """``(wall, cpu)`` seconds of one greedy run of exactly ``new_tokens`` tokens, and the tokens."""
    device = prompt.device
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    out = generate(model, prompt, new_tokens, eos_token_ids=[], **design)
    if device.type == "cuda":
        torch.cuda.synchronize()
    assert out.shape[1] == prompt.shape[1] + new_tokens
    return time.perf_counter() - wall, time.process_time() - cpu, out


def models(args: argparse.Namespace, device: torch.device) -> dict[str, ChatGLMForCausalLM]:
    """The base checkpoint (in fp32) if present, and the larger random model."""
    found = {}
    longest = PROMPT_LEN + max(args.new_tokens)
    if "base" in args.models and args.checkpoint.joinpath("config.json").exists():
        base = load_pretrained(args.checkpoint, dtype=torch.float32, device=device)
        if base.config.seq_length < longest:
            # Speed only: a longer RoPE table costs the same per step; the model was not trained past it.
            print(f"(base checkpoint: seq_length {base.config.seq_length} raised to {longest} for timing only)")
            base.config.seq_length = longest
        found["base checkpoint"] = base
    elif "base" in args.models:
        print(f"(no checkpoint at {args.checkpoint}: only the random config is timed)")
    if "larger" in args.models:
        seed_everything(0)
        found["random larger"] = ChatGLMForCausalLM(ChatGLMConfig(**LARGER_CONFIG)).to(device)
    return {name: model.eval() for name, model in found.items()}


def time_row(name: str, params: str, n_threads: int, model: ChatGLMForCausalLM, prompt: torch.Tensor,
             new_tokens: int, repeats: int) -> str:
    """One table row: tokens/s of each design and the speed-ups (wall, and CPU time in brackets)."""
    timed = {design: (float("inf"), float("inf"), None) for design in DESIGNS}
    for _ in range(repeats):  # the best of a few, taken in turns, so a slow spell of the machine hits every design
        for design, kwargs in DESIGNS.items():
            wall, cpu, out = seconds_to_generate(model, prompt, new_tokens, **kwargs)
            best_wall, best_cpu, _ = timed[design]
            timed[design] = (min(best_wall, wall), min(best_cpu, cpu), out)
    tokens = {design: out for design, (_, _, out) in timed.items()}
    assert all(torch.equal(out, tokens["no cache"]) for out in tokens.values()), "the designs chose different tokens"
    (none_w, none_c, _), (cat_w, cat_c, _), (pre_w, pre_c, _) = timed.values()
    speeds = " | ".join(f"{new_tokens / wall:,.0f}" for wall, _, _ in timed.values())
    return (f"| {name} | {params} | {n_threads} | {new_tokens} | {speeds} | {none_w / cat_w:.1f}x ({none_c / cat_c:.1f}x) | "
            f"{none_w / pre_w:.1f}x ({none_c / pre_c:.1f}x) | {cat_w / pre_w:.2f}x ({cat_c / pre_c:.2f}x) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64, 256, 512])
    parser.add_argument("--threads", type=int, nargs="+", default=None,
                        help=f"CPU thread counts to try (default: 1 and all {os.cpu_count()})")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per cell, the designs in turns; the best is reported")
    parser.add_argument("--models", nargs="+", choices=["base", "larger"], default=["base", "larger"])
    parser.add_argument("--checkpoint", type=Path, default=data_dir() / "checkpoints" / "base")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = pick_device(args.device)
    threads = args.threads or sorted({1, os.cpu_count() or 1})
    threads = threads if device.type == "cpu" else [torch.get_num_threads()]
    prompt = torch.randint(0, 4000, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(0)).to(device)
    print(f"greedy decoding after a {PROMPT_LEN}-token prompt, batch 1, fp32, device {device}, "
          f"best of {args.repeats}; every design chose the same tokens")
    timed = models(args, device)
    print("\n| model | params | threads | new tokens | no cache tok/s | concat tok/s | preallocated tok/s | "
          "concat vs none | preallocated vs none | preallocated vs concat |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, model in timed.items():
        params = f"{count_parameters(model.config) / 1e6:.1f} M"
        for n_threads in threads:
            torch.set_num_threads(n_threads)
            generate(model, prompt, 8, eos_token_ids=[])  # warm-up: allocations, kernel choice
            for new_tokens in args.new_tokens:
                print(time_row(name, params, n_threads, model, prompt, new_tokens, args.repeats), flush=True)
    print("\nspeed-ups: wall time (CPU time of this process in brackets)")


if __name__ == "__main__":
    main()
