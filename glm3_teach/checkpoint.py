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

``save_pretrained`` writes into a hidden staging folder beside the target and swaps it in
with ``publish_folder``, which is safe against a process killed at any instant:

1. the save is written into ``.NAME.tmp-*`` (never read; removed when stale);
2. complete, it is renamed ``.NAME.new-*``: from now on a complete new copy has a known name;
3. the old ``NAME`` is renamed ``.NAME.old-*``, then ``.NAME.new-*`` becomes ``NAME``;
4. files of the old folder that a save does not write (notes, a dataset) move into the new
   one, and the old folder is deleted.

After a kill between two renames, ``recover_folder`` (run by every load and every save)
finishes the swap from the newest complete copy, so ``NAME`` always resolves to a complete
checkpoint. Publishes and recoveries in one folder take turns under a file lock. A save
never replaces a folder that is not a checkpoint (``is_model_checkpoint``: a ChatGLM
``config.json`` beside weights); it refuses with ``FileExistsError`` and writes nothing.
``glm3_teach.peft`` publishes its adapter folders the same way.

An adapter folder (lesson 10) is not a whole model: ``adapter_kind`` recognises peft's LoRA
folder and the P-Tuning v2 prefix-only folder, and ``load_pretrained`` given one says to load
it onto its base model with ``glm3_teach.peft`` instead.

What it leaves out: writing sharded checkpoints, and reading any layout but the four above.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pickle
import re
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from glm3_teach.device import as_device
from glm3_teach.errors import read_json
from glm3_teach.model import ChatGLMConfig, ChatGLMForCausalLM
from glm3_teach.quant import build_quantized_structure, quantized_layers

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; publishes in one folder must not overlap
    fcntl = None

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
BIN_NAME = "pytorch_model.bin"
BIN_INDEX_NAME = "pytorch_model.bin.index.json"
CONFIG_NAME = "config.json"
WEIGHT_NAMES = (SAFETENSORS_NAME, SAFETENSORS_INDEX_NAME, BIN_INDEX_NAME, BIN_NAME)
# peft's adapter folder (glm3_teach.peft, lesson 10) and the key prefix of a P-Tuning v2 prefix.
ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAME = "adapter_model.safetensors"
ADAPTER_BIN_NAME = "adapter_model.bin"           # older peft; read with weights_only=True
PREFIX_KEY = "transformer.prefix_encoder."
# Files a save writes and a later save replaces (model checkpoints, glm3_teach.train's training
# states, adapters); anything else in the folder (notes, a dataset) is carried over.
CHECKPOINT_FILES = {CONFIG_NAME, *WEIGHT_NAMES, "trainer_state.json", "optimizer.safetensors", "rng.safetensors",
                    ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME, ADAPTER_BIN_NAME}
SHARD_PATTERN = re.compile(r"(model|pytorch_model)-\d{5}-of-\d{5}\.(safetensors|bin)")
KILL_ENV_VAR = "GLM3_KILL_AT_RENAME"  # tests only: n = SIGKILL this process just before its n-th rename
_LIST_LIMIT = 8  # names shown per kind of problem before "... and N more"


class CheckpointMismatchError(ValueError):
    """The checkpoint's tensors do not fit the model its config describes."""


class AdapterFolderError(ValueError):
    """A whole model was asked for, but the folder holds a LoRA or P-Tuning adapter (lesson 10)."""


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
    """Every state-dict key of ``ChatGLMForCausalLM(config)`` and its shape (built on ``meta``, no memory).

    With ``config.quantization_bit`` the block Linears are ``QuantizedLinear``s (lesson 11).
    """
    with torch.device("meta"):
        model = build_quantized_structure(ChatGLMForCausalLM(config))
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
    index = read_json(index_path, fix="download or save the checkpoint again")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ValueError(f"{index_path} has no 'weight_map' {{key: shard file}}; is it a Hugging Face index file?")
    shards: dict[str, list[str]] = {}
    for key, file in weight_map.items():
        _check_shard_name(index_path, key, file)
        shards.setdefault(file, []).append(key)
    metadata = index.get("metadata")
    return dict(sorted(shards.items())), metadata.get("total_size") if isinstance(metadata, dict) else None


