"""Full fine-tuning vs LoRA vs P-Tuning v2 on the course model: cost and result of the same short run.

Every method starts from ``data/checkpoints/base``, reads the same SFT batches (``configs/chat_stage1.toml``'s
data settings, the same seed) for the same number of steps through the package's own pieces
(``glm3_teach.sft`` data, ``train.batch_loss``, ``train.build_optimizer``), then is graded by
``glm3_teach.evaluate`` (lessons 08 and 10). Rows:

- ``full``: every weight trains (lr 1e-3: a 20-step run, twice stage 1's 5e-4);
- ``lora qkv``: r 8, alpha 32 on ``query_key_value`` (lr 5e-3, as ``configs/chat_lora.toml``);
- ``lora all``: r 8, alpha 32 on the four block Linears (lr 5e-3);
- ``ptuning N``: P-Tuning v2 with N virtual tokens (lr 2e-2, as ``configs/chat_ptuning.toml``).

Columns: trainable parameters; AdamW state (the ``exp_avg``/``exp_avg_sq`` tensors it holds
after a step, measured); peak resident memory of the process (``ru_maxrss``; each method runs in
its own process) and its growth during training; median seconds per optimizer step; validation
loss on the assistant tokens; held-out fact accuracy (``evaluate.answer_items`` on evenly spaced
``heldout`` items without tools); story bits per byte (``evaluate.story_bits_per_byte``: forgetting).
A second table computes the same trainable counts and AdamW state for ChatGLM3-6B.

    python benchmarks/bench_peft.py                          # 20 steps each, about 15 min on one busy core
    python benchmarks/bench_peft.py --steps 5 --eval-items 16 --methods full "lora qkv"
    python benchmarks/bench_peft.py --json runs/bench_peft.json

Numbers depend on the machine and on whatever else runs on it; compare rows of one run. A short
run ranks the methods' cost reliably; their accuracy after so few steps is only a first look.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
METHODS = {
    "full": {"method": "full", "lr": 1e-3},
    "lora qkv": {"method": "lora", "lr": 5e-3, "lora": {"r": 8, "alpha": 32, "dropout": 0.1}},
    "lora all": {"method": "lora", "lr": 5e-3, "lora": {"r": 8, "alpha": 32, "dropout": 0.1, "target_modules": [
        "query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]}},
    "ptuning 8": {"method": "ptuning", "lr": 2e-2, "ptuning": {"pre_seq_len": 8}},
    "ptuning 32": {"method": "ptuning", "lr": 2e-2, "ptuning": {"pre_seq_len": 32}},
}


def rss_bytes() -> int:
    """Resident memory of this process now (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize()


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    return sum(t.numel() * t.element_size() for state in optimizer.state.values()
               for t in state.values() if isinstance(t, torch.Tensor) and t.dim() > 0)


def run_one(name: str, steps: int, eval_items: int, documents: int) -> dict:
    """Train one method for ``steps`` steps and grade it (runs inside its own process)."""
    import dataclasses

    from glm3_teach.device import seed_everything
    from glm3_teach.dialogues import load_sft
    from glm3_teach.evaluate import answer_items, story_bits_per_byte, subsample, summarize
    from glm3_teach.peft import trainable_parameters
    from glm3_teach.sft import build_data, load_base, load_config, prepare_model
    from glm3_teach.tokenizer import load_tokenizer
    from glm3_teach.train import batch_loss, build_optimizer, evaluate

    torch.set_num_threads(1)
    spec = METHODS[name]
    config, sft = load_config(ROOT / "configs" / "chat_stage1.toml")
    config = dataclasses.replace(config, lr=spec["lr"], max_steps=steps, warmup_steps=min(5, steps),
                                 weight_decay=0.1 if spec["method"] == "full" else 0.0)
    sft = dataclasses.replace(sft, method=spec["method"], lora=spec.get("lora", {}), ptuning=spec.get("ptuning", {}),
                              init_from=str(ROOT / "data" / "checkpoints" / "base"), data=str(ROOT / "data" / "sft"),
                              val_items=100)
    tokenizer = load_tokenizer(sft.init_from)
    seed_everything(config.seed)
    model = prepare_model(load_base(sft), sft)
    data = build_data(tokenizer, config, sft)
    optimizer, scheduler = build_optimizer(model, config)
    device = torch.device("cpu")
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(config.seed))[:steps]
    start_rss, times, losses = rss_bytes(), [], []
    model.train()
    for index in order.tolist():
        began = time.perf_counter()
        loss, _ = batch_loss(model, data.train[index] if not hasattr(data.train, "collate") else
                             data.train.collate([data.train[index]]), device, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], config.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - began)
        losses.append(float(loss))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model.eval()
    items = subsample([i for i in load_sft("heldout", sft.data) if "tools" not in i], eval_items)
    graded = summarize(answer_items(model, tokenizer, items, progress=False))
    return {"method": name, "trainable": trainable_parameters(model), "optimizer_state_bytes":
            optimizer_state_bytes(optimizer), "peak_rss_bytes": peak, "training_growth_bytes": peak - start_rss,
            "seconds_per_step": statistics.median(times[1:] or times), "first_loss": losses[0],
            "last_loss": losses[-1], "val_loss": evaluate(model, data.val, 0, 1)["loss"],
            "heldout_fact_accuracy": graded["fact_accuracy"], "heldout_items": graded["fact_items"],
            "story_bits_per_byte": story_bits_per_byte(model, tokenizer, None, documents)}


