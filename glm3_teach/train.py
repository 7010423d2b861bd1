"""Pretraining from the command line: ``python -m glm3_teach.train --config configs/base.toml``.

Taught in lesson 06 (预训练 Pretraining), which trains small models with ``train`` and shows
how the shipped base checkpoint was made with this command. The package's training pieces
each live in a module of their own, all re-exported here so that ``from glm3_teach.train
import X`` reaches every one of them:

- ``TrainConfig``, every setting, checked when made, read from TOML or JSON (``train_config``);
- ``next_token_loss``, ``masked_next_token_loss`` (SFT), ``batch_loss``, ``evaluate`` (``losses``);
- ``parameter_groups``, ``lr_at``, ``build_optimizer``: AdamW and its schedule (``optimizer``);
- ``save_training_state``, ``load_training_state``: crash-safe checkpoints for an exact
  resume (``training_state``); ``LivePlot``, ``plot_history`` (``loss_plot``);
- ``train``, ``build_model``, ``load_data``, ``TrainData``: the loop (``training_loop``), on one
  process or, under torchrun, one per device with PyTorch DDP (``distributed``).

The command trains from a TOML or JSON file (every key of ``TrainConfig``; the model's sizes
under ``[model]``), prints each validation loss and what it is doing between them, then
exports the final model in the Hugging Face layout with the tokenizer, a ``training.json``
record and ``loss_curve.png``. ``--max-steps N``, ``--run-dir PATH`` and ``--export-dir PATH``
override the config for a short run; an export folder that already holds a trained model (the
shipped one) is replaced only with ``--force``. The same command plus ``--resume`` continues a
run that was stopped or killed (from step 0, with a note, when it never reached its first
checkpoint). On two processes, ``batch_size`` blocks each:
``torchrun --nproc_per_node 2 -m glm3_teach.train --config ...`` (``torchrun`` is
``python -m torch.distributed.run``); only rank 0 prints, saves and exports. A user error
prints one line on stderr and exits with status 2.

What it leaves out: several machines (untested), and early stopping.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import torch

from glm3_teach.checkpoint import (adapter_kind, check_replaceable, is_model_checkpoint, load_pretrained,
                                   recover_folder, save_pretrained)
from glm3_teach.data import unigram_entropy
from glm3_teach.device import pick_device
from glm3_teach.distributed import World, destroy_distributed, init_distributed, local_device, world_from_env
from glm3_teach.errors import cli_main
from glm3_teach.loss_plot import LivePlot, plot_history
from glm3_teach.losses import batch_loss, evaluate, masked_next_token_loss, next_token_loss
from glm3_teach.model import ChatGLMForCausalLM, count_parameters
from glm3_teach.optimizer import build_optimizer, lr_at, parameter_groups
from glm3_teach.train_config import RESUMABLE_KEYS, TrainConfig, tomllib
from glm3_teach.training_loop import (TrainData, autocast_dtype, build_model, check_before_training, load_data,
                                      make_batches, shard_loss, train)
from glm3_teach.training_state import (MODEL_FILE, OPTIMIZER_FILE, RNG_FILE, STATE_FILE, is_training_checkpoint,
                                       load_training_state, save_training_state)

__all__ = ["MODEL_FILE", "OPTIMIZER_FILE", "RESUMABLE_KEYS", "RNG_FILE", "STATE_FILE", "LivePlot", "TrainConfig",
           "TrainData", "autocast_dtype", "batch_loss", "build_model", "build_optimizer", "check_before_training",
           "evaluate", "is_training_checkpoint", "load_data", "load_training_state", "lr_at", "main", "make_batches",
           "masked_next_token_loss", "next_token_loss", "parameter_groups", "plot_history", "sample_text",
           "save_training_state", "shard_loss", "tomllib", "train"]


@torch.no_grad()
def sample_text(model: ChatGLMForCausalLM, tokenizer, prompt: str, max_new_tokens: int = 60,
                temperature: float = 0.8, top_k: int = 40, seed: int = 0) -> str:
    """A short continuation of ``prompt`` (top-k sampling, stops at ``</s>``), for training records.

    Deliberately minimal: lesson 07 and ``glm3_teach.generate`` cover decoding properly.
    """
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    ids = tokenizer.encode(prompt)
    for _ in range(max_new_tokens):
        context = torch.tensor([ids[-model.config.seq_length:]], device=device)
        logits = model(context).logits[0, -1, :tokenizer.vocab_size].float().cpu() / temperature  # [vocab]
        top = torch.topk(logits, top_k)
        next_id = int(top.indices[torch.multinomial(torch.softmax(top.values, -1), 1, generator=generator)])
        if next_id == tokenizer.eos_token_id:
            break
        ids.append(next_id)
    return tokenizer.decode(ids)

# --- the command line ----------------------------------------------------------------------------


def _machine(device: torch.device) -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = list(os.getloadavg())
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glm3_teach.train", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a TOML or JSON file of TrainConfig keys")
    parser.add_argument("--resume", action="store_true",
                        help="continue from run_dir/checkpoint (from step 0 when the run never reached one)")
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="train N optimizer steps instead of the config's max_steps (a short run)")
    parser.add_argument("--run-dir", metavar="PATH",
                        help="write training checkpoints here instead of the config's run_dir")
    parser.add_argument("--export-dir", metavar="PATH",
                        help="export the final model here instead of the config's export_dir")
    parser.add_argument("--force", action="store_true",
                        help="replace a trained model already in the export folder (such as the shipped one)")
    parser.add_argument("--note", default="", help="a remark stored in training.json (e.g. the machine was shared)")
    args = parser.parse_args(argv)
    command = "python -m glm3_teach.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    return cli_main(parser.prog, lambda: _run(args, command))


def _with_overrides(config: TrainConfig, args: argparse.Namespace) -> tuple[TrainConfig, list[str]]:
    """The config with the command line's ``--max-steps``, ``--run-dir`` and ``--export-dir``, and notes."""
    changes: dict[str, Any] = {}
    notes = []
    if args.max_steps is not None:
        changes["max_steps"] = args.max_steps
        if args.max_steps >= 1 and config.warmup_steps > args.max_steps:
            changes["warmup_steps"] = args.max_steps
            notes.append(f"--max-steps {args.max_steps} is shorter than warmup_steps={config.warmup_steps}, so the "
                         f"warmup lasts all {args.max_steps} steps")
    if args.run_dir is not None:
        changes["run_dir"] = args.run_dir
    if args.export_dir is not None:
        changes["export_dir"] = args.export_dir
    return (dataclasses.replace(config, **changes) if changes else config), notes


