"""Every setting of a training run: ``TrainConfig``, checked when made, read from TOML or JSON.

Taught in lesson 06 (预训练 Pretraining), whose runs and the shipped recipe
``configs/base.toml`` are ``TrainConfig`` values; lesson 08's SFT configs add an ``[sft]``
table on top. ``TrainConfig.from_file`` reads a ``.toml`` (``tomllib``; ``tomli`` on Python
3.10) or ``.json`` file; unknown keys, wrong types and impossible values raise a
``ValueError`` that names the key and the fix, before any work is done.
``glm3_teach.train`` re-exports everything here.

What it leaves out: command-line overrides (``glm3_teach.train``'s ``--max-steps``,
``--run-dir`` and ``--export-dir`` build a changed copy with ``dataclasses.replace``) and
environment variables for settings.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from glm3_teach.device import as_device
from glm3_teach.errors import check_field_types, read_json
from glm3_teach.model import ChatGLMConfig

try:
    import tomllib
except ImportError:  # Python 3.10: the same parser, packaged as tomli
    import tomli as tomllib

# Keys that may change between a run and its resumption: where things go and how much is shown.
RESUMABLE_KEYS = {"run_dir", "export_dir", "progress", "live_plot", "stop_after_step", "checkpoint_every",
                  "log_every", "device", "num_threads", "samples_prompts"}


@dataclass
class TrainConfig:
    """Every setting of a training run. TOML/JSON files use these names; ``[model]`` holds model sizes."""

    model: dict[str, Any] = field(default_factory=dict)  # ChatGLMConfig fields (padded_vocab_size etc.)
    init_from: str | None = None     # an exported model to continue from (e.g. a longer context); None = fresh
    corpus: str | None = None        # a UTF-8 text file of your own; None = the course corpus
    lang: str | None = None          # "zh", "en" or None (both) for the course corpus
    max_documents: int | None = None  # use only the first N training documents (quick runs); None = all
    block_size: int = 256            # tokens the model reads per block (seq_len)
    batch_size: int = 8              # blocks per micro-batch, per process under torchrun (as in PyTorch DDP)
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