def chatglm3_6b_rows() -> list[dict]:
    """Trainable counts and fp32 AdamW state (8 bytes per trained value) for ChatGLM3-6B, computed."""
    from glm3_teach.model import ChatGLMConfig, count_parameters
    from glm3_teach.peft import lora_parameter_count, ptuning_parameter_count

    config = ChatGLMConfig.chatglm3_6b()
    four = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
    counts = {"full": count_parameters(config), "lora qkv (r 8)": lora_parameter_count(config, 8),
              "lora all (r 8)": lora_parameter_count(config, 8, four),
              "ptuning 128": ptuning_parameter_count(config, 128, False)}
    return [{"method": k, "trainable": v, "adamw_state_gb": 8 * v / 1e9} for k, v in counts.items()]


def table(rows: list[dict]) -> str:
    full = next((r for r in rows if r["method"] == "full"), rows[0])
    lines = ["| method | trainable | AdamW state | peak RSS | growth in training | s/step | ratio to full | "
             "val loss | held-out facts | story bits/byte |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | "
             "---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['trainable']:,} | {r['optimizer_state_bytes'] / 2**20:.2f} MiB | "
                     f"{r['peak_rss_bytes'] / 2**20:.0f} MiB | {r['training_growth_bytes'] / 2**20:.0f} MiB | "
                     f"{r['seconds_per_step']:.2f} | {r['seconds_per_step'] / full['seconds_per_step']:.2f} | "
                     f"{r['val_loss']:.3f} | {r['heldout_fact_accuracy'] or 0:.1%} of {r['heldout_items']} | "
                     f"{r['story_bits_per_byte']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--eval-items", type=int, default=40, help="held-out items graded per method")
    parser.add_argument("--documents", type=int, default=40, help="validation stories for bits per byte")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one method, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(run_one(args.one, args.steps, args.eval_items, args.documents)))
        return 0
    rows = []
    for name in args.methods:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps), "--eval-items",
                              str(args.eval_items), "--documents", str(args.documents)],
                             capture_output=True, text=True, cwd=ROOT, check=False)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        rows.append(json.loads(line.removeprefix("RESULT ")))
        print(f"{name}: done", file=sys.stderr, flush=True)
    print(f"Course model, {args.steps} steps each, same SFT batches:\n\n" + table(rows))
    big = chatglm3_6b_rows()
    print("\nChatGLM3-6B, computed:\n\n| method | trainable | AdamW state (fp32 m and v) |\n| --- | ---: | ---: |")
    for r in big:
        print(f"| {r['method']} | {r['trainable']:,} | {r['adamw_state_gb']:.3f} GB |")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"command": "python benchmarks/bench_peft.py " + " ".join(
            sys.argv[1:] if argv is None else argv), "rows": rows, "chatglm3_6b": big}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
