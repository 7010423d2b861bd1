"""The training loop: ``train(model, data, config) -> history``, on one process or under torchrun.

Taught in lesson 06 (预训练 Pretraining), section 4, where the learner writes this loop by
hand (zero_grad, forward, loss, backward, clip, step, schedule) and checks its first losses
against ``train``'s. Each optimizer step sums ``grad_accum_steps`` micro-batches, clips the
global gradient norm, refuses an update a non-finite loss or gradient would make, steps AdamW
and its schedule (``glm3_teach.optimizer``), logs, validates every ``eval_every`` steps
(``glm3_teach.losses.evaluate``) and saves a training checkpoint every ``checkpoint_every``
steps (``glm3_teach.training_state``), from which ``resume`` continues exactly.

Under ``torchrun`` (section 9, data parallelism) the same call runs on every process: it joins
the process group, wraps the model in PyTorch's ``DistributedDataParallel`` and trains each
rank on its shard of every batch (``glm3_teach.distributed``); ``batch_size`` is per process,
and only rank 0 shows the bar, draws and saves. ``glm3_teach.train`` re-exports every name.

What it leaves out: sharded weights and optimizer states (FSDP), early stopping, and
attention masks between the documents of a packed block.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm import tqdm

from glm3_teach.checkpoint import check_replaceable, load_pretrained
from glm3_teach.data import BlockSampler, TokenDataset, load_documents, make_loader
from glm3_teach.device import pick_device, seed_everything
from glm3_teach.distributed import (World, all_reduce_sum, barrier, init_distributed, local_device, shard,
                                    world_from_env, wrap)
from glm3_teach.loss_plot import LivePlot
from glm3_teach.losses import batch_loss, evaluate
from glm3_teach.model import ChatGLMForCausalLM
from glm3_teach.optimizer import build_optimizer
from glm3_teach.train_config import TrainConfig
from glm3_teach.training_state import _unwrap, is_training_checkpoint, load_training_state, save_training_state


@dataclass
class TrainData:
    """The two splits a run reads: ``train`` (shuffled blocks) and ``val`` (never trained on)."""

    train: TokenDataset
    val: TokenDataset


def load_data(config: TrainConfig, tokenizer) -> TrainData:
    """Tokenize and pack the corpus of ``config`` (course corpus or ``config.corpus``) into blocks."""
    train_docs = load_documents("train", config.lang, config.corpus)
    if config.max_documents is not None:
        train_docs = train_docs[:config.max_documents]
    val_docs = load_documents("val", config.lang, config.corpus)
    return TrainData(TokenDataset.from_documents(train_docs, tokenizer, config.block_size, "training split"),
                     TokenDataset.from_documents(val_docs, tokenizer, config.block_size, "validation split"))


def make_batches(dataset: Any, batch_size: int, sampler: BlockSampler, world: World | None = None) -> Any:
    """Packed blocks (``make_loader``), or SFT samples batched by the dataset's ``collate``.

    Under torchrun (``world``) the sampler serves ``batch_size * world_size`` samples per batch,
    the same order on every rank, and rank ``r`` keeps samples ``r, r + world_size, ...``.
    """
    collate = getattr(dataset, "collate", None)
    if world is not None and world.distributed:
        collate = collate or torch.utils.data.default_collate
        return torch.utils.data.DataLoader(dataset, batch_size=batch_size * world.world_size, sampler=sampler,
                                           num_workers=0, collate_fn=lambda items: collate(shard(items, world)))
    if collate is None:
        return make_loader(dataset, batch_size, sampler)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0,
                                       collate_fn=collate)


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 for autocast on CUDA ("auto") or when asked ("bf16"); None = plain fp32."""
    if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _new_history() -> dict[str, Any]:
    return {"step": [], "loss": [], "lr": [], "tokens": [], "val_step": [], "val_loss": [], "val_perplexity": [],
            "val_bits_per_char": [], "train_seconds": 0.0}


def shard_loss(loss: torch.Tensor, targets: int, device: torch.device, world: World) -> torch.Tensor:
    """This rank's share of the global batch's mean loss, scaled so that DDP's average is exact.

    DDP averages the ranks' gradients: ``(1/W) * sum_r grad(loss_r)``. With ``loss_r`` the mean
    over rank r's ``n_r`` targets that equals the gradient of the global mean over all
    ``N = sum_r n_r`` targets only when every ``n_r = N / W``. Packed blocks guarantee it (every
    block has ``block_size`` targets), SFT batches do not (their -100 labels differ per
    sample). So we all-reduce the target count and return ``loss_r * n_r * W / N``:
    ``(1/W) * sum_r grad(sum_r / N * W) = grad(sum of all targets' losses / N)``, exactly the
    gradient of one process on the whole batch. For packed blocks the factor is 1.
    """
    if not world.distributed:
        return loss
    total = all_reduce_sum([targets], device, world)[0]
    return loss * (targets * world.world_size / total) if total else loss


