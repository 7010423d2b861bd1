"""Pretraining: next-token prediction on packed blocks, with exact resume.

Taught in lesson 06 (预训练 Pretraining). ``train(model, data, config) -> history`` runs
the loop the lesson builds by hand:

- the loss is the cross-entropy of the logits at each position against the next id
  (``next_token_loss``), computed in fp32;
- AdamW with weight decay on matrices only (``parameter_groups``: embeddings and linear
  weights decay; biases and RMSNorm weights do not), a linear warmup then a cosine decay to
  ``min_lr_ratio * lr`` (``lr_at``), gradient clipping, gradient accumulation;
- bf16 autocast on CUDA (fp32 on the CPU), ``torch.compile`` as an option, the device from
  ``glm3_teach.device.pick_device``;
- a tqdm bar with loss, lr and tokens/s, a periodic validation loss with perplexity and bits
  per character (``total nats / ln 2 / characters``, which does not depend on the tokenizer),
  an optional live loss plot for notebooks (``LivePlot``) and a saved figure;
- training checkpoints written crash-safely (``save_training_state`` through
  ``glm3_teach.checkpoint.publish_folder``: a process killed at any instant leaves a complete
  checkpoint) holding the model, the optimizer, the scheduler, the step, every RNG state and
  the data position, in safetensors + JSON; ``resume`` continues exactly where it stopped;
- every setting checked before the first step (``TrainConfig`` types and ranges, the output
  folders in ``check_before_training``), and a stop before any update that a non-finite loss
  would make, so a finished run is never lost to a late error and no NaN checkpoint is written.

``python -m glm3_teach.train --config configs/base.toml`` trains from a TOML or JSON file
(every key of ``TrainConfig`` below; the model's sizes under ``[model]``), then exports the
final model in the Hugging Face layout with the tokenizer and a ``training.json`` record.
The same command plus ``--resume`` continues a run that was stopped or killed (from step 0,
with a note, when it never reached its first checkpoint). A user error prints one line on
stderr and exits with status 2.

What it leaves out: several GPUs, sequence packing with attention masks between documents
(documents in one block may attend to each other, separated by ``</s>``), and early stopping.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import random
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from glm3_teach.checkpoint import (check_replaceable, load_pretrained, publish_folder, recover_folder,
                                   save_pretrained, staging_folder)
from glm3_teach.data import BlockSampler, TokenDataset, load_documents, make_loader, unigram_entropy
from glm3_teach.device import as_device, pick_device, seed_everything
from glm3_teach.errors import check_field_types, cli_main, read_json
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM, count_parameters

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

STATE_FILE, MODEL_FILE, OPTIMIZER_FILE, RNG_FILE = "trainer_state.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors"
# Keys that may change between a run and its resumption: where things go and how much is shown.
RESUMABLE_KEYS = {"run_dir", "export_dir", "progress", "live_plot", "stop_after_step", "checkpoint_every",
                  "log_every", "device", "num_threads", "samples_prompts"}


@dataclass
class TrainConfig:
    """Every setting of a training run. TOML/JSON files use these names; ``[model]`` holds model sizes."""

    model: dict[str, Any] = field(default_factory=dict)  # ChatGLMConfig fields (padded_vocab_size etc.)
    corpus: str | None = None        # a UTF-8 text file of your own; None = the course corpus
    lang: str | None = None          # "zh", "en" or None (both) for the course corpus
    max_documents: int | None = None  # use only the first N training documents (quick runs); None = all
    block_size: int = 256            # tokens the model reads per block (seq_len)
    batch_size: int = 8              # blocks per micro-batch
    grad_accum_steps: int = 1        # micro-batches summed into one optimizer step
    max_steps: int = 100             # optimizer steps
    lr: float = 1e-3                 # peak learning rate
    min_lr_ratio: float = 0.1        # the cosine ends at lr * min_lr_ratio
    warmup_steps: int = 10           # linear warmup from lr / warmup_steps to lr
    weight_decay: float = 0.1        # AdamW decay on matrices (embeddings, linear weights) only
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0           # max global gradient norm; 0 = no clipping
    seed: int = 0                    # model init, data order and every RNG
    device: str | None = None        # None = glm3_teach.device.pick_device() (GLM3_DEVICE, CUDA, MPS, CPU)
    precision: str = "auto"          # "auto" (bf16 autocast on CUDA, fp32 elsewhere), "fp32" or "bf16"
    compile: bool = False            # torch.compile the model
    num_threads: int | None = None   # CLI: CPU threads for PyTorch (torch.set_num_threads); None = PyTorch's default
    eval_every: int = 50             # steps between validation passes (and at the last step); 0 = only at the end
    eval_blocks: int = 32            # validation blocks per periodic pass (evenly spaced); 0 = all of them
    log_every: int = 1               # steps between history entries of the training loss
    checkpoint_every: int = 0        # steps between training checkpoints in run_dir; 0 = only at the end
    run_dir: str | None = None       # training checkpoints (model + optimizer + RNG + data position); None = none
    export_dir: str | None = None    # final model in the HF layout + tokenizer + training.json (CLI only)
    save_dtype: str = "bfloat16"     # dtype of the exported weights (they load back in fp32)
    stop_after_step: int | None = None  # stop early after this step (a simulated interruption)
    progress: bool = True            # show the tqdm bar
    live_plot: bool = False          # redraw a loss plot in a notebook while training
    samples_prompts: list[str] = field(default_factory=lambda: ["从前，", "One day, "])  # CLI: samples in training.json

    def __post_init__(self) -> None:
        check_field_types(self)  # "5" is not an int, "no" is not a bool, nan and inf are not numbers
        for name in ("block_size", "batch_size", "grad_accum_steps", "max_steps", "log_every", "max_documents",
                     "num_threads", "stop_after_step"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        for name in ("eval_every", "eval_blocks", "checkpoint_every", "warmup_steps", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0 (0 switches it off), got {getattr(self, name)!r}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig.min_lr_ratio must lie in [0, 1] (the cosine ends at lr * min_lr_ratio), "
                             f"got {self.min_lr_ratio!r}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(f"TrainConfig.weight_decay and grad_clip must be >= 0 (0 turns them off), got "
                             f"{self.weight_decay!r} and {self.grad_clip!r}")
        if not 0 <= self.warmup_steps <= self.max_steps:
            raise ValueError(f"warmup_steps={self.warmup_steps} must lie in [0, max_steps={self.max_steps}]")
        self._check_choices()
        model = self.model_config()  # fails early, with the model's own message, on bad sizes
        if self.block_size > model.seq_length:
            raise ValueError(f"TrainConfig.block_size={self.block_size} exceeds the model's seq_length="
                             f"{model.seq_length} (its longest input); lower block_size or raise model.seq_length")

    def _check_choices(self) -> None:
        """The settings that are names or texts: betas, save_dtype, lang, device, samples_prompts."""
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must lie in [0, 1) (Adam's moment decay), "
                                 f"got {getattr(self, name)!r}")
        dtype = getattr(torch, self.save_dtype.removeprefix("torch."), None)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"TrainConfig.save_dtype must name a floating dtype such as 'bfloat16', 'float16' "
                             f"or 'float32', got {self.save_dtype!r}")
        if self.lang not in (None, "zh", "en"):
            raise ValueError(f"TrainConfig.lang must be 'zh', 'en' or None (both), got {self.lang!r}")
        if self.device is not None:
            try:
                as_device(self.device, "TrainConfig.device")
            except RuntimeError:  # a known kind missing on this machine: reported when training starts
                pass
        empty = [i for i, prompt in enumerate(self.samples_prompts) if not prompt.strip()]
        if empty:
            raise ValueError(f"TrainConfig.samples_prompts[{empty[0]}] is empty; a sample continues a prompt, "
                             f"so give some text such as '从前，' (or leave samples_prompts out)")

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "the config") -> "TrainConfig":
        """Build from a dict; unknown keys (here or under ``[model]``) raise a ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        model_names = {f.name for f in dataclasses.fields(ChatGLMConfig)} - {"extra"}
        if not isinstance(values.get("model", {}), dict):
            raise ValueError(f"{source}: model must be a table of ChatGLMConfig keys, got {values['model']!r}")
        unknown += [f"model.{k}" for k in sorted(set(values.get("model", {})) - model_names)]
        if unknown:
            raise ValueError(f"{source} has unknown keys {unknown}; the known keys are the fields of "
                             f"glm3_teach.train.TrainConfig ({', '.join(sorted(names))}) and, under [model], "
                             f"those of ChatGLMConfig")
        return cls(**values)

    @classmethod
    def from_file(cls, path: str | Path) -> "TrainConfig":
        """Read a ``.toml`` or ``.json`` config file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        if path.suffix == ".toml":
            try:
                values = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{path} is not valid TOML ({error}); fix the line it names") from None
        elif path.suffix == ".json":
            values = read_json(path, fix="fix the place it names")
        else:
            raise ValueError(f"{path.name}: a config must be a .toml or .json file")
        if not isinstance(values, dict):
            raise ValueError(f"{path} must hold a table of TrainConfig keys, got {type(values).__name__}")
        return cls.from_dict(values, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def model_config(self) -> ChatGLMConfig:
        unknown = sorted(set(self.model) - {f.name for f in dataclasses.fields(ChatGLMConfig)})
        if unknown:
            raise ValueError(f"TrainConfig.model has unknown keys {unknown}; use the fields of ChatGLMConfig")
        return ChatGLMConfig(**self.model)


# --- the pieces of the loop ------------------------------------------------------------------


def next_token_loss(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of predicting ``input_ids[:, t + 1]`` from position ``t``.

    ``logits``: ``[batch, seq, vocab]`` for ``input_ids[:, :-1]``; ``input_ids``: ``[batch, seq + 1]``.
    """
    targets = input_ids[:, 1:]                                               # [batch, seq]
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