def _check_shard_name(index_path: Path, key: Any, file: Any) -> None:
    """A shard is named by a relative path inside the checkpoint folder: never absolute, never ``..``."""
    if not isinstance(file, str) or not file:
        raise ValueError(f"{index_path}: weight_map[{key!r}] must be the name of a shard file, got {file!r}")
    normal = os.path.normpath(file)
    if os.path.isabs(file) or Path(file).drive or normal == ".." or normal.startswith(".." + os.sep):
        raise ValueError(f"{index_path} names the shard {file!r} for {key!r}, which lies outside the checkpoint "
                         f"folder; refusing to read it (an index may only name files inside its own folder)")


def _safetensors_shapes(file: Path) -> dict[str, torch.Size]:
    try:
        with safe_open(str(file), framework="pt") as f:
            return {key: torch.Size(f.get_slice(key).get_shape()) for key in f.keys()}
    except SafetensorError as error:
        raise _unreadable(file, error) from None


def _unreadable(file: Path, error: Exception) -> ValueError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ValueError(f"{file} cannot be read ({first_line}): it is truncated or corrupt; "
                      f"save or download it again")


def inspect_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read a checkpoint folder's config and weight listing, and check its keys against the model.

    Loads no weights: the keys come from the index file (or a safetensors header), the
    expected keys and shapes from the model built on the ``meta`` device.
    Raises ``CheckpointMismatchError`` when they differ.
    """
    path = recover_folder(Path(path))
    if path.is_file():
        raise NotADirectoryError(f"{path} is a file; a checkpoint is the folder holding {CONFIG_NAME} and the weights")
    kind = adapter_kind(path)
    if kind is not None:
        raise _adapter_folder_error(path, kind)
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
    asked = (config.torch_dtype or "float32") if dtype is None else dtype
    resolved = getattr(torch, asked.removeprefix("torch."), None) if isinstance(asked, str) else asked
    if not isinstance(resolved, torch.dtype) or not resolved.is_floating_point:
        source = " (the torch_dtype in config.json)" if dtype is None else ""
        raise ValueError(f"dtype must be a floating torch dtype such as torch.bfloat16 or 'float32', "
                         f"got {asked!r}{source}")
    return resolved


def _read_shard(file: Path) -> dict[str, torch.Tensor]:
    """One weight file's tensors; safetensors, or a pickle read weights-only (tensors, never code)."""
    try:
        state = (load_file(str(file), device="cpu") if file.suffix == ".safetensors"
                 else torch.load(file, map_location="cpu", weights_only=True))
    except pickle.UnpicklingError as error:
        if "weights only load failed" not in str(error).lower():
            raise _unreadable(file, error) from None
        raise ValueError(f"{file} holds Python objects besides tensors, which safe (weights-only) loading "
                         f"refuses to unpickle. The file may be malicious: do not load it with "
                         f"weights_only=False; get a safetensors copy from a source you trust") from None
    except (SafetensorError, RuntimeError, EOFError) as error:
        raise _unreadable(file, error) from None
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ValueError(f"{file} does not hold a state dict {{key: tensor}}; is it a checkpoint shard?")
    return state


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
        model = build_quantized_structure(ChatGLMForCausalLM(info.config))  # quantized layers as config.json says
    model = model.to(dtype=_resolve_dtype(dtype, info.config)).to_empty(device=as_device(device or "cpu"))
    targets = model.state_dict()  # shares storage with the parameters and buffers
    seen: dict[str, torch.Size] = {}
    with torch.no_grad():
        for file in info.shards:
            state = _read_shard(path / file)
            for key, tensor in state.items():
                seen[key] = tensor.shape
                if key in targets and tensor.shape == targets[key].shape:
                    _check_integer_kind(path, key, tensor, targets[key], info.config)
                    targets[key].copy_(tensor)  # converts dtype, moves to the device
            del state  # free this shard before reading the next
    check_keys({key: t.shape for key, t in targets.items()}, seen, path)
    return model.eval()


def _check_integer_kind(path: Path, key: str, tensor: torch.Tensor, target: torch.Tensor,
                        config: ChatGLMConfig) -> None:
    """Quantized (integer) tensors go only into quantized slots: copying across would silently corrupt them."""
    if tensor.is_floating_point() != target.is_floating_point():
        raise CheckpointMismatchError(
            f"the checkpoint at {path} stores {key} as {tensor.dtype} but its config.json "
            f"(quantization_bit={config.quantization_bit}) makes it {target.dtype}: the config does not match the "
            f"tensors; fix quantization_bit in config.json or save the model again with save_pretrained")


