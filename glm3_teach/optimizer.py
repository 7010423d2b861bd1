"""The optimizer of a training run: AdamW with decay on matrices only, warmup then cosine.

Taught in lesson 06 (预训练 Pretraining), section 3, which derives AdamW and draws the
schedule: ``parameter_groups`` (embeddings and linear weights decay; biases and RMSNorm
weights do not), ``lr_at`` (a linear warmup to ``lr``, then half a cosine down to
``min_lr_ratio * lr`` at the last step) and ``build_optimizer`` (``torch.optim.AdamW`` with a
``LambdaLR`` scheduler following ``lr_at``). ``glm3_teach.train`` re-exports them.

What it leaves out: other optimizers and schedules (constant, inverse square root,
warmup-stable-decay), per-layer learning rates, and fused or 8-bit optimizer states.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from glm3_teach.train_config import TrainConfig


def lr_at(step: int, lr: float, warmup_steps: int, max_steps: int, min_lr_ratio: float) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warmup, then cosine decay.

    Steps ``0 .. warmup_steps-1`` climb ``lr * (step + 1) / warmup_steps``; afterwards the rate
    follows half a cosine from ``lr`` down to ``lr * min_lr_ratio`` at the last step.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    decay_steps = max(1, max_steps - 1 - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return lr * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: matrices (2-D: embeddings, linear weights) decay; vectors (biases, norms) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, config: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over ``parameter_groups`` and a LambdaLR scheduler that follows ``lr_at``."""
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr,
                                  betas=(config.beta1, config.beta2))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(
        step, config.lr, config.warmup_steps, config.max_steps, config.min_lr_ratio) / config.lr)
    return optimizer, scheduler
