"""Saving and loading ChatGLM3 checkpoints in the Hugging Face layout.

Taught in lesson 05 (组装模型 The whole model). A checkpoint is a folder:

- ``config.json``: ``ChatGLMConfig.to_json()`` (the real chatglm3-6b one loads as is);
- the weights, under the real key names (``transformer.embedding.word_embeddings.weight``, ...),
  in one of the layouts Hugging Face writes:

  - ``model.safetensors`` (what ``save_pretrained`` writes);
  - ``model-00001-of-0000N.safetensors`` ... with ``model.safetensors.index.json``;
  - ``pytorch_model-00001-of-00007.bin`` ... with ``pytorch_model.bin.index.json`` (the
    real chatglm3-6b: 7 fp16 shards);
  - a single ``pytorch_model.bin``.

An index is ``{"metadata": {"total_size": bytes}, "weight_map": {key: shard file}}``.

``load_pretrained`` builds the model on the ``meta`` device (no memory), allocates it once
in the wanted dtype on the wanted device, then reads the shards **one at a time**
(``torch.load(weights_only=True)`` or safetensors), copies each tensor in and frees the
shard, so the model is never held twice. Missing, unexpected or mis-shaped keys raise one
``CheckpointMismatchError`` that lists them.

``save_pretrained`` writes into a temporary folder beside the target and renames it into
place, so an interrupted save never leaves a half-written checkpoint.

What it leaves out: writing sharded checkpoints, and reading any layout but the four above.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
BIN_NAME = "pytorch_model.bin"
BIN_INDEX_NAME = "pytorch_model.bin.index.json"
CONFIG_NAME = "config.json"
_LIST_LIMIT = 8  # names shown per kind of problem before "... and N more"


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not fit the model its config describes."""


@dataclass
class CheckpointInfo:
    """What a checkpoint folder holds, read without loading any weights.

    ``shards`` maps each weight file (name inside ``path``) to the keys it holds, in load
    order; ``None`` when they cannot be known before loading (a single ``pytorch_model.bin``).
    ``total_size`` is the index's ``metadata.total_size`` in bytes (``None`` without one).
    ``missing_files`` lists shards named by the index that are not in the folder.
    """

    path: Path
    config: ChatGLMConfig
    format: str
    shards: dict[str, list[str] | None]
    total_size: int | None = None
    missing_files: list[str] = dataclasses.field(default_factory=list)


def expected_tensors(config: ChatGLMConfig) -> dict[str, torch.Size]:
    """Every state-dict key of ``ChatGLMForCausalLM(config)`` and its shape (built on ``meta``, no memory)."""
    with torch.device("meta"):
        model = ChatGLMForCausalLM(config)
    return {key: tensor.shape for key, tensor in model.state_dict().items()}