def _check_quantization_recorded(model: ChatGLMForCausalLM) -> None:
    """A model's config must say whether (and how) its block Linears are quantized."""
    layers = quantized_layers(model)
    config = model.config
    first = next(iter(layers.values()), None)
    recorded = (config.quantization_bit, config.quantization_scheme, config.quantization_group_size)
    actual = (first.bits, first.scheme, first.group_size) if first else (0, config.quantization_scheme, None)
    if recorded != actual:
        raise ValueError(f"model.config records quantization {recorded} but the model's layers are {actual}; "
                         f"quantize with glm3_teach.quant.quantize, which records it")


def _is_checkpoint_file(name: str) -> bool:
    return name in CHECKPOINT_FILES or SHARD_PATTERN.fullmatch(name) is not None


def is_model_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a model checkpoint: a ``config.json`` of ``model_type`` chatglm beside weights.

    What only a checkpoint has: a folder that merely holds some ``config.json`` (an app's, a
    dataset's) is not one, so no save ever replaces it.
    """
    path = Path(path)
    if not (path / CONFIG_NAME).is_file() or not any((path / name).is_file() for name in WEIGHT_NAMES):
        return False
    try:
        config = read_json(path / CONFIG_NAME)
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and config.get("model_type") == "chatglm"


def _weight_keys(path: Path) -> list[str] | None:
    """The tensor names of a checkpoint folder's weights, without reading tensors; None if unknown."""
    try:
        if (path / SAFETENSORS_NAME).is_file():
            with safe_open(str(path / SAFETENSORS_NAME), framework="pt") as f:
                return list(f.keys())
        for index in (SAFETENSORS_INDEX_NAME, BIN_INDEX_NAME):
            if (path / index).is_file():
                return [key for keys in _read_index(path / index)[0].values() for key in keys]
        if (path / BIN_NAME).is_file():  # memory-mapped: the keys without reading the tensors
            return list(torch.load(path / BIN_NAME, map_location="cpu", weights_only=True, mmap=True))
    except (OSError, ValueError, RuntimeError, SafetensorError, pickle.UnpicklingError, EOFError):
        return None
    return None


def adapter_kind(path: str | Path) -> str | None:
    """``"lora"``, ``"ptuning"`` or ``None``: whether ``path`` is an adapter folder of lesson 10.

    - ``"lora"``: peft's folder, an ``adapter_config.json`` with ``peft_type`` LORA beside
      ``adapter_model.safetensors`` (or ``.bin``), as ``glm3_teach.peft.save_lora`` writes;
    - ``"ptuning"``: a ChatGLM ``config.json`` with ``pre_seq_len`` beside weights that hold only
      ``transformer.prefix_encoder.*`` tensors (``glm3_teach.peft.save_ptuning``, ChatGLM3's
      P-Tuning scripts). A whole model with a prefix has every other weight too: not an adapter.
    """
    path = Path(path)
    if (path / ADAPTER_CONFIG_NAME).is_file():
        if not any((path / name).is_file() for name in (ADAPTER_WEIGHTS_NAME, ADAPTER_BIN_NAME)):
            return None
        try:
            config = read_json(path / ADAPTER_CONFIG_NAME)
        except (OSError, ValueError):
            return None
        return "lora" if isinstance(config, dict) and config.get("peft_type") == "LORA" else None
    if not is_model_checkpoint(path) or not read_json(path / CONFIG_NAME).get("pre_seq_len"):
        return None
    keys = _weight_keys(path)
    return "ptuning" if keys and all(key.startswith(PREFIX_KEY) for key in keys) else None


def adapter_base_recorded(path: Path) -> str | None:
    """The base model an adapter folder names: peft's ``base_model_name_or_path``, else the
    ``sft.init_from`` of the ``training.json`` that ``glm3_teach.sft`` writes beside it."""
    for file, keys in ((ADAPTER_CONFIG_NAME, ("base_model_name_or_path",)), ("training.json", ("sft", "init_from"))):
        try:
            value: Any = read_json(path / file) if (path / file).is_file() else None
        except (OSError, ValueError):
            continue
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, str) and value:
            return value
    return None