def train(model: ChatGLMForCausalLM, data: TrainData, config: TrainConfig, resume: str | Path | None = None,
          callback: Callable[[int, dict[str, Any]], None] | None = None, verbose: bool = False) -> dict[str, Any]:
    """Train ``model`` on ``data.train`` for ``config.max_steps`` optimizer steps; return the history.

    The model should be freshly built after ``seed_everything(config.seed)`` (``build_model``
    does both) and already on its device. ``resume``: a training checkpoint folder to continue
    from. ``callback(step, history)`` runs after every optimizer step (on every rank).
    ``verbose``: print each validation loss, and when an evaluation starts (rank 0 only).
    The history holds, per logged step, ``step``, ``loss`` (mean over the step's micro-batches),
    ``lr`` and ``tokens`` seen, and per validation pass ``val_step``, ``val_loss``,
    ``val_perplexity`` and ``val_bits_per_char``.

    Under ``torchrun`` (or in a process group you started) every rank runs this same call:
    it joins the group when none runs yet (the group stays for later calls and is left when the
    process exits), wraps the model in ``DistributedDataParallel`` and trains on its shard of
    each batch; the history holds the global losses, the same on every rank.
    """
    init_distributed(next(model.parameters()).device)
    world = world_from_env()
    device = next(model.parameters()).device
    amp_dtype = autocast_dtype(config, device)
    optimizer, scheduler = build_optimizer(model, config)
    sampler = BlockSampler(len(data.train), config.seed)
    history, step = _new_history(), 0
    check_before_training(model, data, config, resume)
    if resume is not None:
        step, history = load_training_state(resume, model, optimizer, scheduler, sampler, config)
    ddp = wrap(model, device) if world.distributed else None  # after the resume: it copies rank 0's weights
    forward = ddp or model
    forward = torch.compile(forward) if config.compile else forward
    batches = iter(make_batches(data.train, config.batch_size, sampler, world))
    tokens_per_step = config.batch_size * config.grad_accum_steps * config.block_size * world.world_size
    last = config.max_steps if config.stop_after_step is None else min(config.max_steps, config.stop_after_step)
    live = LivePlot() if config.live_plot and world.is_main else None
    bar = tqdm(total=config.max_steps, initial=step, disable=not config.progress or not world.is_main, desc="train",
               mininterval=2.0)
    say = bar.write if verbose and world.is_main else (lambda text: None)
    model.train()
    while step < last:
        started = time.perf_counter()
        step_loss = 0.0
        for micro in range(config.grad_accum_steps):
            # DDP all-reduces the gradients only in the last micro-batch's backward (no_sync before it)
            syncing = ddp is None or micro == config.grad_accum_steps - 1
            with nullcontext() if syncing else ddp.no_sync():
                loss, targets = batch_loss(forward, next(batches), device, amp_dtype)
                loss = shard_loss(loss, targets, device, world) / config.grad_accum_steps
                loss.backward()
            step_loss += loss.item()
        if world.distributed:  # the global mean loss (each rank's share sums to W times it)
            step_loss = all_reduce_sum([step_loss], device, world)[0] / world.world_size
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip) if config.grad_clip > 0 else None
        _check_finite(step + 1, step_loss, norm, config)  # before the update: the weights stay finite
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        seconds = time.perf_counter() - started
        history["train_seconds"] += seconds
        if step % config.log_every == 0 or step == last:
            for key, value in (("step", step), ("loss", step_loss), ("lr", lr), ("tokens", step * tokens_per_step)):
                history[key].append(value)
        if (config.eval_every and step % config.eval_every == 0) or step == config.max_steps:
            _validate(model, data, config, amp_dtype, world, step, history, say)
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_step / seconds:,.0f}", refresh=False)
        bar.update(1)  # redraws at most every 2 s, so a notebook's stored output stays small
        if live is not None and (step % max(1, config.log_every) == 0 or step == last):
            live.draw(history)
        if world.is_main and config.run_dir and (
                (config.checkpoint_every and step % config.checkpoint_every == 0) or step == last):
            save_training_state(Path(config.run_dir) / "checkpoint", model, optimizer, scheduler, step, sampler,
                                config, history)
        if callback is not None:
            callback(step, history)
    bar.close()
    barrier(world)  # every rank returns once rank 0's last checkpoint is complete
    return history


