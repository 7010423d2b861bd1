"""What weight-only quantization costs and buys: quality, memory and decode speed (lesson 11).

Variants: fp32; int8 and int4 with ChatGLM3's per-row scales (``scheme="chatglm"``); int4 with
one scale per 32 inputs (``scheme="group"``); and int8 on fbgemm's W8A8 dynamic kernel
(``kernel="dynamic_int8"``, activations quantized too). The speed table also times int8 on each
exact path alone (``dequantize``, ``weight_only``) beside ``auto``, which picks the faster. The course model's
``dense_4h_to_h`` rows have 683 inputs, so the int4 variants pad them (``pad=True``).

- **quality** on the shipped base model (``data/checkpoints/base``) and, when it exists, the chat
  model (``data/checkpoints/chat``): bits per byte of the validation stories per language
  (``glm3_teach.evaluate.text_bits_per_byte``), greedy-token agreement with fp32 over a fixed
  prompt set (the share of generated positions holding the same token), and for the chat model
  the fact accuracy on the held-out dialogues (``glm3_teach.evaluate.answer_items``);
- **memory**: ``nbytes`` of every tensor against ``quant.model_bytes``; the same formula for
  ChatGLM3-6B; chatglm.cpp's q4_0 / q8_0 / f16 file sizes from ``quant.ggml_model_bytes``
  against the sizes its README publishes (3.3G, 6.2G, 12G, in GiB as ``ls -h`` prints them);
- **speed**: one decode-sized matmul per forward path (time and weight bytes read per second,
  which bounds decoding), then greedy decode tokens/s with the KV cache after a 16-token prompt,
  on 1 thread and on 2, for the base model and a larger random config (12 layers of width 1024)
  where the weights dominate.

    python benchmarks/bench_quant.py                        # everything, a few minutes on 2 idle cores
    python benchmarks/bench_quant.py --skip-speed --documents 20
    python benchmarks/bench_quant.py --skip-quality --threads 1 --new-tokens 32

Timings depend on the machine and whatever else runs on it: compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from glm3_teach import quant
from glm3_teach.checkpoint import load_pretrained
from glm3_teach.device import seed_everything
from glm3_teach.generate import generate
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.paths import data_dir

# name: (bits, scheme, kernel)
VARIANTS = {
    "fp32": (0, None, None),
    "int8": (8, "chatglm", "auto"),
    "int4 per-row": (4, "chatglm", "auto"),
    "int4 group-32": (4, "group", "auto"),
    "int8 W8A8 dynamic": (8, "chatglm", "dynamic_int8"),
    "int8 dequantize": (8, "chatglm", "dequantize"),
    "int8 weight_only": (8, "chatglm", "weight_only"),
}
QUALITY_VARIANTS = ["fp32", "int8", "int4 per-row", "int4 group-32", "int8 W8A8 dynamic"]  # kernels agree to 1e-5
SPEED_VARIANTS = ["fp32", "int8 dequantize", "int8 weight_only", "int8", "int4 per-row", "int4 group-32",
                  "int8 W8A8 dynamic"]
LARGER_CONFIG = dict(num_layers=12, hidden_size=1024, ffn_hidden_size=2752, kv_channels=64, num_attention_heads=16,
                     multi_query_group_num=2, padded_vocab_size=4096, seq_length=512)
PROMPTS = ["从前，有一只小猫", "Once upon a time, a little cat", "小明和妈妈去市场", "The old fisherman looked at",
           "森林里住着一只狐狸", "One morning, the baker", "下雨了，小兔子", "A small boat sailed"]
PUBLISHED_GGML_GIB = {"q4_0": 3.3, "q8_0": 6.2, "f16": 12.0}  # chatglm.cpp README, ChatGLM3-6B "file size"


def make_variant(folder: Path | None, name: str, config: ChatGLMConfig | None = None) -> ChatGLMForCausalLM:
    """A fresh fp32 model (loaded from ``folder``, else random from ``config`` with a fixed seed), quantized as named."""
    if folder is not None:
        model = load_pretrained(folder, dtype=torch.float32)
    else:
        seed_everything(0)
        model = ChatGLMForCausalLM(config).eval()
    bits, scheme, kernel = VARIANTS[name]
    if bits:
        quant.quantize(model, bits, scheme, pad=True)
        quant.set_kernel(model, kernel)
    return model


def greedy_continuations(model: ChatGLMForCausalLM, tokenizer, new_tokens: int) -> list[list[int]]:
    out = []
    for prompt in PROMPTS:
        ids = torch.tensor([tokenizer.encode(prompt)])
        out.append(generate(model, ids, new_tokens, eos_token_ids=[])[0, ids.shape[1]:].tolist())
    return out


def agreement(reference: list[list[int]], other: list[list[int]]) -> float:
    same = sum(a == b for ref, oth in zip(reference, other) for a, b in zip(ref, oth))
    return same / sum(len(ref) for ref in reference)


@torch.no_grad()
def quality(folder: Path, tokenizer, documents: int, new_tokens: int, facts: int) -> list[dict]:
    from glm3_teach.evaluate import answer_items, summarize

    rows, reference = [], None
    heldout = _heldout_items(facts) if facts else []
    for name in QUALITY_VARIANTS:
        model = make_variant(folder, name)
        row = {"variant": name}
        for lang in ("zh", "en"):
            row[f"bpb {lang}"] = stories_bits_per_byte(model, tokenizer, lang, documents)
        continuations = greedy_continuations(model, tokenizer, new_tokens)
        reference = reference or continuations
        row["greedy agree"] = agreement(reference, continuations)
        if heldout:
            results = answer_items(model, tokenizer, heldout, progress=False)
            row["heldout facts"] = summarize(results)["fact_accuracy"]
        rows.append(row)
    for row in rows:
        for lang in ("zh", "en"):
            row[f"{lang} / fp32"] = row[f"bpb {lang}"] / rows[0][f"bpb {lang}"]
    return rows


def stories_bits_per_byte(model: ChatGLMForCausalLM, tokenizer, lang: str, count: int) -> float:
    """Bits per byte of ``count`` evenly spaced validation stories, in blocks that fit ``seq_length``."""
    from glm3_teach.data import load_documents
    from glm3_teach.evaluate import text_bits_per_byte

    documents = load_documents("val", lang)
    chosen = documents[::max(1, len(documents) // count)][:count]
    return text_bits_per_byte(model, tokenizer, chosen, block_size=model.config.seq_length - 1)


def _heldout_items(count: int) -> list[dict]:
    from glm3_teach.dialogues import load_sft
    from glm3_teach.evaluate import subsample

    return subsample([item for item in load_sft("heldout") if "tools" not in item], count)


def memory(folder: Path | None) -> tuple[list[dict], list[dict], list[dict]]:
    measured = []
    if folder is not None:
        for name in QUALITY_VARIANTS[:4]:
            model = make_variant(folder, name)
            bits, scheme, _ = VARIANTS[name]
            formula = quant.model_bytes(model.config, bits, scheme or "chatglm", float_bytes=4)
            measured.append({"variant": name, "nbytes": quant.tensor_bytes(model), "formula": formula})
        for row in measured:
            row["ratio to fp32"] = row["nbytes"] / measured[0]["nbytes"]
    six_b = ChatGLMConfig.chatglm3_6b()
    big = [{"ChatGLM3-6B": label, "bytes": quant.model_bytes(six_b, bits, scheme), "GB": 0.0}
           for label, bits, scheme in [("fp16", 0, "chatglm"), ("int8 (reference)", 8, "chatglm"),
                                       ("int4 (reference)", 4, "chatglm"), ("int4 group-32", 4, "group")]]
    for row in big:
        row["GB"] = row["bytes"] / 1e9
    ggml = [{"chatglm.cpp": kind, "bytes": quant.ggml_model_bytes(six_b, kind),
             "GiB": quant.ggml_model_bytes(six_b, kind) / 2 ** 30, "published": published}
            for kind, published in PUBLISHED_GGML_GIB.items()]
    return measured, big, ggml


@torch.no_grad()
def tokens_per_second(model: ChatGLMForCausalLM, new_tokens: int, repeats: int) -> float:
    prompt = torch.randint(0, 4000, (1, 16), generator=torch.Generator().manual_seed(0))
    generate(model, prompt, 4, eos_token_ids=[])  # warm-up: builds the kernels' weight copies
    best = float("inf")
    for _ in range(repeats):  # the best of a few: other work on a shared machine only slows a run down
        start = time.perf_counter()
        generate(model, prompt, new_tokens, eos_token_ids=[])
        best = min(best, time.perf_counter() - start)
    return new_tokens / best


def speed(folder: Path | None, threads: list[int], new_tokens: int, repeats: int, models: list[str],
          variants: list[str]) -> list[dict]:
    rows = []
    targets = ([("base", folder, None)] if folder and "base" in models else []) + (
        [("12x1024 random", None, ChatGLMConfig(**LARGER_CONFIG))] if "larger" in models else [])
    for label, path, config in targets:
        for name in variants:
            model = make_variant(path, name, config)
            row = {"model": label, "variant": name}
            for n in threads:
                torch.set_num_threads(n)
                row[f"tok/s {n}T"] = tokens_per_second(model, new_tokens, repeats)
            print(f"  measured {row}", file=sys.stderr, flush=True)  # progress: the table comes at the end
            rows.append(row)
            del model
        first = next(r for r in rows if r["model"] == label)
        for row in rows:
            if row["model"] == label:
                for n in threads:
                    row[f"x fp32 {n}T"] = row[f"tok/s {n}T"] / first[f"tok/s {n}T"]
    return rows


@torch.no_grad()
def kernel_speeds(threads: list[int], repeats: int = 20) -> list[dict]:
    """One decode-sized matmul, ``[1, 1024] x [1024 -> 5504]`` (the larger config's ``dense_h_to_4h``), per path.

    ``weight GB/s`` = bytes of weights (and scales) read per call / seconds: decode is bound by it,
    so a path slower than fp32 here cannot make decoding faster however few bytes it reads.
    """
    seed_everything(0)
    linear = torch.nn.Linear(1024, 5504, bias=False)
    x = torch.randn(1, 1024)
    paths = {"fp32 F.linear": (lambda: linear(x), linear.weight.nbytes)}
    for label, bits, scheme, kernel in [("int8 dequantize", 8, "chatglm", "dequantize"),
                                        ("int8 weight_only", 8, "chatglm", "weight_only"),
                                        ("int8 dynamic_int8", 8, "chatglm", "dynamic_int8"),
                                        ("int4 weight_only", 4, "chatglm", "weight_only"),
                                        ("int4 group-32 weight_only", 4, "group", "weight_only")]:
        layer = quant.QuantizedLinear.from_linear(linear, bits, scheme, 32 if scheme == "group" else None)
        layer.kernel = kernel
        paths[label] = (lambda layer=layer: layer(x), quant.tensor_bytes(layer))
    rows = []
    for label, (run, nbytes) in paths.items():
        row = {"path": label, "weight bytes": nbytes}
        for n in threads:
            torch.set_num_threads(n)
            run()
            best = min(_seconds(run) for _ in range(repeats))
            row[f"us {n}T"], row[f"weight GB/s {n}T"] = best * 1e6, nbytes / best / 1e9
        rows.append(row)
    return rows


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def print_table(title: str, rows: list[dict]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    cells = [[_cell(row[c]) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print(f"\n{title}")
    print("  ".join(c.rjust(w) for c, w in zip(columns, widths)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths)))


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--documents", type=int, default=40, help="validation stories per language for bits per byte")
    parser.add_argument("--agree-tokens", type=int, default=32, help="greedy tokens per prompt for the agreement")
    parser.add_argument("--facts", type=int, default=40, help="held-out dialogues for the chat model's fact accuracy")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--new-tokens", type=int, default=32, help="decoded tokens per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quality-models", nargs="+", choices=["base", "chat"], default=["base", "chat"])
    parser.add_argument("--speed-models", nargs="+", choices=["base", "larger"], default=["base", "larger"])
    parser.add_argument("--speed-variants", nargs="+", choices=SPEED_VARIANTS, default=SPEED_VARIANTS, metavar="NAME",
                        help=f"rows of the speed table (default all: {', '.join(SPEED_VARIANTS)})")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    base, chat = data_dir() / "checkpoints" / "base", data_dir() / "checkpoints" / "chat"
    base = base if (base / "config.json").is_file() else None
    if not args.skip_quality:
        from glm3_teach.tokenizer import load_tokenizer
        tokenizer = load_tokenizer()
        for label, folder, facts in (("base", base, 0), ("chat", chat, args.facts)):
            if label not in args.quality_models:
                continue
            if folder is not None and (folder / "config.json").is_file():
                started = time.time()
                rows = quality(folder, tokenizer, args.documents, args.agree_tokens, facts)
                print_table(f"quality, {label} model ({time.time() - started:.0f} s)", rows)
            else:
                print(f"\nquality, {label} model: no checkpoint at data/checkpoints/{label}, skipped")
    measured, big, ggml = memory(base)
    print_table("memory of the base model (fp32 floats): nbytes vs formula", measured)
    print_table("memory of ChatGLM3-6B by the same formula (fp16 floats)", big)
    print_table("chatglm.cpp file sizes by formula vs its README", ggml)
    if not args.skip_speed:
        print_table("one decode-sized matmul per path (best of 20)", kernel_speeds(args.threads))
        print_table(f"decode speed with the KV cache ({args.new_tokens} new tokens, best of {args.repeats})",
                    speed(base, args.threads, args.new_tokens, args.repeats, args.speed_models,
                          args.speed_variants))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
