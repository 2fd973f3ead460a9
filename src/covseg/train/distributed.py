"""Data-parallel training under `torchrun`: who this process is, and how a step's batch is split.

`torchrun --nproc_per_node N -m covseg train CONFIG` starts N copies of the trainer with
WORLD_SIZE / RANK / LOCAL_RANK set; `python -m covseg train` sets none of them and trains in one
process exactly as before.

Why the batch is split here instead of by `torch.utils.data.DistributedSampler`: the trainer has
no dataset to index. Each step draws its whole batch (slice choice and augmentation) from a
generator seeded with (seed, step), so a resumed run sees the same data. Every rank therefore
draws the same GLOBAL batch of `batch_size` samples and keeps every world_size-th one
(rank r takes samples r, r + world_size, ...). That is what a DistributedSampler gives (disjoint
shares of one global order), deterministic per step, so resuming stays exact, and the union of
the shares is the batch a single process trains on.

Why the result matches one process: DDP averages the gradients over ranks. For a loss that is a
mean over samples (CE), the mean of the per-rank means is the global mean when the shares are
equal; `share_weight` rescales unequal shares so it still is. Losses that pool the batch (Dice,
weighted CE) become the average of per-rank losses, as in any DDP run. BatchNorm normalises each
rank's share with that share's statistics: on GPUs the trainer converts it to SyncBatchNorm,
which pools the statistics over ranks; SyncBatchNorm does not run on CPU (torch 2.13 refuses
non-GPU inputs), so on CPU the statistics are per rank unless the config sets
`freeze_batchnorm`, which makes the forward pass of a sample independent of its batch mates.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in the run (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # this module started the process group, so it ends it

    @property
    def active(self) -> bool:
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and shows progress, so a run's outputs exist once."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """torchrun (and other launchers of its family) set these three for every process."""
    return all(k in os.environ for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"))


def setup() -> Dist:
    """Join the process group torchrun describes: nccl on this process's GPU, gloo on CPU.

    The device is `covseg.runtime.compute_device()`'s (the GPU when there is one, as
    COVSEG_DEVICE says, with its arithmetic settled there); under torchrun, this rank's GPU.
    Outside torchrun nothing is initialised. A group someone else already started is reused.
    """
    from covseg.runtime import compute_device

    device = compute_device()
    if not launched_by_torchrun():
        return Dist(device=device)
    if not dist.is_available():
        raise RuntimeError("launched by torchrun, but this torch build has no torch.distributed")
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = device.type == "cuda"
    if cuda:
        device = torch.device("cuda", local_rank)
    owns = not dist.is_initialized()
    if owns:
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, device, owns)


def teardown(ctx: Dist) -> None:
    """End the group we started (not one a caller owns)."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def threads_per_process(ctx: Dist, threads: int | None) -> int | None:
    """The configured threads, or this machine's cores shared among its processes.

    N processes each using every core would oversubscribe the CPU N times over.
    """
    if threads or ctx.world_size == 1:
        return threads
    local = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
    return max(1, (os.cpu_count() or 1) // local)


def shard(ctx: Dist, batch_size: int) -> list[int]:
    """The indices into the global batch this rank trains on: r, r + world_size, ..."""
    return list(range(ctx.rank, batch_size, ctx.world_size))


def share_weight(ctx: Dist, batch_size: int) -> float:
    """Factor on this rank's mean loss so that DDP's gradient average is the global-batch mean.

    With shares of n_r samples, sum_r n_r * loss_r / batch_size is the global mean; DDP divides
    the summed gradients by world_size, so each rank scales by n_r * world_size / batch_size
    (1.0 when batch_size divides evenly).
    """
    return len(shard(ctx, batch_size)) * ctx.world_size / batch_size


def broadcast(ctx: Dist, value: object) -> object:
    """Rank 0's `value` on every rank (the precision choice, which timing could make differ)."""
    if not ctx.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(ctx: Dist, values: list[float]) -> list[float]:
    """Per-step numbers averaged over ranks, so the log describes the global batch."""
    if not ctx.active:
        return values
    t = torch.tensor(values, dtype=torch.float64,
                     device=ctx.device if ctx.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return (t / ctx.world_size).tolist()


def barrier(ctx: Dist) -> None:
    """Wait for every rank (so none returns before rank 0 has written the run's files)."""
    if ctx.active:
        dist.barrier()