def _listing(kind: str, names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    more = f" ... and {len(names) - _LIST_LIMIT} more" if len(names) > _LIST_LIMIT else ""
    return f"{len(names)} {kind}: {shown}{more}"


def _mismatch(path: Path, missing: list[str], unexpected: list[str], misshaped: list[str]) -> CheckpointMismatchError:
    parts = [_listing(kind, sorted(names)) for kind, names in
             (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped tensors", misshaped)) if names]
    return CheckpointMismatchError(
        f"the checkpoint at {path} does not fit the model its config.json describes:\n  " + "\n  ".join(parts)
        + "\nCheck that config.json belongs to these weights (sizes, num_layers, multi_query_group_num).")


def check_keys(expected: dict[str, torch.Size], found: dict[str, Any], path: Path | str = "?") -> None:
    """Raise ``CheckpointMismatchError`` unless ``found`` has exactly the ``expected`` keys.

    ``found`` maps each checkpoint key to its shape, or to ``None`` when the shape is not
    known yet (an index names keys only); shapes are compared where known.
    """
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    misshaped = [f"{k} is {list(s)} in the checkpoint, {list(expected[k])} in the model"
                 for k, s in found.items() if s is not None and k in expected and tuple(s) != tuple(expected[k])]
    if missing or unexpected or misshaped:
        raise _mismatch(Path(path), missing, unexpected, misshaped)


def _read_index(index_path: Path) -> tuple[dict[str, list[str]], int | None]:
    """``{shard file: [keys]}`` (files in name order: 00001, 00002, ...) and ``total_size`` of an index file."""
    index = json.loads(index_path.read_text(encoding="utf-8"))
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path} has no 'weight_map' {{key: shard file}}; is it a Hugging Face index file?")
    shards: dict[str, list[str]] = {}
    for key, file in weight_map.items():
        shards.setdefault(file, []).append(key)
    return dict(sorted(shards.items())), index.get("metadata", {}).get("total_size")


def _safetensors_shapes(file: Path) -> dict[str, torch.Size]:
    with safe_open(str(file), framework="pt") as f:
        return {key: torch.Size(f.get_slice(key).get_shape()) for key in f.keys()}


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a checkpoint folder's config and weight listing, and check its keys against the model.

    Loads no weights: the keys come from the index file (or a safetensors header), the
    expected keys and shapes from the model built on the ``meta`` device.
    Raises ``CheckpointMismatchError`` when they differ.
    """
    path = Path(path)
    if not (path / CONFIG_NAME).is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint folder: it has no {CONFIG_NAME}")
    config = ChatGLMConfig.from_json(path / CONFIG_NAME)
    total_size = None
    if (path / SAFETENSORS_NAME).is_file():
        fmt, shards = "safetensors", {SAFETENSORS_NAME: None}
    elif (path / SAFETENSORS_INDEX_NAME).is_file():
        fmt, (shards, total_size) = "safetensors", _read_index(path / SAFETENSORS_INDEX_NAME)
    elif (path / BIN_INDEX_NAME).is_file():
        fmt, (shards, total_size) = "bin", _read_index(path / BIN_INDEX_NAME)
    elif (path / BIN_NAME).is_file():
        fmt, shards = "bin", {BIN_NAME: None}
    else:
        found = sorted(p.name for p in path.iterdir())
        raise FileNotFoundError(f"no weights in {path}: expected {SAFETENSORS_NAME}, {SAFETENSORS_INDEX_NAME}, "
                                f"{BIN_INDEX_NAME} or {BIN_NAME}; found {found}")
    missing_files = [file for file in shards if not (path / file).is_file()]
    found_keys: dict[str, Any] = {}
    for file, keys in shards.items():
        if file.endswith(".safetensors") and file not in missing_files:
            shapes = _safetensors_shapes(path / file)  # reads the header only
            shards[file] = list(shapes)
            found_keys.update(shapes)
        elif keys is not None:
            found_keys.update(dict.fromkeys(keys))
    if shards != {BIN_NAME: None}:  # a single .bin shows its keys only once loaded
        check_keys(expected_tensors(config), found_keys, path)
    return CheckpointInfo(path, config, fmt, shards, total_size, missing_files)


def _resolve_dtype(dtype: torch.dtype | str | None, config: ChatGLMConfig) -> torch.dtype:
    """``dtype`` as a torch dtype; ``None`` means the checkpoint's ``torch_dtype`` (else fp32)."""
    if dtype is None:
        dtype = config.torch_dtype or "float32"
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype such as torch.bfloat16 or 'float32', got {dtype!r}")
    return dtype


def _read_shard(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        return load_file(str(file), device="cpu")
    return torch.load(file, map_location="cpu", weights_only=True)


def load_pretrained(path: str | Path, dtype: torch.dtype | str | None = None,
                    device: torch.device | str | None = None) -> ChatGLMForCausalLM:
    """Load a checkpoint folder into a ``ChatGLMForCausalLM`` (in eval mode).

    ``dtype``: the model dtype (default: the ``torch_dtype`` in config.json, else fp32);
    tensors stored in another dtype are converted as they are copied in.
    ``device``: where the model lives (default CPU); weights go there shard by shard.
    """
    path = Path(path)
    info = inspect_checkpoint(path)
    if info.missing_files:
        raise FileNotFoundError(f"{len(info.missing_files)} weight files named by the index are missing from {path}: "
                                f"{info.missing_files[:_LIST_LIMIT]}; finish the download first")
    with torch.device("meta"):
        model = ChatGLMForCausalLM(info.config)
    model = model.to(dtype=_resolve_dtype(dtype, info.config)).to_empty(device=device or "cpu")
    targets = model.state_dict()  # shares storage with the parameters and buffers
    seen: dict[str, torch.Size] = {}
    with torch.no_grad():
        for file in info.shards:
            state = _read_shard(path / file)
            for key, tensor in state.items():
                seen[key] = tensor.shape
                if key in targets and tensor.shape == targets[key].shape:
                    targets[key].copy_(tensor)  # converts dtype, moves to the device
            del state  # free this shard before reading the next
    check_keys({key: t.shape for key, t in targets.items()}, seen, path)
    return model.eval()


def _is_checkpoint_file(name: str) -> bool:
    return name == CONFIG_NAME or name.endswith((".safetensors", ".bin", ".index.json"))


def make_readable(folder: Path) -> None:
    """Give a finished folder the usual permissions (rwxr-xr-x, files rw-r--r--).

    ``tempfile.mkdtemp`` makes private folders (rwx------); a checkpoint should be readable
    by the other users of a shared classroom machine, like any file ``open`` would write.
    """
    folder.chmod(0o755)
    for item in folder.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o644)


def publish_folder(staging: Path, target: Path, keep_other_files: bool = False) -> None:
    """Swap the finished ``staging`` folder into ``target`` by renames, so a reader sees the old
    folder or the new one, never half of one. Used for checkpoints and training states alike.

    ``keep_other_files``: carry over files of the old folder that are not weights, indexes or
    config (notes, logs, a tokenizer the new save did not write).
    """
    make_readable(staging)
    if not target.exists():
        os.replace(staging, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()  # a fresh unused name
    os.replace(target, old)
    os.replace(staging, target)
    if keep_other_files:
        for item in old.iterdir():
            if not _is_checkpoint_file(item.name) and not (target / item.name).exists():
                os.replace(item, target / item.name)
    shutil.rmtree(old)


def _publish(staging: Path, target: Path) -> None:
    """Publish a checkpoint folder, refusing to replace a folder that is not a checkpoint."""
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not (target / CONFIG_NAME).exists())):
        raise FileExistsError(f"{target} exists and is not a checkpoint folder; save to a new or empty folder")
    publish_folder(staging, target, keep_other_files=True)


def save_pretrained(model: ChatGLMForCausalLM, path: str | Path, tokenizer: Any = None,
                    dtype: torch.dtype | str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (plus the tokenizer, if given) to the folder ``path``.

    ``dtype``: store the floating tensors in this dtype (default: as they are in the model);
    ``config.json`` records it as ``torch_dtype``. ``tokenizer``: anything with a
    ``save(folder)`` method; it writes its files into the checkpoint folder. An existing
    checkpoint at ``path`` is replaced (its other files, such as notes, are kept).
    Returns the folder.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        state = model.state_dict()
        store_dtype = _resolve_dtype(dtype, model.config) if dtype is not None else next(iter(state.values())).dtype
        tensors = {key: (t.to(store_dtype) if t.is_floating_point() else t).detach().cpu().contiguous()
                   for key, t in state.items()}
        config = dataclasses.replace(model.config, torch_dtype=str(store_dtype).removeprefix("torch."))
        config.to_json(staging / CONFIG_NAME)
        save_file(tensors, str(staging / SAFETENSORS_NAME), metadata={"format": "pt"})
        del tensors
        if tokenizer is not None:
            tokenizer.save(staging)
        _publish(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return target