def _trained_model(folder: Path) -> bool:
    """A model checkpoint, or a LoRA / P-Tuning adapter folder (``python -m glm3_teach.sft`` writes both)."""
    return is_model_checkpoint(folder) or adapter_kind(folder) is not None


def check_export_folder(config: TrainConfig, force: bool, resume: bool) -> None:
    """Refuse to replace a trained model (the shipped one, an earlier run's, an adapter) unless ``--force``.

    With ``--resume``, a model without its ``training.json`` is the export this very run was
    writing when it was stopped, so finishing it replaces nothing that was complete.
    """
    folder = recover_folder(Path(config.export_dir))
    if force or not _trained_model(folder) or (resume and not (folder / "training.json").is_file()):
        check_replaceable(folder, _trained_model, "checkpoint or adapter folder")
        return
    raise FileExistsError(f"{folder} already holds a trained model, which this run would replace; pass --force to "
                          f"replace it, or choose another folder with --export-dir")


def _resume_folder(config: TrainConfig, resume: bool) -> Path | None:
    """The checkpoint ``--resume`` continues from; ``None`` (and a note) when the run has none yet."""
    if not resume:
        return None
    if not config.run_dir:
        raise ValueError("--resume continues the run saved in run_dir, but the config sets no run_dir; add "
                         "run_dir = \"runs/NAME\" (the folder of the run to continue) or drop --resume")
    folder = recover_folder(Path(config.run_dir) / "checkpoint")
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        print(f"--resume: {config.run_dir} holds no training checkpoint yet (the run stopped before its first "
              f"one), so training starts from step 0", file=sys.stderr, flush=True)
        return None
    return folder


def _run(args: argparse.Namespace, command: str) -> int:
    """The command line's work: check everything, train (or resume), export, record (rank 0)."""
    config, notes = _with_overrides(TrainConfig.from_file(args.config), args)
    if config.export_dir:
        check_export_folder(config, args.force, args.resume)
    for note in notes:
        print(note, file=sys.stderr, flush=True)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    world = world_from_env()
    created = init_distributed(local_device(pick_device(config.device), world)) if world.distributed else False
    try:
        return _train_and_export(args, command, config, world)
    finally:
        destroy_distributed(created)


