"""Parameter-efficient fine-tuning: LoRA (in Hugging Face peft's file format) and P-Tuning v2 (as ChatGLM3).

Taught in lesson 10 (高效微调 Parameter-efficient fine-tuning). Both methods freeze the base
model and train a few new parameters.

**LoRA** replaces a frozen ``nn.Linear`` ``y = x Wᵀ + b`` by
``y = x Wᵀ + b + (alpha / r) · B(A(dropout(x)))`` with ``A`` ``[r, in]`` and ``B`` ``[out, r]``
(``LoRALinear``). ``B`` starts at zero, so the tuned model starts as the base model exactly.
``apply_lora`` wraps the target modules (ChatGLM3's official default: ``query_key_value``,
``r=8, alpha=32, dropout=0.1``), ``merge_lora`` folds ``(alpha / r) · B A`` into ``W`` and
gives back plain ``nn.Linear`` layers. ``save_lora`` / ``load_lora`` use peft's adapter
folder, so adapters move between this package and ``peft`` on the real ChatGLM3-6B:

- ``adapter_config.json``: ``{"peft_type": "LORA", "task_type": "CAUSAL_LM", "r", "lora_alpha",
  "lora_dropout", "target_modules", "bias": "none", ...}``;
- ``adapter_model.safetensors``: ``base_model.model.<module path>.lora_A.weight`` ``[r, in]``
  and ``.lora_B.weight`` ``[out, r]`` (peft's keys without the adapter name ``default``).

**P-Tuning v2** lives in the model (``ChatGLMConfig.pre_seq_len``, ``transformer.prefix_encoder``,
see ``glm3_teach.model``): learned keys and values in front of every layer's KV cache.
``apply_ptuning`` adds a prefix to a loaded base model; ``save_ptuning`` writes only the
``transformer.prefix_encoder.*`` tensors (ChatGLM3's P-Tuning checkpoints hold nothing else)
with the config; ``load_ptuning`` puts them onto a base model.

``load_adapter`` loads the base model an adapter folder records, then the adapter. Saves are
crash-safe like checkpoints (``glm3_teach.checkpoint.publish_folder``): the folder is written
beside its target and swapped in by renames, so a complete adapter is under its name (or is
recovered as it by the next load) at every instant, a failed or killed save leaves the old one,
and a folder that is not an adapter (``checkpoint.adapter_kind``) is never replaced.

What it leaves out: peft's other methods and options (DoRA, rank/alpha patterns, LoRA on
embeddings or biases, ``modules_to_save``, several adapters at once), QLoRA, and peft's own
prefix-tuning format (ChatGLM3's P-Tuning v2 is the model's ``prefix_encoder``, not peft's).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from glm3_teach.checkpoint import (ADAPTER_BIN_NAME, ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, PREFIX_KEY,
                                   adapter_base_recorded, adapter_kind, check_replaceable, load_pretrained,
                                   publish_folder, recover_folder, staging_folder)
from glm3_teach.errors import read_json
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM, prefix_kv_size

PEFT_PREFIX = "base_model.model."               # peft's PeftModel -> LoraModel -> your model
PTUNING_WEIGHTS_NAME = "model.safetensors"
ADAPTER_FOLDER = "LoRA or P-Tuning adapter folder"
BLOCK_LINEARS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
# peft options that change the maths or the file; an adapter is refused unless each is at its default.
_PEFT_DEFAULTS: dict[str, Any] = {
    "bias": "none", "fan_in_fan_out": False, "use_dora": False, "lora_bias": False, "modules_to_save": None,
    "layers_to_transform": None, "layer_replication": None, "rank_pattern": {}, "alpha_pattern": {},
    "trainable_token_indices": None, "target_parameters": None, "use_qalora": False,
    "alora_invocation_tokens": None, "megatron_config": None,
}


class AdapterMismatchError(ValueError):
    """An adapter file does not fit the model it is loaded into."""


# --- LoRA ----------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update (peft's ``lora.Linear``, one adapter).

    ``x [..., in] -> [..., out]``: ``F.linear(x, weight, bias) + scaling * lora_B(lora_A(dropout(x)))``.
    ``weight``/``bias`` are the wrapped layer's own parameters (same names, so the base keys of
    the state dict do not change); ``lora_A.weight`` ``[r, in]`` starts like peft's (Kaiming
    uniform), ``lora_B.weight`` ``[out, r]`` at zero. ``scaling = lora_alpha / r``
    (``lora_alpha / sqrt(r)`` with ``use_rslora``).
    """

    def __init__(self, base: nn.Linear, r: int, lora_alpha: float, lora_dropout: float = 0.0,
                 use_rslora: bool = False):
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        factory = dict(device=base.weight.device, dtype=base.weight.dtype)
        self.lora_A = nn.Linear(self.in_features, r, bias=False, **factory)    # weight [r, in]
        self.lora_B = nn.Linear(r, self.out_features, bias=False, **factory)   # weight [out, r]
        self.lora_dropout = nn.Dropout(lora_dropout) if lora_dropout > 0 else nn.Identity()
        self.r, self.lora_alpha = r, lora_alpha
        self.scaling = lora_alpha / (math.sqrt(r) if use_rslora else r)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = F.linear(x, self.weight, self.bias)                          # [..., out]
        update = self.lora_B(self.lora_A(self.lora_dropout(x)))            # [..., in] -> [..., r] -> [..., out]
        return base + update * self.scaling

    def delta_weight(self) -> torch.Tensor:
        """``scaling * B @ A``, ``[out, in]``, computed in float64 (what merging adds to ``weight``)."""
        return self.scaling * (self.lora_B.weight.double() @ self.lora_A.weight.double())

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` whose weight is ``weight + delta_weight()`` (rounded once to its dtype)."""
        weight = self.weight
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None,
                           device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            linear.weight.copy_((weight.double() + self.delta_weight()).to(weight.dtype))
            if self.bias is not None:
                linear.bias.copy_(self.bias)
        return linear

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, lora_alpha={self.lora_alpha}"


def _matches(name: str, target_modules: str | Sequence[str]) -> bool:
    """peft's rule: a string is a regex the whole module path must match; a list matches a path
    equal to an entry or ending in ``"." + entry``."""
    if isinstance(target_modules, str):
        return re.fullmatch(target_modules, name) is not None
    return any(name == t or name.endswith("." + t) for t in target_modules)


def _check_target_modules(target_modules: Any) -> str | list[str]:
    if target_modules == "all-linear":
        raise ValueError("target_modules='all-linear' is a peft shortcut glm3_teach does not expand; "
                         f"name the Linears, e.g. {list(BLOCK_LINEARS)}")
    if isinstance(target_modules, str):
        return target_modules
    if (not isinstance(target_modules, (list, tuple, set)) or not target_modules
            or not all(isinstance(t, str) for t in target_modules)):
        raise ValueError(f"target_modules must be a non-empty list of module names such as ['query_key_value'] "
                         f"(or one regex string), got {target_modules!r}")
    return sorted(target_modules) if isinstance(target_modules, set) else list(target_modules)


def lora_targets(model: nn.Module, target_modules: str | Sequence[str]) -> list[str]:
    """Paths of the modules ``target_modules`` picks, checked to be ``nn.Linear`` (not yet wrapped)."""
    target_modules = _check_target_modules(target_modules)
    names = [name for name, _ in model.named_modules() if name and _matches(name, target_modules)]
    linears = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)})
    if not names:
        raise ValueError(f"target_modules {target_modules!r} match no module of this model; its Linear layers "
                         f"are named {linears}")
    for name in names:
        module = model.get_submodule(name)
        if isinstance(module, LoRALinear):
            raise ValueError(f"{name} already has LoRA; merge_lora(model) or start from a fresh model first")
        if not isinstance(module, nn.Linear):
            raise ValueError(f"target module {name} is a {type(module).__name__}; LoRA here wraps nn.Linear "
                             f"only (this model's Linear layers are named {linears})")
    return names


def apply_lora(model: nn.Module, r: int = 8, alpha: float = 32, dropout: float = 0.1,
               target_modules: str | Sequence[str] = ("query_key_value",), use_rslora: bool = False) -> int:
    """Freeze ``model`` and wrap each target ``nn.Linear`` in a ``LoRALinear``; return the trainable count.

    The defaults are ChatGLM3's official LoRA recipe (r 8, alpha 32, dropout 0.1 on
    ``query_key_value``): 1,949,696 trainable parameters on ChatGLM3-6B. The settings are kept
    in ``model.lora_config`` for ``save_lora``.
    """
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ValueError(f"LoRA rank r must be a positive int, got {r!r}")
    if not 0.0 <= dropout < 1.0 or not alpha > 0:
        raise ValueError(f"LoRA needs 0 <= dropout < 1 and alpha > 0, got dropout={dropout!r}, alpha={alpha!r}")
    names = lora_targets(model, target_modules)
    for param in model.parameters():
        param.requires_grad_(False)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        base = getattr(parent, child)
        setattr(parent, child, LoRALinear(base, r, alpha, dropout, use_rslora).train(base.training))
    model.lora_config = {"r": r, "lora_alpha": alpha, "lora_dropout": dropout, "use_rslora": use_rslora,
                         "target_modules": _check_target_modules(target_modules)}
    return trainable_parameters(model)


def lora_modules(model: nn.Module) -> dict[str, LoRALinear]:
    """``{module path: LoRALinear}`` of every LoRA layer in ``model``."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its weight and put plain ``nn.Linear`` layers back (in place).

    Afterwards the model has its base state-dict keys only (``save_pretrained`` writes a normal
    checkpoint) and gives the same outputs as before, up to one rounding of each weight.
    The merged weights are left frozen, as they were.
    """
    for name, module in lora_modules(model).items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        merged = module.merged()
        merged.requires_grad_(False)
        setattr(parent, child, merged)
    if hasattr(model, "lora_config"):
        del model.lora_config
    return model


def trainable_parameters(model: nn.Module) -> int:
    """How many parameter values will be trained (``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _linear_shapes(config: ChatGLMConfig) -> dict[str, tuple[int, int]]:
    """``{name: (in, out)}`` of the four Linear layers of one GLM block."""
    hidden, projection = config.hidden_size, config.num_attention_heads * config.kv_channels
    qkv_out = projection + 2 * config.num_kv_groups * config.kv_channels
    return {"query_key_value": (hidden, qkv_out), "dense": (projection, hidden),
            "dense_h_to_4h": (hidden, 2 * config.ffn_hidden_size), "dense_4h_to_h": (config.ffn_hidden_size, hidden)}


def lora_parameter_count(config: ChatGLMConfig, r: int = 8,
                         target_modules: Sequence[str] = ("query_key_value",)) -> int:
    """LoRA's trainable count on block Linears, computed: ``num_layers * sum r * (in + out)``.

    ChatGLM3-6B, r 8 on ``query_key_value``: 28 * 8 * (4096 + 4608) = 1,949,696.
    """
    shapes = _linear_shapes(config)
    unknown = [t for t in target_modules if t not in shapes]
    if unknown:
        raise ValueError(f"lora_parameter_count knows the block Linears {list(shapes)}, not {unknown}")
    return config.num_layers * sum(r * sum(shapes[t]) for t in target_modules)


def _adapter_config(model: nn.Module, base_model_name_or_path: str | None) -> dict[str, Any]:
    """The fields peft writes for a ``LoraConfig`` that every peft version since 0.4 reads (newer
    fields take their defaults when absent; ``use_rslora``, peft 0.7+, is written only when on)."""
    settings = model.lora_config
    config = {"base_model_name_or_path": base_model_name_or_path, "bias": "none", "fan_in_fan_out": False,
              "inference_mode": True, "init_lora_weights": True, "layers_pattern": None,
              "layers_to_transform": None, "lora_alpha": settings["lora_alpha"],
              "lora_dropout": settings["lora_dropout"], "modules_to_save": None, "peft_type": "LORA",
              "r": settings["r"], "revision": None, "target_modules": settings["target_modules"],
              "task_type": "CAUSAL_LM"}
    return {**config, "use_rslora": True} if settings["use_rslora"] else config


def is_adapter_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a LoRA or P-Tuning v2 adapter (``checkpoint.adapter_kind``): what a save may replace."""
    return adapter_kind(path) is not None


def _write_folder(path: str | Path, write: Any, tokenizer: Any = None) -> Path:
    """Write an adapter folder crash-safely: ``write(staging)`` (plus the tokenizer) fills a staging
    folder beside ``path``, which ``publish_folder`` swaps in. Refuses (``FileExistsError``,
    nothing written) a ``path`` that is neither absent, empty nor an adapter folder."""
    target = check_replaceable(Path(path), is_adapter_folder, ADAPTER_FOLDER)
    with staging_folder(target) as staging:   # removed, the old adapter untouched, if writing fails
        write(staging)
        if tokenizer is not None:
            tokenizer.save(staging)
        check_replaceable(target, is_adapter_folder, ADAPTER_FOLDER)  # again: it may have changed meanwhile
        publish_folder(staging, target, keep_other_files=True)
    return target


def _stored(tensor: torch.Tensor, dtype: torch.dtype | str | None) -> torch.Tensor:
    dtype = getattr(torch, dtype.removeprefix("torch.")) if isinstance(dtype, str) else dtype
    return tensor.detach().to(device="cpu", dtype=dtype or tensor.dtype).contiguous()


def save_lora(model: nn.Module, path: str | Path, base_model_name_or_path: str | None = None,
              dtype: torch.dtype | str | None = None, tokenizer: Any = None) -> Path:
    """Write the LoRA weights and settings of ``model`` as a peft adapter folder (replacing one there).

    Files: ``adapter_config.json`` and ``adapter_model.safetensors`` (keys
    ``base_model.model.<path>.lora_A.weight`` / ``.lora_B.weight``, in ``dtype``, default as
    trained), and the tokenizer's files when given. Other files already in the folder (a
    README) are kept; a folder that is not an adapter is refused with ``FileExistsError``.
    ``base_model_name_or_path`` is written as given (peft reads a relative path from the
    current folder). Returns the folder.
    """
    modules = lora_modules(model)
    if not modules or not hasattr(model, "lora_config"):
        raise ValueError("this model has no LoRA layers to save; call apply_lora(model, ...) first")
    tensors = {f"{PEFT_PREFIX}{name}.{part}.weight": _stored(getattr(module, part).weight, dtype)
               for name, module in modules.items() for part in ("lora_A", "lora_B")}
    config_text = json.dumps(_adapter_config(model, base_model_name_or_path), indent=2, sort_keys=True) + "\n"

    def write(folder: Path) -> None:
        (folder / ADAPTER_CONFIG_NAME).write_text(config_text, encoding="utf-8")
        save_file(tensors, str(folder / ADAPTER_WEIGHTS_NAME), metadata={"format": "pt"})

    return _write_folder(path, write, tokenizer)


def read_adapter_config(path: str | Path) -> dict[str, Any]:
    """Read and check a peft ``adapter_config.json`` (a file or its folder): a LoRA config whose
    options glm3_teach implements. Raises ``ValueError`` naming the first thing it cannot honour."""
    path = recover_folder(Path(path))  # a folder a killed save left mid-swap is finished first
    file = path / ADAPTER_CONFIG_NAME if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no {ADAPTER_CONFIG_NAME} at {path}; pass a peft adapter folder")
    config = read_json(file, fix="save the adapter again")
    if not isinstance(config, dict):
        raise ValueError(f"{file} holds {type(config).__name__}, not a peft config object {{\"peft_type\": ...}}")
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{file} is a peft config of type {config.get('peft_type')!r}, not 'LORA'; load_lora reads "
                         f"LoRA adapters only (a P-Tuning v2 checkpoint loads with load_ptuning)")
    for key, default in _PEFT_DEFAULTS.items():
        value = config.get(key, default)
        if value != default and (value or default):  # an empty value counts as the empty default
            raise ValueError(f"{file} sets {key}={config[key]!r}; glm3_teach implements LoRA with {key}={default!r} "
                             f"only")
    missing = [k for k in ("r", "lora_alpha", "target_modules") if config.get(k) is None]
    if missing:
        raise ValueError(f"{file} lacks {missing}; is it a LoRA adapter_config.json written by peft or save_lora?")
    return config


def _read_adapter_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / ADAPTER_WEIGHTS_NAME).is_file():
        return load_file(str(folder / ADAPTER_WEIGHTS_NAME))
    if (folder / ADAPTER_BIN_NAME).is_file():
        return torch.load(folder / ADAPTER_BIN_NAME, map_location="cpu", weights_only=True)
    raise FileNotFoundError(f"no {ADAPTER_WEIGHTS_NAME} (or {ADAPTER_BIN_NAME}) in {folder}")


def load_lora(model: nn.Module, path: str | Path) -> nn.Module:
    """Add the peft LoRA adapter in folder ``path`` to ``model`` (a base model, no LoRA yet); returns it.

    Checks before changing anything: the config is LoRA with supported options, its target
    modules exist in ``model``, the file has exactly one ``lora_A``/``lora_B`` pair per target
    and every shape fits. The model is then frozen except the LoRA weights (to train on).
    """
    folder = recover_folder(Path(path))
    config = read_adapter_config(folder)
    names = lora_targets(model, config["target_modules"])
    tensors = {k.removeprefix(PEFT_PREFIX): v for k, v in _read_adapter_weights(folder).items()}
    tensors = {re.sub(r"\.(lora_[AB])\.default\.weight$", r".\1.weight", k): v for k, v in tensors.items()}
    r = config["r"]
    expected = {}
    for name in names:
        base = model.get_submodule(name)
        expected[f"{name}.lora_A.weight"] = (r, base.in_features)
        expected[f"{name}.lora_B.weight"] = (base.out_features, r)
    _check_adapter_keys(folder, expected, {k: tuple(v.shape) for k, v in tensors.items()})
    apply_lora(model, r, config["lora_alpha"], config.get("lora_dropout") or 0.0, config["target_modules"],
               bool(config.get("use_rslora", False)))
    with torch.no_grad():
        for name, module in lora_modules(model).items():
            module.lora_A.weight.copy_(tensors[f"{name}.lora_A.weight"])
            module.lora_B.weight.copy_(tensors[f"{name}.lora_B.weight"])
    return model


def _check_adapter_keys(folder: Path, expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> None:
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    misshaped = [f"{k} is {list(found[k])} in the adapter, {list(v)} for this model"
                 for k, v in expected.items() if k in found and found[k] != v]
    problems = [f"{len(v)} {kind}: {', '.join(v[:4])}" + (f" ... and {len(v) - 4} more" if len(v) > 4 else "")
                for kind, v in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if v]
    if problems:
        raise AdapterMismatchError(f"the adapter at {folder} does not fit this model:\n  " + "\n  ".join(problems)
                                   + "\nWas it trained on another base model (sizes, num_layers, target_modules)?")


# --- P-Tuning v2 ---------------------------------------------------------------------------------


def ptuning_parameter_count(config: ChatGLMConfig, pre_seq_len: int | None = None,
                            prefix_projection: bool | None = None) -> int:
    """P-Tuning v2's trainable count, computed: ``pre_seq_len * kv_size`` (+ the projection MLP).

    ``kv_size = num_layers * kv_channels * num_kv_groups * 2``; ChatGLM3-6B with 128 virtual
    tokens: 128 * 28 * 128 * 2 * 2 = 1,835,008. With ``prefix_projection`` add
    ``Linear(kv_size, hidden) + Linear(hidden, kv_size)`` with their biases.
    """
    n = config.pre_seq_len if pre_seq_len is None else pre_seq_len
    projection = config.prefix_projection if prefix_projection is None else prefix_projection
    kv_size, hidden = prefix_kv_size(config), config.hidden_size
    mlp = (kv_size * hidden + hidden) + (hidden * kv_size + kv_size) if projection else 0
    return n * kv_size + mlp


def apply_ptuning(model: ChatGLMForCausalLM, pre_seq_len: int = 128, prefix_projection: bool = False) -> int:
    """Give a base model a fresh P-Tuning v2 prefix (in place) and freeze the rest; return the trainable count.

    Sets ``model.config.pre_seq_len`` / ``prefix_projection`` (so ``save_pretrained`` records
    them) and adds ``transformer.prefix_encoder`` with PyTorch's default initialisation, as
    ChatGLM3 builds it.
    """
    if model.config.pre_seq_len is not None:
        raise ValueError(f"this model already has a P-Tuning prefix (pre_seq_len={model.config.pre_seq_len})")
    if lora_modules(model):
        raise ValueError("this model has LoRA layers; P-Tuning v2 starts from a base model (merge_lora first)")
    dataclasses.replace(model.config, pre_seq_len=pre_seq_len, prefix_projection=prefix_projection)  # validates
    model.config.pre_seq_len, model.config.prefix_projection = pre_seq_len, prefix_projection
    model.transformer.add_prefix_encoder(model.config)
    return trainable_parameters(model)


def save_ptuning(model: ChatGLMForCausalLM, path: str | Path, dtype: torch.dtype | str | None = None,
                 tokenizer: Any = None) -> Path:
    """Write a P-Tuning v2 checkpoint: ``config.json`` (with ``pre_seq_len``) and ``model.safetensors``
    holding only the ``transformer.prefix_encoder.*`` tensors (in ``dtype``, default as trained),
    and the tokenizer's files when given. Other files in the folder are kept; a folder that is not an
    adapter (a whole model, a folder of yours) is refused with ``FileExistsError``. Returns the folder."""
    if model.config.pre_seq_len is None:
        raise ValueError("this model has no P-Tuning prefix to save; call apply_ptuning(model, ...) first")
    tensors = {k: _stored(v, dtype) for k, v in model.state_dict().items() if k.startswith(PREFIX_KEY)}
    stored = str(next(iter(tensors.values())).dtype).removeprefix("torch.")
    config = dataclasses.replace(model.config, torch_dtype=stored)

    def write(folder: Path) -> None:
        config.to_json(folder / "config.json")
        save_file(tensors, str(folder / PTUNING_WEIGHTS_NAME), metadata={"format": "pt"})

    return _write_folder(path, write, tokenizer)


def export(model: ChatGLMForCausalLM, path: str | Path, tokenizer: Any = None, dtype: torch.dtype | str | None = None,
           method: str = "lora", base_model_name_or_path: str | None = None) -> Path:
    """The SFT command's export for ``method`` ``"lora"`` (``save_lora``) or ``"ptuning"`` (``save_ptuning``)."""
    if method == "lora":
        return save_lora(model, path, base_model_name_or_path, dtype, tokenizer)
    if method == "ptuning":
        return save_ptuning(model, path, dtype, tokenizer)
    raise ValueError(f"peft.export saves 'lora' or 'ptuning' adapters, got method={method!r}")


def _read_prefix_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / PTUNING_WEIGHTS_NAME).is_file():
        state = load_file(str(folder / PTUNING_WEIGHTS_NAME))
    elif (folder / "pytorch_model.bin").is_file():  # ChatGLM's own P-Tuning scripts write this
        state = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"no {PTUNING_WEIGHTS_NAME} or pytorch_model.bin in {folder}")
    prefix = {k.removeprefix(PREFIX_KEY): v for k, v in state.items() if k.startswith(PREFIX_KEY)}
    if not prefix:
        raise ValueError(f"{folder} holds no {PREFIX_KEY}* tensors; is it a P-Tuning v2 checkpoint?")
    return prefix


def load_ptuning(model: ChatGLMForCausalLM, path: str | Path) -> ChatGLMForCausalLM:
    """Put the P-Tuning v2 prefix saved in folder ``path`` onto ``model`` (a base model); returns it.

    ``pre_seq_len`` and ``prefix_projection`` come from the folder's ``config.json`` (else from
    the tensors). Raises ``AdapterMismatchError`` when the prefix was made for another
    ``pre_seq_len`` than a prefix the model already has, or for another model shape.
    """
    folder = recover_folder(Path(path))
    state = _read_prefix_weights(folder)
    if "embedding.weight" not in state:
        raise AdapterMismatchError(f"{folder} has no {PREFIX_KEY}embedding.weight; found {sorted(state)}")
    saved = ChatGLMConfig.from_json(folder) if (folder / "config.json").is_file() else None
    pre_seq_len = saved.pre_seq_len if saved is not None and saved.pre_seq_len else state["embedding.weight"].shape[0]
    projection = saved.prefix_projection if saved is not None else "trans.0.weight" in state
    current = model.config.pre_seq_len
    if current is not None and (current != pre_seq_len or model.config.prefix_projection != projection):
        raise AdapterMismatchError(f"the prefix at {folder} has pre_seq_len={pre_seq_len}, prefix_projection="
                                   f"{projection}; this model's has pre_seq_len={current}, prefix_projection="
                                   f"{model.config.prefix_projection}: load it onto a base model")
    fresh = dataclasses.replace(model.config, pre_seq_len=pre_seq_len, prefix_projection=projection)
    with torch.device("meta"):
        want = {k.removeprefix(PREFIX_KEY): tuple(v.shape)
                for k, v in ChatGLMForCausalLM(fresh).state_dict().items() if k.startswith(PREFIX_KEY)}
    _check_adapter_keys(folder, want, {k: tuple(v.shape) for k, v in state.items()})
    if current is None:
        apply_ptuning(model, pre_seq_len, projection)
    model.transformer.prefix_encoder.load_state_dict(state)
    return model


# --- an adapter with its base model ----------------------------------------------------------------


def adapter_base(path: str | Path) -> Path:
    """The base model folder the adapter in ``path`` records (``checkpoint.adapter_base_recorded``:
    peft's ``base_model_name_or_path``, else ``sft.init_from`` in the ``training.json`` beside it).

    A relative path is read from the current folder, as peft reads ``base_model_name_or_path``.
    Raises ``ValueError`` when nothing is recorded, ``FileNotFoundError`` when it does not exist.
    """
    folder = Path(path)
    recorded = adapter_base_recorded(folder)
    if recorded is None:
        raise ValueError(f"{folder} does not record its base model (base_model_name_or_path is empty and there is "
                         f"no training.json); name it with base=FOLDER (--base FOLDER on a command line)")
    base = Path(recorded).expanduser()
    if not base.exists():
        where = "" if base.is_absolute() else f" (relative paths are read from the current folder, {Path.cwd()})"
        raise FileNotFoundError(f"{folder} records the base model {recorded!r}, which does not exist{where}; "
                                f"run from the folder it was trained in, or name the base with base=FOLDER "
                                f"(--base FOLDER on a command line)")
    return base


def trained_seq_length(path: str | Path) -> int | None:
    """The context an adapter was trained with: P-Tuning's ``config.json``, else the ``model_config``
    of the ``training.json`` that ``glm3_teach.sft`` writes beside it; ``None`` if not recorded."""
    folder = Path(path)
    for file, keys in (("config.json", ("seq_length",)), ("training.json", ("model_config", "seq_length"))):
        try:
            value: Any = read_json(folder / file) if (folder / file).is_file() else None
        except (OSError, ValueError):
            continue
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def load_adapter(path: str | Path, base: str | Path | None = None, dtype: torch.dtype | str | None = None,
                 device: torch.device | str | None = None, merge: bool = False) -> ChatGLMForCausalLM:
    """The base model with the adapter in folder ``path`` (LoRA or P-Tuning v2) on it, in eval mode.

    ``base``: the base checkpoint folder (default ``adapter_base(path)``); ``dtype``/``device`` as
    for ``load_pretrained``; ``merge``: fold LoRA into the weights (plain Linears, faster to run).
    The context ``seq_length`` becomes the one the adapter was trained with when that is longer
    than the base's (``trained_seq_length``: fine-tuning on long dialogues raises it).
    """
    folder = recover_folder(Path(path))
    kind = adapter_kind(folder)
    if kind is None:
        raise ValueError(f"{folder} is not a {ADAPTER_FOLDER} ({ADAPTER_CONFIG_NAME} + {ADAPTER_WEIGHTS_NAME}, or a "
                         f"config.json with pre_seq_len + {PREFIX_KEY}* tensors); a whole model loads with "
                         f"load_pretrained")
    model = load_pretrained(adapter_base(folder) if base is None else base, dtype=dtype, device=device)
    if kind == "lora":
        load_lora(model, folder)
        if merge:
            merge_lora(model)
    else:
        load_ptuning(model, folder)
    trained = trained_seq_length(folder)
    if trained is not None and trained > model.config.seq_length:
        model.config.seq_length = trained       # RoPE tables are built for any length
    return model.eval()
