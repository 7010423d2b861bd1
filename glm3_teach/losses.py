"""The losses of training: next-token cross-entropy, its masked form for SFT, and validation.

Taught in lesson 06 (预训练 Pretraining), section 1 (next-token prediction is classification),
with the validation loss of sections 4 and 5; lesson 08 (SFT) adds the masked form. ``next_token_loss`` scores
each position against the following id in fp32; ``masked_next_token_loss`` skips labels of
-100; ``batch_loss`` runs a packed block batch or an SFT batch through the model and returns
``(mean loss, number of targets)``; ``evaluate`` gives the validation loss, perplexity and bits
per character. ``glm3_teach.train`` re-exports them.

What it leaves out: label smoothing, z-loss, and losses fused with the output layer (which
avoid materialising ``[batch, seq, vocab]`` logits).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from glm3_teach.data import TokenDataset
from glm3_teach.distributed import World, all_reduce_sum, shard


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting ``input_ids[:, t + 1]`` from position ``t``.

    ``logits``: ``[batch, seq, vocab]`` for ``input_ids[:, :-1]``; ``input_ids``: ``[batch, seq + 1]``.
    """
    targets = input_ids[:, 1:]                                               # [batch, seq]
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


# --- lesson 08's SFT hook: batches {"input_ids", "labels"} from a dataset with a ``collate`` ------


def masked_next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``labels[:, t + 1]`` from position ``t``, skipping labels of -100.

    ``logits``: ``[batch, seq, vocab]``; ``labels``: ``[batch, seq]`` (``glm3_teach.sft``). A batch
    without a single target gives 0 (still connected to the graph), never 0/0 = NaN.
    """
    targets = labels[:, 1:]                                                  # [batch, seq - 1]
    if not bool((targets != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), targets.flatten(), ignore_index=-100)


def batch_loss(model: Any, batch: Any, device: torch.device, amp_dtype: torch.dtype | None) -> tuple[torch.Tensor, int]:
    """``(mean loss, number of targets)`` of a packed block batch or an SFT batch (a dict).

    An SFT batch may carry ``prefix_ids`` ``[1, prefix]``: ids every row starts with, none of them
    a target; they go through the model once and their KV cache serves every row (the same
    loss and gradients as running each full row, for a fraction of the compute).
    """
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        if isinstance(batch, dict):
            labels, cache = batch["labels"].to(device), None                 # [batch, seq]
            if "prefix_ids" in batch:  # a prefix every row shares (the tools system message): run it once
                cache = model(batch["prefix_ids"].to(device), use_cache=True).kv_cache  # [1, G, prefix, D] each
                cache = [(k.expand(len(labels), -1, -1, -1), v.expand(len(labels), -1, -1, -1)) for k, v in cache]
            logits = model(batch["input_ids"].to(device), kv_cache=cache).logits  # [batch, seq, vocab]
            return masked_next_token_loss(logits, labels), int((labels[:, 1:] != -100).sum())
        batch = batch.to(device)                                             # [batch, block_size + 1]
        logits = model(batch[:, :-1]).logits                                 # [batch, block_size, vocab]
    return next_token_loss(logits, batch), batch[:, 1:].numel()


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: TokenDataset, max_blocks: int = 0, batch_size: int = 8,
             amp_dtype: torch.dtype | None = None, world: World | None = None) -> dict[str, float]:
    """Validation loss (nats/token), perplexity and bits per character over evenly spaced blocks.

    ``max_blocks=0`` evaluates every block. Bits per character = total nats / ln 2 / characters,
    the characters being the targets' share of the split's characters
    (``tokens * dataset.characters_per_token``). Under torchrun (``world``) each process scores
    every ``world_size``-th block and the sums are added over the processes.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    count = len(dataset) if max_blocks <= 0 else min(max_blocks, len(dataset))
    indices = torch.linspace(0, len(dataset) - 1, count).round().long().tolist()
    if world is not None and world.distributed:
        indices = shard(indices, world)
    collate = getattr(dataset, "collate", torch.stack)  # SFT samples (lesson 08) or packed blocks
    total_nats, total_tokens = 0.0, 0
    for start in range(0, len(indices), batch_size):
        batch = collate([dataset[i] for i in indices[start:start + batch_size]])  # [b, T + 1] or SFT dict
        loss, targets = batch_loss(model, batch, device, amp_dtype)
        total_nats += loss.item() * targets
        total_tokens += targets
    model.train(was_training)
    if world is not None and world.distributed:
        total_nats, total_tokens = all_reduce_sum([total_nats, total_tokens], device, world)
        total_tokens = round(total_tokens)
    loss = total_nats / total_tokens
    characters = total_tokens * dataset.characters_per_token
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_char": total_nats / math.log(2) / characters,
            "tokens": total_tokens}
