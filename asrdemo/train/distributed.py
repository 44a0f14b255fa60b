"""Distributed data parallel (DDP) setup: one process per device, launched by torchrun.

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (and MASTER_ADDR / MASTER_PORT); we join the process
group with nccl on GPUs and gloo on CPU. Without those variables the run is a single process.
Statistics are summed across ranks with `all_reduce_sum`; only rank 0 writes files.
"""

import logging
import os
import shlex
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from asrdemo.errors import AsrdemoError

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self):
        return self.rank == 0

    @property
    def distributed(self):
        return self.world_size > 1


def launched_by_torchrun():
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def setup(ngpu):
    """Join the process group if torchrun started us; pick this process's device."""
    if ngpu > 0 and not torch.cuda.is_available():
        raise AsrdemoError(f"--ngpu {ngpu} but torch sees no CUDA device (this torch: {torch.__version__})")
    if not launched_by_torchrun():
        return DistInfo(device=torch.device("cuda:0" if ngpu > 0 else "cpu"))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if ngpu > 0:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group(backend="nccl" if ngpu > 0 else "gloo")
        log.info("DDP: rank %d of %d on %s (%s)", rank, world, device, dist.get_backend())
    return DistInfo(rank, world, local_rank, device)


def cleanup(info):
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor, info):
    """Sum `tensor` over all ranks in place (a no-op for one process); returns it."""
    if info.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_object(obj, info):
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if not info.distributed:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info):
    if info.distributed:
        dist.barrier()


def torchrun_command(nproc, argv):
    """The torchrun command line that runs `python -m asrdemo <argv>` on `nproc` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "asrdemo", *argv]


def relaunch_with_torchrun(nproc, argv):
    """Replace this process with torchrun running the same command on `nproc` processes."""
    cmd = torchrun_command(nproc, argv)
    log.info("%d processes: re-launching under torchrun:\n  %s", nproc, shlex.join(cmd))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)
