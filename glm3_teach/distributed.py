"""Data parallelism with PyTorch DDP: one process per device, each on its shard of every batch.

Taught in lesson 06 (预训练 Pretraining), section 9 (data parallelism). ``glm3_teach.train``
runs unchanged under ``torchrun``, which starts one process per device and tells each its
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in environment variables:

- ``world_from_env`` reads them (one process, rank 0 of 1, without them);
- ``init_distributed`` joins the process group they describe: gloo on the CPU, nccl on CUDA
  GPUs (``cuda`` becomes ``cuda:LOCAL_RANK``, ``local_device``);
- ``shard`` gives rank ``r`` every ``world_size``-th sample of a batch, starting at ``r``, so
  ``N`` processes with ``batch_size`` B see exactly the samples one process with ``N * B`` sees
  (``batch_size`` is per process, as in PyTorch DDP);
- ``torch.nn.parallel.DistributedDataParallel`` (``wrap``) averages the gradients over the
  processes during ``backward`` (an all-reduce), so every process takes the same optimizer step
  and the weights stay identical everywhere; ``all_reduce_sum`` adds numbers the processes
  computed (target counts, losses, validation sums) so every rank sees the global value.

What it leaves out: FSDP/ZeRO (sharding the weights, gradients and optimizer state as well,
which a 6B model needs: lesson 06 counts the bytes), tensor and pipeline parallelism, several
machines (torchrun's ``--nnodes`` works, but nothing here was tested on more than one) and
elastic restarts.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class World:
    """Where this process stands: ``rank`` of ``world_size`` processes, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, logs, saves checkpoints and exports."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"the environment variable {name}={value!r} must be an integer; torchrun sets it, "
                         f"so unset it when you run one process without torchrun") from None


def world_from_env() -> World:
    """The process group's ranks when one is running, else those ``torchrun`` put in the environment."""
    if dist.is_available() and dist.is_initialized():
        local = _env_int("LOCAL_RANK", dist.get_rank())
        return World(dist.get_rank(), dist.get_world_size(), local)
    world = World(_env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0))
    if world.world_size < 1 or not 0 <= world.rank < world.world_size:
        raise ValueError(f"RANK={world.rank} and WORLD_SIZE={world.world_size} do not fit (0 <= RANK < WORLD_SIZE); "
                         f"launch with torchrun, which sets both, or unset them for one process")
    return world


def local_device(device: torch.device, world: World | None = None) -> torch.device:
    """Under torchrun a CUDA device without an index means this process's own GPU, ``cuda:LOCAL_RANK``."""
    world = world or world_from_env()
    if device.type == "cuda" and device.index is None and world.distributed:
        return torch.device("cuda", world.local_rank)
    return device


def init_distributed(device: torch.device) -> bool:
    """Join the process group torchrun describes (gloo on the CPU, nccl on CUDA).

    Returns True when this call created the group, which the caller may leave with
    ``destroy_distributed`` (it is left at exit otherwise); False for one process, or when a
    group already runs. A process joins once: a group made again after leaving one would meet
    the first one's keys in torchrun's store.
    """
    world = world_from_env()
    if not world.distributed or dist.is_initialized():
        return False
    if not dist.is_available():
        raise RuntimeError(f"WORLD_SIZE={world.world_size} asks for several processes, but this PyTorch build has "
                           f"no torch.distributed; install the standard build from pytorch.org")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend)  # MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE come from torchrun
    atexit.register(destroy_distributed, True)
    return True


def destroy_distributed(created: bool) -> None:
    """Leave the process group, if ``init_distributed`` created it (no waiting for the others)."""
    if created and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard(items: Sequence[Any], world: World) -> list[Any]:
    """Rank ``r``'s share of a global batch: items ``r, r + world_size, r + 2 * world_size, ...``."""
    return list(items[world.rank::world.world_size])


def all_reduce_sum(values: Sequence[float], device: torch.device, world: World) -> list[float]:
    """The sums over all processes of ``values`` (in float64); the values themselves for one process."""
    if not world.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)  # [len(values)]
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.parallel.DistributedDataParallel:
    """``DistributedDataParallel(model)``: copies rank 0's weights to every rank, then averages
    the gradients over the ranks during each ``backward``."""
    device_ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def barrier(world: World) -> None:
    """Wait until every process gets here (nothing to wait for with one process)."""
    if world.distributed:
        dist.barrier()