def _adapter_folder_error(path: Path, kind: str) -> AdapterFolderError:
    base = adapter_base_recorded(path)
    if kind == "lora":
        what, loader = f"a LoRA adapter ({ADAPTER_CONFIG_NAME} + its adapter weights)", "load_lora"
    else:
        what, loader = f"a P-Tuning v2 adapter (only {PREFIX_KEY}* tensors beside its {CONFIG_NAME})", "load_ptuning"
    base_text = f"{base!r} (the base model it records)" if base else "the folder of the model it was trained on"
    return AdapterFolderError(
        f"{path} is {what}, not a whole model; load it onto its base model with "
        f"glm3_teach.peft.{loader}(load_pretrained(BASE), {str(path)!r}), BASE being {base_text}, "
        f"or do both with glm3_teach.peft.load_adapter({str(path)!r}, base=BASE)")


def check_replaceable(target: str | Path, recognise: Callable[[Path], bool] = is_model_checkpoint,
                      what: str = "checkpoint folder") -> Path:
    """Raise unless a save may write ``target``: absent, an empty folder, or a folder ``recognise``
    accepts, with a writable folder above it. Creates nothing; returns ``target`` as a ``Path``.

    Training calls it for its output folders before the first step, so a finished run is never lost.
    """
    target = recover_folder(Path(target))
    if target.exists() or target.is_symlink():
        if not target.is_dir() or (any(target.iterdir()) and not recognise(target)):
            raise FileExistsError(f"{target} exists and is not a {what}, so a save will not replace it (nothing "
                                  f"was written); save to a new or empty folder, or move that one away first")
    ancestor = target.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {target}: {ancestor} is not a folder you can write to; "
                              f"choose another path")
    return target


def make_readable(folder: Path) -> None:
    """Give a finished folder the usual permissions (rwxr-xr-x, files rw-r--r--).

    ``tempfile.mkdtemp`` makes private folders (rwx------); a checkpoint should be readable
    by the other users of a shared classroom machine, like any file ``open`` would write.
    """
    folder.chmod(0o755)
    for item in folder.rglob("*"):
        item.chmod(0o755 if item.is_dir() else 0o644)


# --- crash-safe publishing: staging folders, renames, recovery ---------------------------------

_renames_done = 0
_LIVE_STAGING: dict[str, int | None] = {}  # staging folders this process is writing -> the fd locking each


def _rename(source: Path, destination: Path) -> None:
    """``os.replace``; with ``GLM3_KILL_AT_RENAME=n`` the process kills itself just before its n-th rename."""
    global _renames_done
    _renames_done += 1
    if os.environ.get(KILL_ENV_VAR) == str(_renames_done):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
    os.replace(source, destination)


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``folder``: publishes and recoveries in it take turns."""
    if fcntl is None:
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock; a killed process releases it too


def _is_stale(staging: Path) -> bool:
    """A staging folder no live process is writing (its writer holds a shared lock on it)."""
    if str(staging) in _LIVE_STAGING or fcntl is None:
        return False
    try:
        fd = os.open(staging, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


@contextlib.contextmanager
def staging_folder(target: str | Path) -> Iterator[Path]:
    """A fresh hidden folder beside ``target`` to write a save into, for ``publish_folder``.

    It is removed on leaving the block unless it was published. While it exists it is locked,
    so the recovery of another process never mistakes it for the leftover of a killed save.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target.parent):
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        fd = os.open(staging, os.O_RDONLY) if fcntl is not None else None
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_SH)
        _LIVE_STAGING[str(staging)] = fd
    try:
        yield staging
    finally:
        fd = _LIVE_STAGING.pop(str(staging), None)
        if staging.exists():
            shutil.rmtree(staging)
        if fd is not None:
            os.close(fd)


def _siblings(target: Path, kind: str) -> list[Path]:
    """``.NAME.<kind>-*`` folders beside ``target``, oldest first (the names hold the time)."""
    return sorted(p for p in target.parent.glob(f".{glob.escape(target.name)}.{kind}-*") if p.is_dir())


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{time.time_ns():020d}-{os.getpid()}"


def _carry_over(old: Path, target: Path) -> None:
    """Move the files of ``old`` that a save does not write (notes, ...) into ``target``, unless it has them."""
    for item in sorted(old.iterdir()):
        if not _is_checkpoint_file(item.name) and not (target / item.name).exists():
            _rename(item, target / item.name)


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some systems cannot fsync a folder
        pass
    finally:
        os.close(fd)


