"""Where a training process runs: distributed rank, device, mixed precision, seeds, machine description."""

from __future__ import annotations

import os
import platform
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass
class Dist:
    """This process's place in a ``torchrun`` job (a single process is rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0 validates and writes every file."""
        return self.rank == 0


def setup_distributed(device_pref: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on CUDA, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    use_cuda = torch.cuda.is_available() and device_pref != "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def teardown_distributed(d: Dist) -> None:
    if d.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(pref: str, d: Dist) -> torch.device:
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    if pref == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device cuda requested but CUDA is not available")
        return torch.device("cuda", d.local_rank)
    return torch.device(pref)


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype ``--amp`` asks for on ``device`` (None: full precision)."""
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def autocast(device: torch.device, amp: torch.dtype | None) -> AbstractContextManager[Any]:
    return torch.autocast(device.type, dtype=amp) if amp else nullcontext()


def seed_everything(seed: int, deterministic: bool) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def worker_init(_: int) -> None:
    """DataLoader worker start: one cv2 thread (each worker prepares one sample; more only oversubscribes).

    torch itself already runs workers with one thread.
    """
    import cv2

    cv2.setNumThreads(1)


def machine_info() -> dict[str, Any]:
    """What the training record says about where it ran."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    return info


def all_ranks_agree(flag: torch.Tensor, d: Dist, device: torch.device) -> bool:
    """True only when ``flag`` is true on every rank (all must take the same branch, or DDP deadlocks)."""
    if d.world > 1:
        f = flag.float().to(device)
        dist.all_reduce(f, op=dist.ReduceOp.MIN)
        return bool(f > 0)
    return bool(flag)


def barrier(d: Dist) -> None:
    if d.world > 1:
        dist.barrier()
