"""torchrun / DistributedDataParallel helpers: one process per device, the global batch split.

Launched by `torchrun --nproc_per_node=K gancontrol.py training ...`, every rank builds the same
models from the same seed, draws the same global batch indices and latents, and trains on its own
contiguous slice of them; DDP averages the gradients, so the parameters stay identical on every
rank. What differs from one process: BatchNorm statistics are per rank unless --sync-bn, and the
random DiffAugment and gradient-penalty draws come from each rank's own stream (`seed_rank`).
Only rank 0 writes files. Backend: nccl for CUDA tensors (with gloo beside it for the few CPU
tensors the loop exchanges), gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import UserError

# Set once this process has joined a process group: gancontrol.py then ends it with os._exit
# (dcgan.cli.leave), because gloo's worker threads can still be freeing tensors at exit.
joined_a_group = False


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
    global joined_a_group
    joined_a_group = True
    if not dist.is_initialized():
        # On CUDA the stop flags and error messages are CPU tensors/objects: gloo carries those.
        backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend, timeout=timedelta(minutes=10))
    return info


def resolve_device(name: str) -> torch.device:
    """--device auto | cpu | cuda[:N] as a torch device; a GPU asked for but absent is a one-line error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: no CUDA GPU is available here (use --device cpu or auto)")
    return torch.device(name)


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    """Each rank on its own GPU (cuda:LOCAL_RANK); CPU ranks share the CPU."""
    if device.type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return device


def seed_rank(seed: int, step: int, info: DistInfo) -> None:
    """Give ranks other than 0 their own stream for augmentations and penalty noise.

    Every rank starts from the same seed (so that the models are built alike); left so, each rank
    would augment its slice of the batch with rank 0's random draws. Rank 0 keeps its stream, so a
    single process (and exact resume) is unchanged; the others derive theirs from (seed, rank, step).
    """
    if info.rank > 0:
        torch.manual_seed(hash((seed, info.rank, step)) % 2**63)


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


def all_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Elementwise sum over ranks (a copy; `values` itself is left as it was)."""
    if info.enabled:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_mean(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    return all_sum(values, info) / info.world if info.enabled else values


def sync_buffers(modules: list[torch.nn.Module], info: DistInfo) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics drift apart per rank)."""
    if info.enabled:
        for m in modules:
            for b in m.buffers():
                dist.broadcast(b, src=0)


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
