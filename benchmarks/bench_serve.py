"""Serving throughput and latency: 1 client vs 8 concurrent streaming clients of ``glm3_teach.serve``.

The server runs as its own process (``python -m glm3_teach.serve``, 1 torch thread) on a
free loopback port; the clients are threads of this process that stream with
``"stream": true`` and ``stream_options.include_usage`` and read the real token counts
from the final usage chunk.

1. **Throughput.** The same ``--requests`` greedy requests (``max_tokens`` ``--max-tokens``)
   are sent by 1 client, one after another, then by 8 concurrent clients. Greedy decoding
   makes both runs produce the same tokens, so total tokens/s compares like with like.
   Target (lesson 12): 8 clients get at least 3x the total tokens/s of one.
2. **Short behind long.** A short request (8 tokens) alone, then the same short request
   sent while a long one (up to 200 tokens) is being generated. With continuous batching the
   short one joins the running batch at the next step instead of waiting for the long one
   to finish, so its latency stays far below the long request's duration.

    python benchmarks/bench_serve.py                                  # about 1-2 minutes on 2 cores
    python benchmarks/bench_serve.py --model data/checkpoints/chat --requests 16

Numbers depend on the machine and on what else runs on it; compare rows of one run. Batching
pays per decoding step, so the figures mean most when replies are long: the base checkpoint
(the default) writes long replies; the chat checkpoint answers in about 15 tokens, and then
prefill and HTTP overheads dominate (the table prints the mean reply length).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

try:                      # the HTTP library of the installed openai client
    import httpx2
except ImportError:
    import httpx as httpx2

from glm3_teach.paths import data_dir

QUESTIONS = ["你好", "绿茶多少钱？", "价目表", "从前有一只小猫", "一天，小明去了清泉茶铺。", "春天到了",
             "The price list of the tea shop", "小红数了数鸭子"]
LONG_QUESTION = "The price list of the tea shop"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model: Path, port: int, threads: int) -> subprocess.Popen:
    """``python -m glm3_teach.serve`` in its own process; returns once /health answers."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    server = subprocess.Popen([sys.executable, "-m", "glm3_teach.serve", "--model", str(model), "--name", "bench",
                               "--port", str(port), "--threads", str(threads)], env=env)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx2.TransportError:
            time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not start within 120 s")


def stream_request(url: str, question: str, max_tokens: int) -> dict:
    """One streamed greedy request: completion tokens, time to first text, total time."""
    body = {"model": "bench", "messages": [{"role": "user", "content": question}], "temperature": 0,
            "max_tokens": max_tokens, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first, tokens = None, None
    with httpx2.stream("POST", url + "/v1/chat/completions", json=body, timeout=300) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            elif first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - start
    return {"tokens": tokens, "first": first, "total": time.perf_counter() - start}


def throughput(url: str, clients: int, questions: list[str], max_tokens: int) -> tuple[int, float]:
    """Total completion tokens and wall time for ``questions`` sent by ``clients`` concurrent clients."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(lambda q: stream_request(url, q, max_tokens), questions))
    return sum(r["tokens"] for r in results), time.perf_counter() - start


def short_behind_long(url: str) -> dict:
    """Latency of a short request alone and while a long one runs, and the long one's duration."""
    alone = stream_request(url, "你好", 8)
    long_result: dict = {}
    long_thread = threading.Thread(target=lambda: long_result.update(stream_request(url, LONG_QUESTION, 200)))
    long_thread.start()
    time.sleep(0.3)                                   # the long request is decoding by now
    behind = stream_request(url, "你好", 8)
    long_thread.join()
    return {"alone": alone, "behind": behind, "long": long_result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=data_dir() / "checkpoints" / "base")
    parser.add_argument("--requests", type=int, default=16, help="requests per throughput run")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the server")
    args = parser.parse_args()
    if not (args.model / "config.json").exists():
        raise SystemExit(f"no checkpoint at {args.model}")
    port = free_port()
    server = start_server(args.model, port, args.threads)
    url = f"http://127.0.0.1:{port}"
    try:
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.requests)]
        stream_request(url, "你好", 8)                # warm-up
        print(f"model {args.model}, server with {args.threads} torch thread(s), {args.requests} greedy requests, "
              f"max_tokens {args.max_tokens}\n")
        print("| clients | tokens | seconds | total tokens/s | vs 1 client |\n|---:|---:|---:|---:|---:|")
        one_tokens, one_seconds = throughput(url, 1, questions, args.max_tokens)
        print(f"| 1 | {one_tokens} | {one_seconds:.2f} | {one_tokens / one_seconds:,.0f} | 1.0x |", flush=True)
        tokens, seconds = throughput(url, args.clients, questions, args.max_tokens)
        ratio = (tokens / seconds) / (one_tokens / one_seconds)
        print(f"| {args.clients} | {tokens} | {seconds:.2f} | {tokens / seconds:,.0f} | {ratio:.1f}x |", flush=True)
        print(f"\nmean reply: {tokens / args.requests:.0f} tokens (max_tokens {args.max_tokens})")
        latency = short_behind_long(url)
        print("\n| request | tokens | first text (s) | total (s) |\n|---|---:|---:|---:|")
        for name, key in (("short, alone", "alone"), ("short, sent while the long one runs", "behind"),
                          ("long", "long")):
            r = latency[key]
            print(f"| {name} | {r['tokens']} | {r['first'] or float('nan'):.3f} | {r['total']:.3f} |")
        share = latency["behind"]["total"] / latency["long"]["total"]
        print(f"\nthe short request took {share:.0%} of the long request's duration "
              f"({'joined the running batch' if share < 0.5 else 'waited behind it'})")
        print(f"target: {args.clients} clients >= 3x the tokens/s of 1 client: {'met' if ratio >= 3 else 'NOT met'} "
              f"({ratio:.1f}x)")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
