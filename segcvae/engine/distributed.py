"""Process-group set-up for ``torchrun``, and the device choice made on behalf of ``tools/``.

``torchrun --nproc_per_node=N tools/train.py ...`` sets ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE``;
:func:`init_distributed` reads them and starts the process group (NCCL on CUDA, Gloo on CPU).
Without those variables everything here is a no-op and the run is a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from segcvae.config import ConfigError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the run.

    Attributes:
        rank: Global rank (0 in a single-process run).
        local_rank: Rank on this node; picks the CUDA device.
        world_size: Number of processes.
        device: The device this process trains on.
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 logs, evaluates and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(name: str, local_rank: int = 0, key: str = "train.device") -> torch.device:
    """Turn ``train.device`` into a device: ``auto`` means CUDA when available, else CPU.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        local_rank: Under torchrun, ``auto`` and ``cuda`` pick ``cuda:local_rank``.
        key: The setting ``name`` came from, named in the error.

    Raises:
        ConfigError: The device is not a device name, or is not present on this machine.
    """
    given = name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        name = f"cuda:{local_rank}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key}={given!r}: expected auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key}={given!r} but this machine has no usable CUDA GPU "
                f"(torch {torch.__version__}); use cpu or auto"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"{key}={given!r} but this machine has {torch.cuda.device_count()} CUDA "
                "device(s); use cuda, auto or a lower index"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"{key}={given!r} but MPS is not available here; use cpu or auto")
    return device


def torchrun_env() -> bool:
    """True when launched by torchrun (or any launcher that sets RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Start the process group when launched by torchrun; otherwise describe a single process.

    Args:
        device_name: ``train.device`` from the config.

    Returns:
        This process's :class:`DistInfo`.
    """
    if not torchrun_env():
        return DistInfo(device=resolve_device(device_name))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group(backend=backend, **kwargs)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size, device=device)


def cleanup_distributed() -> None:
    """Tear down the process group if one was started."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait until every process reaches this point (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over processes, in place; returns it (unchanged in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_true(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` holds on every process (all ranks must call this together)."""
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())
