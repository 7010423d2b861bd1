"""Choosing where tensors live, and making runs repeatable.

Taught in lesson 00 (环境与导览 Setup and tour). Every later lesson calls
``pick_device()`` once and ``seed_everything(seed)`` before it makes random numbers.

What it leaves out: multi-GPU placement and distributed seeding; the course runs on one
device at a time.
"""

from __future__ import annotations

import os
import platform
import random

import numpy as np
import torch

from glm3_teach.errors import UnavailableError

DEVICE_ENV_VAR = "GLM3_DEVICE"
_KNOWN_KINDS = ("cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(preferred: str | None = None) -> torch.device:
    """Return the device the lessons should use.

    Order: the ``preferred`` argument, then the ``GLM3_DEVICE`` environment variable
    (e.g. ``GLM3_DEVICE=cpu`` to force the CPU on a GPU machine), then CUDA, then Apple's
    MPS, then the CPU.

    >>> pick_device("cpu")
    device(type='cpu')
    """
    choice = preferred or os.environ.get(DEVICE_ENV_VAR, "").strip()
    if choice:
        return as_device(choice, "the argument" if preferred else DEVICE_ENV_VAR)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def as_device(device: torch.device | str, source: str = "the argument") -> torch.device:
    """``device`` as a ``torch.device`` that exists here, or one clear error saying what to write.

    ``source`` says where the value came from (an argument, ``GLM3_DEVICE``, a config file).

    >>> as_device("cpu")
    device(type='cpu')
    """
    if isinstance(device, torch.device):
        choice = str(device)
    elif isinstance(device, str) and device.strip():
        choice = device.strip()
    else:
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda:0' (from {source}), got {device!r}")
    kind, _, index = choice.partition(":")
    if kind not in _KNOWN_KINDS or (index and not index.isdigit()):
        raise ValueError(f"unknown device {choice!r} (from {source}); use one of {', '.join(_KNOWN_KINDS)}, "
                         f"optionally with an index such as 'cuda:1'")
    if kind == "cuda" and not torch.cuda.is_available():
        raise UnavailableError(f"device {choice!r} was asked for but this PyTorch build sees no CUDA GPU; "
                           f"unset {DEVICE_ENV_VAR} or set it to 'cpu'")
    if kind == "cuda" and index and int(index) >= torch.cuda.device_count():
        raise UnavailableError(f"device {choice!r} was asked for but only {torch.cuda.device_count()} CUDA GPU(s) "
                           f"are visible; use an index below that")
    if kind == "mps" and not _mps_available():
        raise UnavailableError(f"device {choice!r} was asked for but MPS is not available here")
    return torch.device(choice)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy and PyTorch (CPU and every GPU) with ``seed``.

    Returns a fresh CPU ``torch.Generator`` seeded the same way, for code that wants its
    own stream of random numbers (the course makes random data on the CPU, then moves it
    to the device, so the numbers are the same on every machine).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise ValueError(f"seed must be a non-negative int below 2**64 (what PyTorch's generator holds), "
                         f"got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def describe_device(device: torch.device) -> str:
    """A human name for ``device``: the GPU model on CUDA, the thread count on the CPU."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def environment_report(device: torch.device | None = None) -> str:
    """One line saying which Python, PyTorch and device this session uses.

    >>> environment_report(torch.device("cpu"))  # doctest: +SKIP
    'Python 3.11.7 | PyTorch 2.13.0+cpu | device: cpu (2 threads)'
    """
    device = device if device is not None else pick_device()
    return (
        f"Python {platform.python_version()} | PyTorch {torch.__version__} | "
        f"device: {describe_device(device)}"
    )
