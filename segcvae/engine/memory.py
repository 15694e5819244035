"""Memory limits: a setting that would hold more than the machine has is refused before allocating.

Many likelihood samples are decoded a chunk at a time and only their summaries are kept, so their
number costs time, not memory. Hypotheses that must be held all at once (the multi-hypothesis
metrics compare every pair; a prediction returns every hypothesis) are estimated first and
checked against :data:`MEMORY_FRACTION` of the memory available now on the device that will hold
them: CUDA's free memory (``torch.cuda.mem_get_info``, plus what PyTorch's cache holds unused), or
on the CPU ``MemAvailable`` of ``/proc/meminfo`` (``os.sysconf``'s available pages elsewhere). An
estimate above it is a :class:`MemoryLimitError`: one line naming the setting, the bytes it would
need and the limit, exit status 2 from the commands, instead of an allocation failure deep in
torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from segcvae.config import ConfigError

#: The share of the available memory that one setting may take at once.
MEMORY_FRACTION = 0.5


class MemoryLimitError(ConfigError):
    """A setting would need more memory at once than the limit (a :class:`ConfigError`).

    Attributes:
        setting: How the message names the setting (``eval.hypotheses``, ``--samples``).
        value: Its value.
        need: Estimated bytes.
        limit: The limit in bytes.
        detail: What takes the memory.
        where: The device (``cpu``, ``cuda:0``).
    """

    def __init__(
        self, setting: str, value: Any, need: int, limit: int, detail: str, where: str = "cpu"
    ) -> None:
        self.setting, self.value, self.need, self.limit = setting, value, need, limit
        self.detail, self.where = detail, where
        super().__init__(
            f"{setting}={value}: {detail} would need about {format_bytes(need)} of memory at "
            f"once, more than the limit of {format_bytes(limit)} ({MEMORY_FRACTION:.0%} of the "
            f"memory available now on {where}); use a smaller value"
        )

    def named(self, names: Mapping[str, str]) -> MemoryLimitError:
        """The same error naming the setting as ``names`` says (a command passes its flags)."""
        setting = names.get(self.setting, self.setting)
        return MemoryLimitError(setting, self.value, self.need, self.limit, self.detail, self.where)


def format_bytes(n: float) -> str:
    """``1.2 GB``, ``340 MB``, ``12 kB`` (powers of 1000)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} bytes"


def available_memory(device: Any = None) -> int | None:
    """Bytes that can be allocated now on ``device`` (a ``torch.device``, ``"cpu"``, ``"cuda:0"``;
    None: the CPU), or None when the system does not say."""
    kind = str(getattr(device, "type", device or "cpu")).split(":")[0]
    if kind == "cuda":
        import torch

        index = torch.device(device).index  # "cuda:1" or a torch.device
        index = torch.cuda.current_device() if index is None else index
        free, _ = torch.cuda.mem_get_info(index)
        cached = torch.cuda.memory_reserved(index) - torch.cuda.memory_allocated(index)
        return int(free + max(cached, 0))
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(device: Any = None) -> int | None:
    """:data:`MEMORY_FRACTION` of :func:`available_memory`, or None when that is unknown."""
    available = available_memory(device)
    return None if available is None else int(available * MEMORY_FRACTION)


def check_memory(need: int, setting: str, value: Any, detail: str, device: Any = None) -> None:
    """Refuse a setting whose estimated memory ``need`` (bytes) is above :func:`memory_limit`.

    Args:
        need: Estimated bytes held at once.
        setting: The setting's name as the caller's user knows it (``eval.hypotheses``).
        value: Its value.
        detail: What takes the memory (``"100000 hypotheses of 16 images of 96x96, 2 classes"``).
        device: Where the memory is taken (None: the CPU).

    Raises:
        MemoryLimitError: ``need`` is above the limit.
    """
    limit = memory_limit(device)
    if limit is not None and need > limit:
        where = str(device if device is not None else "cpu")
        raise MemoryLimitError(setting, value, int(need), limit, detail, where)