# --- lesson 08's SFT hook: batches {"input_ids", "labels"} from a dataset with a ``collate`` --------


def masked_next_token_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``labels[:, t + 1]`` from position ``t``, skipping labels of -100.

    ``logits``: ``[batch, seq, vocab]``; ``labels``: ``[batch, seq]`` (``glm3_teach.sft``). A batch
    without a single target gives 0 (still connected to the graph), never 0/0 = NaN.
    """
    targets = labels[:, 1:]                                                  # [batch, seq - 1]
    if not bool((targets != -100).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[:, :-1].float().flatten(0, 1), targets.flatten(), ignore_index=-100)


def make_batches(dataset: Any, batch_size: int, sampler: BlockSampler) -> Any:
    """Packed blocks (``make_loader``), or SFT samples batched by the dataset's ``collate``."""
    collate = getattr(dataset, "collate", None)
    if collate is None:
        return make_loader(dataset, batch_size, sampler)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=0,
                                       collate_fn=collate)


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


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 for autocast on CUDA ("auto") or when asked ("bf16"); None = plain fp32."""
    if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


@torch.no_grad()
def evaluate(model: torch.nn.Module, dataset: TokenDataset, max_blocks: int = 0, batch_size: int = 8,
             amp_dtype: torch.dtype | None = None) -> dict[str, float]:
    """Validation loss (nats/token), perplexity and bits per character over evenly spaced blocks.

    ``max_blocks=0`` evaluates every block. Bits per character = total nats / ln 2 / characters,
    the characters being the targets' share of the split's characters
    (``tokens * dataset.characters_per_token``).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    count = len(dataset) if max_blocks <= 0 else min(max_blocks, len(dataset))
    indices = torch.linspace(0, len(dataset) - 1, count).round().long().tolist()
    collate = getattr(dataset, "collate", torch.stack)  # SFT samples (lesson 08) or packed blocks
    total_nats, total_tokens = 0.0, 0
    for start in range(0, count, batch_size):
        batch = collate([dataset[i] for i in indices[start:start + batch_size]])  # [b, T + 1] or SFT dict
        loss, targets = batch_loss(model, batch, device, amp_dtype)
        total_nats += loss.item() * targets
        total_tokens += targets
    model.train(was_training)
    loss = total_nats / total_tokens
    characters = total_tokens * dataset.characters_per_token
    return {"loss": loss, "perplexity": math.exp(loss), "bits_per_char": total_nats / math.log(2) / characters,
            "tokens": total_tokens}