def _sync(folder: Path) -> None:
    """Flush a folder's files to disk before it is renamed into place (a power cut then keeps them)."""
    for item in [*folder.rglob("*"), folder]:
        _fsync(item)


def _recover_locked(target: Path, keep: Path | None = None) -> None:
    """Roll an interrupted publish of ``target`` forward (the lock on its folder is held)."""
    news, olds = _siblings(target, "new"), _siblings(target, "old")
    if news:  # a complete copy that did not reach its name: finish its swap
        if target.exists():
            aside = _sibling(target, "old")
            _rename(target, aside)
            olds.append(aside)
        _rename(news[-1], target)
        for older in news[:-1]:
            shutil.rmtree(older)
    elif olds and not target.exists():
        _rename(olds.pop(), target)
    for old in reversed(olds):
        _carry_over(old, target)
        shutil.rmtree(old)
    for staging in _siblings(target, "tmp"):
        if staging != keep and _is_stale(staging):
            shutil.rmtree(staging)


def recover_folder(target: str | Path) -> Path:
    """Finish a save of ``target`` that a killed process left between two renames; returns ``target``.

    The newest complete copy (``.NAME.new-*``, else ``.NAME.old-*``) becomes ``NAME``, files
    of replaced folders are carried over, and staging folders of dead processes are removed.
    Does nothing (and takes no lock) when no such folder exists. Every load and save calls it.
    """
    target = Path(target)
    if not target.parent.is_dir() or not any(target.parent.glob(f".{glob.escape(target.name)}.*-*")):
        return target
    with _locked(target.parent):
        _recover_locked(target)
    return target


def publish_folder(staging: Path, target: Path, keep_other_files: bool = False) -> None:
    """Swap the finished ``staging`` folder into ``target`` by renames, crash-safe (see the module
    docstring): at every instant a complete folder is ``target`` or is recovered as it.
    Used for checkpoints and training states alike.

    ``keep_other_files``: carry over files of the old folder that are not weights, indexes or
    config (notes, logs, a tokenizer the new save did not write).
    """
    staging, target = Path(staging), Path(target)
    make_readable(staging)
    _sync(staging)
    with _locked(target.parent):
        _recover_locked(target, keep=staging)
        new = _sibling(target, "new")
        _rename(staging, new)  # from here on the complete new copy has a name recovery knows
        old = _sibling(target, "old") if target.exists() else None
        if old is not None:
            _rename(target, old)
        _rename(new, target)
        if old is not None:
            if keep_other_files:
                _carry_over(old, target)
            shutil.rmtree(old)
        _fsync(target.parent)  # the renames themselves reach the disk


def save_pretrained(model: ChatGLMForCausalLM, path: str | Path, tokenizer: Any = None,
                    dtype: torch.dtype | str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (plus the tokenizer, if given) to the folder ``path``.

    ``dtype``: store the floating tensors in this dtype (default: as they are in the model);
    ``config.json`` records it as ``torch_dtype``. ``tokenizer``: anything with a
    ``save(folder)`` method; it writes its files into the checkpoint folder. An existing
    checkpoint at ``path`` is replaced (its other files, such as notes, are kept); a folder that
    is not a checkpoint (``is_model_checkpoint``) is refused with ``FileExistsError``, untouched.
    Returns the folder.
    """
    target = check_replaceable(Path(path))
    _check_quantization_recorded(model)
    with staging_folder(target) as staging:
        state = model.state_dict()  # quantized layers: their int8 tensors are written as they are
        store_dtype = _resolve_dtype(dtype, model.config) if dtype is not None else next(iter(state.values())).dtype
        tensors = {key: (t.to(store_dtype) if t.is_floating_point() else t).detach().cpu().contiguous()
                   for key, t in state.items()}
        config = dataclasses.replace(model.config, torch_dtype=str(store_dtype).removeprefix("torch."))
        config.to_json(staging / CONFIG_NAME)
        save_file(tensors, str(staging / SAFETENSORS_NAME), metadata={"format": "pt"})
        del tensors
        if tokenizer is not None:
            tokenizer.save(staging)
        check_replaceable(target)  # again: the folder may have changed while the weights were written
        publish_folder(staging, target, keep_other_files=True)
    return target
