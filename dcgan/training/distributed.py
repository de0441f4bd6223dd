"""torchrun / DistributedDataParallel helpers: one process per device, the global batch split.

Launched by `torchrun --nproc_per_node=K gancontrol.py training ...`, every rank builds the same
models from the same seed, draws the same global batch indices and latents, and trains on its own
contiguous slice of them; DDP averages the gradients, so K ranks compute what one process would
(up to BatchNorm statistics, which are per rank unless --sync-bn). Only rank 0 writes files.
Backend: nccl on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, n_global: int) -> slice:
        """This rank's contiguous part of a global batch of n_global."""
        per = n_global // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group torchrun describes in the environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
    return info


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    """Each rank on its own GPU (cuda:LOCAL_RANK); CPU ranks share the CPU."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def check_batch(info: DistInfo, batch_size: int) -> None:
    if batch_size % info.world:
        raise UserError(f"BATCH_SIZE {batch_size} must be a multiple of the {info.world} processes "
                        "(it is the global batch, split evenly across them)")


def all_max(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Elementwise max over ranks (so that every rank takes the same stop decision)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return values


def all_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= info.world
    return values


def sync_buffers(modules: list[torch.nn.Module], info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift apart per rank)."""
    if info.enabled:
        for m in modules:
            for b in m.buffers():
                dist.broadcast(b, src=0)


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def broadcast_error(message: str | None, info: DistInfo) -> str | None:
    """Rank 0's error message (or None) on every rank, so that all stop together on bad input."""
    if not info.enabled:
        return message
    box = [message]
    dist.broadcast_object_list(box, src=0)
    return box[0]