def _train_and_export(args: argparse.Namespace, command: str, config: TrainConfig, world: World) -> int:
    from glm3_teach.tokenizer import load_tokenizer

    say = print if world.is_main else (lambda *a, **k: None)
    tokenizer = load_tokenizer()
    if config.model_config().padded_vocab_size < tokenizer.vocab_size:
        raise ValueError(f"model.padded_vocab_size={config.model_config().padded_vocab_size} is smaller than the "
                         f"tokenizer's vocab_size={tokenizer.vocab_size}; set it to at least {tokenizer.vocab_size}")
    resume = _resume_folder(config, args.resume)
    started = time.time()
    say("tokenizing and packing the corpus…", flush=True)
    data = load_data(config, tokenizer)
    model = build_model(config)
    machine = _machine(next(model.parameters()).device)
    processes = f" on {world.world_size} processes ({config.batch_size} blocks each per micro-batch)" \
        if world.distributed else ""
    say(f"{count_parameters(model.config):,} parameters; {len(data.train.tokens):,} training tokens in "
        f"{len(data.train):,} blocks; {len(data.val.tokens):,} validation tokens; training {config.max_steps} "
        f"steps{processes}", flush=True)
    history = train(model, data, config, resume=resume, verbose=True)
    if not world.is_main:
        return 0
    if config.export_dir:  # the numbers below are those of the shipped (exported, reloaded) weights
        say(f"exporting to {config.export_dir}…", flush=True)
        save_pretrained(model, config.export_dir, tokenizer=tokenizer, dtype=config.save_dtype)
        model = load_pretrained(config.export_dir, dtype=torch.float32, device=next(model.parameters()).device)
    machine["processes"] = world.world_size
    _record(args, command, config, model, tokenizer, data, history, machine, started)
    return 0


def _record(args: argparse.Namespace, command: str, config: TrainConfig, model: ChatGLMForCausalLM, tokenizer,
            data: TrainData, history: dict[str, Any], machine: dict[str, Any], started: float) -> None:
    """Evaluate the final model, print the summary and write ``training.json`` and the loss curve."""
    print(f"evaluating the final model on all {len(data.val):,} validation blocks…", flush=True)
    final = evaluate(model, data.val, 0, config.batch_size, autocast_dtype(config, next(model.parameters()).device))
    entropy = unigram_entropy(data.val.tokens)
    count = len(config.samples_prompts)
    print(f"sampling {count} continuation{'s' if count != 1 else ''}…", flush=True)
    samples = {p: sample_text(model, tokenizer, p, seed=config.seed) for p in config.samples_prompts}
    wall = time.time() - started
    if hasattr(os, "getloadavg"):
        machine["load_average_at_end"] = list(os.getloadavg())
    record = {"command": command, "config_file": str(args.config), "config": config.to_dict(),
              "model_config": model.config.to_dict(), "parameters": count_parameters(model.config),
              "machine": machine, "note": args.note, "wall_seconds": round(wall, 1),
              "train_seconds": round(history["train_seconds"], 1),
              "train_tokens_seen": history["tokens"][-1] if history["tokens"] else 0,
              "train_split_tokens": len(data.train.tokens), "val_split_tokens": len(data.val.tokens),
              "final_train_loss": history["loss"][-1] if history["loss"] else None,
              "final_val": final, "val_unigram_entropy": entropy, "val_loss_over_unigram_entropy": final["loss"] / entropy,
              "samples": samples, "history": history}
    _print_summary(record)
    if config.export_dir:
        export = Path(config.export_dir)
        (export / "training.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        plot_history(history, export / "loss_curve.png", title=f"{Path(args.config).stem}: {command}")
        print(f"exported to {export} (weights, tokenizer, training.json, loss_curve.png)")


def _print_summary(record: dict[str, Any]) -> None:
    """The run's final figures, rounded, and its samples."""
    final, train_loss = record["final_val"], record["final_train_loss"]
    print(f"final training loss {train_loss:.3f}" if train_loss is not None else "no training step was logged")
    print(f"validation loss {final['loss']:.3f} nats/token over {final['tokens']:,} tokens: perplexity "
          f"{final['perplexity']:.2f}, {final['bits_per_char']:.3f} bits/char; "
          f"{record['val_loss_over_unigram_entropy']:.2f} x the unigram entropy {record['val_unigram_entropy']:.3f}")
    print(f"wall time {record['wall_seconds']:,.1f} s, of which training {record['train_seconds']:,.1f} s")
    for prompt, text in record["samples"].items():
        print(f"sample {prompt!r}: {text!r}")


if __name__ == "__main__":
    raise SystemExit(main())