# --- checkpoints: atomic folders with everything a resume needs -----------------------------


def _rng_states() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"torch_cuda_{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    version, internal, gauss = random.getstate()
    return tensors, {"numpy": [kind, int(pos), int(has_gauss), float(cached)],
                     "python": [version, list(internal), gauss]}


def _set_rng_states(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("torch_cuda_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    kind, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((kind, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = info["python"]
    random.setstate((version, tuple(internal), gauss))


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": value.detach().cpu().contiguous() for index, slots in state["state"].items()
               for name, value in slots.items()}
    return tensors, state["param_groups"]


def save_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                        step: int, sampler: BlockSampler, config: TrainConfig, history: dict[str, Any]) -> Path:
    """Write a training checkpoint folder crash-safely (``glm3_teach.checkpoint.publish_folder``).

    A folder at ``path`` that is not a training checkpoint is never replaced (``FileExistsError``).

    It holds ``model.safetensors`` (fp32), ``optimizer.safetensors`` (AdamW moments),
    ``rng.safetensors`` (torch/numpy RNG states) and ``trainer_state.json`` (step, scheduler,
    optimizer hyper-parameters, python RNG, data position, config, history).
    """
    target = check_replaceable(Path(path), is_training_checkpoint, "training checkpoint folder")
    with staging_folder(target) as staging:
        model_state = {k: v.detach().cpu().contiguous() for k, v in _unwrap(model).state_dict().items()}
        save_file(model_state, str(staging / MODEL_FILE))
        optimizer_tensors, param_groups = _optimizer_tensors(optimizer)
        save_file(optimizer_tensors, str(staging / OPTIMIZER_FILE))
        rng_tensors, rng_info = _rng_states()
        save_file(rng_tensors, str(staging / RNG_FILE))
        state = {"step": step, "scheduler": scheduler.state_dict(), "param_groups": param_groups, "rng": rng_info,
                 "data_position": sampler.state_dict(), "config": config.to_dict(), "history": history}
        (staging / STATE_FILE).write_text(json.dumps(state, indent=1, ensure_ascii=False), encoding="utf-8")
        check_replaceable(target, is_training_checkpoint, "training checkpoint folder")
        publish_folder(staging, target, keep_other_files=True)
    return target