def _validate(model: torch.nn.Module, data: TrainData, config: TrainConfig, amp_dtype: torch.dtype | None,
              world: World, step: int, history: dict[str, Any], say: Callable[[str], None]) -> None:
    """A validation pass after ``step``, appended to ``history`` (and printed by ``say``)."""
    blocks = len(data.val) if config.eval_blocks <= 0 else min(config.eval_blocks, len(data.val))
    say(f"step {step}/{config.max_steps}: evaluating on {blocks:,} validation blocks…")
    result = evaluate(model, data.val, config.eval_blocks, config.batch_size, amp_dtype, world)
    for key in ("loss", "perplexity", "bits_per_char"):
        history[f"val_{key}"].append(result[key])
    history["val_step"].append(step)
    say(f"step {step}/{config.max_steps}: validation loss {result['loss']:.3f} nats/token, perplexity "
        f"{result['perplexity']:.2f}, {result['bits_per_char']:.3f} bits/char")


def check_before_training(model: ChatGLMForCausalLM, data: TrainData, config: TrainConfig,
                          resume: str | Path | None = None) -> None:
    """Everything that would otherwise fail later: the data's ids fit the model's vocabulary, and
    ``run_dir/checkpoint`` is absent, empty or a training checkpoint in a writable folder."""
    tokens = getattr(data.train, "tokens", None)
    vocab = _unwrap(model).config.padded_vocab_size
    if isinstance(tokens, torch.Tensor) and len(tokens) and int(tokens.max()) >= vocab:
        raise ValueError(f"the training data holds token id {int(tokens.max())}, but the model's vocabulary has "
                         f"padded_vocab_size={vocab} rows; set model.padded_vocab_size to at least the "
                         f"tokenizer's vocab_size")
    if config.run_dir:
        check_replaceable(Path(config.run_dir) / "checkpoint", is_training_checkpoint, "training checkpoint folder")


def _check_finite(step: int, loss: float, grad_norm: torch.Tensor | None, config: TrainConfig) -> None:
    """Stop before an update that would make the weights NaN; the last checkpoint stays as it was."""
    if math.isfinite(loss) and (grad_norm is None or bool(torch.isfinite(grad_norm))):
        return
    what = f"loss is {loss}" if not math.isfinite(loss) else f"gradient norm is {float(grad_norm)}"
    kept = (f"the last checkpoint in {Path(config.run_dir) / 'checkpoint'} is kept unchanged"
            if config.run_dir else "no checkpoint was written (run_dir is not set)")
    raise FloatingPointError(f"step {step}: the training {what}, so training stopped before updating the weights; "
                             f"{kept}. Lower lr (now {config.lr}) or raise warmup_steps, then resume or restart")


def build_model(config: TrainConfig, device: torch.device | str | None = None) -> ChatGLMForCausalLM:
    """``seed_everything(config.seed)``, then a fresh model of ``config.model`` on ``device``
    (or, with ``config.init_from``, that exported model to continue from: ``load_init_from``).

    Under torchrun, ``cuda`` means this process's own GPU (``cuda:LOCAL_RANK``).
    """
    seed_everything(config.seed)
    device = local_device(torch.device(device) if device is not None else pick_device(config.device))
    if config.init_from:
        return load_init_from(config, device)
    return ChatGLMForCausalLM(config.model_config()).to(device)


_NOT_SIZES = {"seq_length", "torch_dtype", "use_cache", "attention_impl"}  # may differ from init_from


def load_init_from(config: TrainConfig, device: torch.device) -> ChatGLMForCausalLM:
    """The exported model ``config.init_from`` in fp32, at ``config.model``'s ``seq_length`` (continued
    pretraining, e.g. a longer context: RoPE tables are built for any length, so no weight changes)."""
    folder = Path(config.init_from)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"init_from={str(folder)!r} is not an exported model (no config.json there); "
                                f"point it at a folder such as data/checkpoints/base")
    model = load_pretrained(folder, dtype=torch.float32, device=device).train()
    ours, theirs = config.model_config().to_dict(), model.config.to_dict()
    differ = sorted(k for k in ours if k not in _NOT_SIZES and k in theirs and ours[k] != theirs[k])
    if differ:
        raise ValueError(f"init_from={str(folder)!r} has other sizes than [model]: "
                         + ", ".join(f"{k}={theirs[k]!r} there vs {ours[k]!r} here" for k in differ)
                         + "; copy them from its config.json into [model]")
    model.config.seq_length = ours["seq_length"]
    return model
