"""Training on several processes with torch.distributed, with the contrastive loss over the global batch.

Started by `torchrun --nproc_per_node N -m tvr train …` (or `tvr train --ddp N`, which runs that):
every rank reads RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT from the environment torchrun sets.
gloo on CPU, nccl on CUDA.

Every rank draws the same global batches (they are a function of seed and epoch) and encodes its
contiguous slice. The embeddings are all-gathered *with gradient* (`torch.distributed.nn`), so each
rank computes InfoNCE over the whole global batch, as CLIP4Clip does: no rank sees only its own
negatives. The all-gather's backward sums every rank's gradient of the (identical) loss into each
rank's slice; averaging the parameter gradients across ranks then gives exactly the gradient of a
single process on the global batch. Rank 0 alone validates, writes checkpoints and metrics, and
prints progress; the others wait for it at the end of each epoch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypeVar

import torch
from torch import Tensor

from tvr.errors import TvrError

E = TypeVar("E")
BARRIER_TIMEOUT = datetime.timedelta(hours=3)


@dataclass(frozen=True)
class Dist:
    """This process's place in the job; `Dist()` is the single-process default."""

    rank: int = 0
    world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def local_slice(self, rows: list[int]) -> list[int]:
        """This rank's contiguous part of a global batch (whose size is a multiple of `world`)."""
        if not self.enabled:
            return rows
        per = len(rows) // self.world
        return rows[self.rank * per : (self.rank + 1) * per]

    def trim(self, batch: tuple[list[int], list[int]]) -> tuple[list[int], list[int]]:
        """A global batch cut to a multiple of `world` (the epoch's last batch may be shorter)."""
        caps, rows = batch
        keep = len(caps) - len(caps) % self.world
        return caps[:keep], rows[:keep]

    def gather(self, emb: E) -> E:
        """An embedding dataclass with every tensor field all-gathered along the batch axis, differentiably."""
        if not self.enabled:
            return emb
        from torch.distributed.nn.functional import all_gather

        def cat(t: Tensor) -> Tensor:
            return torch.cat(all_gather(t.contiguous()), dim=0)

        changes = {f.name: cat(v) for f in dataclasses.fields(emb)  # type: ignore[arg-type]
                   if isinstance(v := getattr(emb, f.name), Tensor) and v.dim() > 0}
        return dataclasses.replace(emb, **changes)  # type: ignore[type-var]

    def average_gradients(self, model: torch.nn.Module) -> None:
        if not self.enabled:
            return
        import torch.distributed as dist

        for p in model.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad.div_(self.world)

    def average(self, value: Tensor) -> Tensor:
        """The mean of `value` over the ranks (for reporting a rank's local loss as the global one)."""
        if not self.enabled:
            return value
        import torch.distributed as dist

        out = value.detach().clone()
        dist.all_reduce(out)
        return out / self.world

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def init_from_env(device: torch.device) -> Dist:
    """Join the job torchrun started (WORLD_SIZE > 1), else the single-process default."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        # the other ranks wait at a barrier while rank 0 builds what is built once per machine (the synthetic
        # backbone, a method pretrained on synthetic videos: about 20 + 15 min on 2 cores), longer than the default 30 min
        dist.init_process_group(backend=backend, timeout=BARRIER_TIMEOUT)
    rank = dist.get_rank()
    if dist.get_world_size() != world:
        raise TvrError(f"WORLD_SIZE is {world} but the process group has {dist.get_world_size()} ranks")
    return Dist(rank=rank, world=world)


@contextlib.contextmanager
def joined(device: torch.device) -> Iterator[tuple[Dist, torch.device]]:
    """(this process's Dist, its device) for the block: the torchrun job joined when there is one
    (rank r on cuda:LOCAL_RANK), left at the end."""
    dist = init_from_env(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    try:
        yield dist, device
    finally:
        shutdown(dist)


def shutdown(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