def is_training_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a folder written by ``save_training_state`` (it has trainer_state.json beside the weights)."""
    path = Path(path)
    return (path / STATE_FILE).is_file() and (path / MODEL_FILE).is_file()


def _config_differences(saved: dict[str, Any], config: TrainConfig) -> list[str]:
    current = config.to_dict()
    return [f"{key}: checkpoint {saved.get(key)!r}, now {current.get(key)!r}"
            for key in sorted(set(saved) | set(current)) if key not in RESUMABLE_KEYS and saved.get(key) != current.get(key)]


def load_training_state(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                        sampler: BlockSampler, config: TrainConfig) -> tuple[int, dict[str, Any]]:
    """Restore a folder written by ``save_training_state``; returns ``(step, history)``.

    Raises ``ValueError`` when the checkpoint was made with a different config (other than
    the ``RESUMABLE_KEYS``, which only say where output goes and what is shown).
    """
    path = recover_folder(Path(path))
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{path} is not a training checkpoint: it has no {STATE_FILE}")
    state = read_json(path / STATE_FILE, fix="resume from another checkpoint, or delete the folder to start afresh")
    lacking = [key for key in ("step", "scheduler", "param_groups", "rng", "data_position", "config", "history")
               if not isinstance(state, dict) or key not in state]
    if lacking:
        raise ValueError(f"{path / STATE_FILE} lacks {lacking}: it is not a complete training checkpoint; resume "
                         f"from another one, or delete {path} to start afresh")
    differences = _config_differences(state["config"], config)
    if differences:
        raise ValueError(f"the checkpoint at {path} was made with a different config, so it cannot resume this run:\n  "
                         + "\n  ".join(differences) + "\nResume with the config it was made with, or start afresh.")
    device = next(model.parameters()).device
    _unwrap(model).load_state_dict({k: v.to(device) for k, v in _load_tensors(path / MODEL_FILE).items()})
    tensors = _load_tensors(path / OPTIMIZER_FILE)
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        slots.setdefault(int(index), {})[name] = value if name == "step" else value.to(device)
    groups = [{**g, "betas": tuple(g["betas"])} for g in state["param_groups"]]
    optimizer.load_state_dict({"state": slots, "param_groups": groups})
    scheduler.load_state_dict(state["scheduler"])
    sampler.load_state_dict(state["data_position"])
    _set_rng_states(_load_tensors(path / RNG_FILE), state["rng"])
    return state["step"], state["history"]


def _load_tensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except FileNotFoundError:
        raise FileNotFoundError(f"{file} is missing: the training checkpoint is incomplete; resume from "
                                f"another one, or delete {file.parent} to start afresh") from None
    except SafetensorError as error:
        raise ValueError(f"{file} cannot be read ({error}): it is truncated or corrupt; resume from another "
                         f"checkpoint, or delete {file.parent} to start afresh") from None


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "_orig_mod", model)


# --- the live plot -------------------------------------------------------------------------------


class LivePlot:
    """A loss plot redrawn in place in a notebook (train loss per step, validation loss)."""

    def __init__(self, title: str = "loss"):
        import matplotlib.pyplot as plt
        from IPython.display import display

        self.figure, self.axes = plt.subplots(figsize=(7, 3.5))
        self.title = title
        self.handle = display(self.figure, display_id=True)
        plt.close(self.figure)

    def draw(self, history: dict[str, Any]) -> None:
        ax = self.axes
        ax.clear()
        ax.plot(history["step"], history["loss"], label="train", lw=1)
        if history["val_step"]:
            ax.plot(history["val_step"], history["val_loss"], "o-", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy (nats/token)")
        ax.set_title(self.title)
        ax.legend()
        self.handle.update(self.figure)


def plot_history(history: dict[str, Any], path: str | Path | None = None, title: str = "loss"):
    """A static figure of a run's losses; saved to ``path`` when given. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(history["step"], history["loss"], label="train", lw=1)
    if history["val_step"]:
        ax.plot(history["val_step"], history["val_loss"], "o-", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.legend()
    if path is not None:
        fig.savefig(path, dpi=100, bbox_inches="tight")
    return fig


# --- the loop ------------------------------------------------------------------------------------


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


def _new_history() -> dict[str, Any]:
    return {"step": [], "loss": [], "lr": [], "tokens": [], "val_step": [], "val_loss": [], "val_perplexity": [],
            "val_bits_per_char": [], "train_seconds": 0.0}


def train(model: ChatGLMForCausalLM, data: TrainData, config: TrainConfig, resume: str | Path | None = None,
          callback: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train ``model`` on ``data.train`` for ``config.max_steps`` optimizer steps; return the history.

    The model should be freshly built after ``seed_everything(config.seed)`` (``build_model``
    does both) and already on its device. ``resume``: a training checkpoint folder to continue
    from. ``callback(step, history)`` runs after every optimizer step.
    The history holds, per logged step, ``step``, ``loss`` (mean over the step's micro-batches),
    ``lr`` and ``tokens`` seen, and per validation pass ``val_step``, ``val_loss``,
    ``val_perplexity`` and ``val_bits_per_char``.
    """
    device = next(model.parameters()).device
    amp_dtype = autocast_dtype(config, device)
    optimizer, scheduler = build_optimizer(model, config)
    sampler = BlockSampler(len(data.train), config.seed)
    history, step = _new_history(), 0
    check_before_training(model, data, config, resume)
    if resume is not None:
        step, history = load_training_state(resume, model, optimizer, scheduler, sampler, config)
    forward = torch.compile(model) if config.compile else model
    batches = iter(make_batches(data.train, config.batch_size, sampler))
    tokens_per_step = config.batch_size * config.grad_accum_steps * config.block_size
    last = config.max_steps if config.stop_after_step is None else min(config.max_steps, config.stop_after_step)
    live = LivePlot() if config.live_plot else None
    bar = tqdm(total=config.max_steps, initial=step, disable=not config.progress, desc="train", mininterval=2.0)
    model.train()
    while step < last:
        started = time.perf_counter()
        step_loss = 0.0
        for _ in range(config.grad_accum_steps):
            loss = batch_loss(forward, next(batches), device, amp_dtype)[0] / config.grad_accum_steps
            loss.backward()
            step_loss += loss.item()
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
            result = evaluate(model, data.val, config.eval_blocks, config.batch_size, amp_dtype)
            for key in ("loss", "perplexity", "bits_per_char"):
                history[f"val_{key}"].append(result[key])
            history["val_step"].append(step)
        bar.set_postfix(loss=f"{step_loss:.3f}", lr=f"{lr:.2e}", tok_s=f"{tokens_per_step / seconds:,.0f}", refresh=False)
        bar.update(1)  # redraws at most every 2 s, so a notebook's stored output stays small
        if live is not None and (step % max(1, config.log_every) == 0 or step == last):
            live.draw(history)
        if config.run_dir and ((config.checkpoint_every and step % config.checkpoint_every == 0) or step == last):
            save_training_state(Path(config.run_dir) / "checkpoint", model, optimizer, scheduler, step, sampler,
                                config, history)
        if callback is not None:
            callback(step, history)
    bar.close()
    return history


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
    """``seed_everything(config.seed)``, then a fresh model of ``config.model`` on ``device``."""
    seed_everything(config.seed)
    device = torch.device(device) if device is not None else pick_device(config.device)
    return ChatGLMForCausalLM(config.model_config()).to(device)


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
    parser.add_argument("--note", default="", help="a remark stored in training.json (e.g. the machine was shared)")
    args = parser.parse_args(argv)
    command = "python -m glm3_teach.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    return cli_main(parser.prog, lambda: _run(args, command))


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
    """The command line's work: check everything, train (or resume), export, record."""
    config = TrainConfig.from_file(args.config)
    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    from glm3_teach.tokenizer import load_tokenizer

    tokenizer = load_tokenizer()
    if config.model_config().padded_vocab_size < tokenizer.vocab_size:
        raise ValueError(f"model.padded_vocab_size={config.model_config().padded_vocab_size} is smaller than the "
                         f"tokenizer's vocab_size={tokenizer.vocab_size}; set it to at least {tokenizer.vocab_size}")
    if config.export_dir:
        check_replaceable(config.export_dir)
    resume = _resume_folder(config, args.resume)
    started = time.time()
    data = load_data(config, tokenizer)
    model = build_model(config)
    machine = _machine(next(model.parameters()).device)
    print(f"{count_parameters(model.config):,} parameters; {len(data.train.tokens):,} training tokens in "
          f"{len(data.train):,} blocks; {len(data.val.tokens):,} validation tokens", flush=True)
    history = train(model, data, config, resume=resume)
    if config.export_dir:  # the numbers below are those of the shipped (exported, reloaded) weights
        save_pretrained(model, config.export_dir, tokenizer=tokenizer, dtype=config.save_dtype)
        model = load_pretrained(config.export_dir, dtype=torch.float32, device=next(model.parameters()).device)
    _record(args, command, config, model, tokenizer, data, history, machine, started)
    return 0


def _record(args: argparse.Namespace, command: str, config: TrainConfig, model: ChatGLMForCausalLM, tokenizer,
            data: TrainData, history: dict[str, Any], machine: dict[str, Any], started: float) -> None:
    """Evaluate the final model, print the summary and write ``training.json`` and the loss curve."""
    final = evaluate(model, data.val, 0, config.batch_size, autocast_dtype(config, next(model.parameters()).device))
    entropy = unigram_entropy(data.val.tokens)
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
    print(json.dumps({k: record[k] for k in ("wall_seconds", "final_train_loss", "final_val", "val_unigram_entropy",
                                             "val_loss_over_unigram_entropy", "samples")}, indent=1, ensure_ascii=False))
    if config.export_dir:
        export = Path(config.export_dir)
        (export / "training.json").write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        plot_history(history, export / "loss_curve.png", title=f"{Path(args.config).stem}: {command}")
        print(f"exported to {export}")


if __name__ == "__main__":
    raise SystemExit(main())
