"""Training checkpoints: everything an exact resume needs, written crash-safely.

Taught in lesson 06 (预训练 Pretraining), section 6 (checkpoints, interruption, exact
resume). ``save_training_state`` writes a folder through ``glm3_teach.checkpoint``'s
``staging_folder`` + ``publish_folder`` (a process killed at any instant leaves a complete
checkpoint) holding the model (fp32), the AdamW moments, every RNG state (torch, CUDA, numpy,
python), the scheduler, the step, the data position and the config, in safetensors + JSON;
``load_training_state`` restores all of it, so a resumed run repeats the uninterrupted one's
losses bit for bit. ``glm3_teach.train`` re-exports these names.

What it leaves out: keeping several checkpoints (each save replaces the last), sharded
optimizer states (FSDP's, lesson 06's data-parallel section) and per-rank RNG states (under
torchrun only rank 0 saves; every rank resumes from its states).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from glm3_teach.checkpoint import check_replaceable, publish_folder, recover_folder, staging_folder
from glm3_teach.data import BlockSampler
from glm3_teach.errors import read_json
from glm3_teach.train_config import RESUMABLE_KEYS, TrainConfig

STATE_FILE, MODEL_FILE, OPTIMIZER_FILE, RNG_FILE = "trainer_state.json", "model.safetensors", "optimizer.safetensors", "rng.safetensors"


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
    """The model itself inside ``torch.compile`` and ``DistributedDataParallel`` wrappers."""
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return getattr(model, "_orig_mod", model)
