"""Multi-process LE builds: the process group, the few collectives the build needs, and how
work is split.

A build started by a launcher (``accelerate launch --multi_gpu --num_processes N``, ``torchrun
--nproc_per_node N``, or ``accelerate launch --cpu`` under mpirun) sees ``WORLD_SIZE > 1`` and
joins the process group through :class:`accelerate.PartialState` (NCCL on GPUs, one GPU per
process; gloo on CPUs). Without a launcher nothing here is imported by the build and it runs as
one process, as before.

Work is split in units that one process computes exactly as a one-process build does (an item
batch, a group of 64 users, the rows of one LE training batch), so the results do not depend on
the number of processes except where gradients of one training batch are summed across them.
Everything exchanged between processes goes through tensors (JSON encoded as bytes): nothing is
pickled.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import torch

from recbole_lea.errors import ConfigError

logger = logging.getLogger(__name__)

#: how long a process waits for the others at a collective: rank 0 alone trains the candidates'
#: backbone, merges the shards and writes the LE folder while the others wait (a dead process is
#: noticed sooner: the launcher stops the whole group when one of its processes fails)
COLLECTIVE_TIMEOUT = timedelta(hours=6)
#: environment variables through which launchers give the number of processes
WORLD_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_world() -> int:
    """The number of processes a launcher started for this command (1 without a launcher)."""
    for name in WORLD_ENV:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return 1


@dataclass
class Dist:
    """This process's place in the build's process group and the collectives the build uses.

    With ``world == 1`` every collective is a no-op (a one-process sharded build, used by tests).
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")  # where collective tensors live (cuda for NCCL)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def all_reduce_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the processes, in place (every process gets the same sum)."""
        if self.world > 1:
            moved = tensor.to(self.device)
            torch.distributed.all_reduce(moved, op=torch.distributed.ReduceOp.SUM)
            if moved is not tensor:
                tensor.copy_(moved)
        return tensor

    def broadcast_(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Overwrite ``tensor`` with process ``src``'s value, in place."""
        if self.world > 1:
            moved = tensor.to(self.device)
            torch.distributed.broadcast(moved, src=src)
            if moved is not tensor:
                tensor.copy_(moved)
        return tensor

    def _bytes(self, obj: Any) -> torch.Tensor:
        data = json.dumps(obj, sort_keys=True, default=str).encode()
        return torch.tensor(list(data), dtype=torch.uint8, device=self.device)

    @staticmethod
    def _decode(buf: torch.Tensor, size: int) -> Any:
        return json.loads(bytes(buf[:size].cpu().tolist()).decode())

    def all_gather_json(self, obj: Any) -> list[Any]:
        """Every process's ``obj`` (JSON-serialisable), in rank order."""
        if self.world == 1:
            return [json.loads(json.dumps(obj, sort_keys=True, default=str))]
        data = self._bytes(obj)
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world)]
        torch.distributed.all_gather(sizes, size)
        longest = int(max(int(s) for s in sizes))
        buf = torch.zeros(longest, dtype=torch.uint8, device=self.device)
        buf[: len(data)] = data
        bufs = [torch.zeros_like(buf) for _ in range(self.world)]
        torch.distributed.all_gather(bufs, buf)
        return [self._decode(b, int(s)) for b, s in zip(bufs, sizes, strict=True)]

    def broadcast_json(self, obj: Any, src: int = 0) -> Any:
        """Process ``src``'s ``obj`` on every process."""
        if self.world == 1:
            return obj
        data = self._bytes(obj if self.rank == src else None)
        size = torch.tensor([len(data)], dtype=torch.int64, device=self.device)
        torch.distributed.broadcast(size, src=src)
        buf = torch.zeros(int(size), dtype=torch.uint8, device=self.device)
        if self.rank == src:
            buf[:] = data
        torch.distributed.broadcast(buf, src=src)
        return self._decode(buf, int(size))


def _single_process_launch_trap() -> None:
    """``accelerate launch --cpu --num_processes N`` without mpirun starts ONE process (accelerate
    runs multi-CPU jobs through mpirun) but still sets MASTER_ADDR: say so instead of silently
    building in one process."""
    cpu = os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")
    if cpu and os.environ.get("MASTER_ADDR") and launched_world() == 1:
        raise ConfigError(
            "`accelerate launch --cpu --num_processes N` started a single process (accelerate runs several CPU "
            "processes only through mpirun, `--mpirun_hostfile`). Start N CPU processes with `accelerate launch "
            "--multi_gpu --num_processes N ...` or `torchrun --nproc_per_node N -m recbole_lea.le build ...` and "
            "--le_device cpu (gloo), or drop --num_processes for a one-process build."
        )


def init_dist(device: torch.device) -> Dist | None:
    """Join the launcher's process group (None without a launcher: a one-process build).

    ``device`` is the LLM's device of the build (:func:`recbole_lea.le.llm.resolve_device`): on
    cuda every process takes the GPU of its local rank (NCCL), on cpu the group uses gloo."""
    world = launched_world()
    if world <= 1:
        _single_process_launch_trap()
        return None
    cuda = device.type == "cuda"
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if cuda and local_world > torch.cuda.device_count():
        raise ConfigError(
            f"{local_world} processes on this machine but torch sees {torch.cuda.device_count()} GPU(s): launch at "
            "most one process per GPU (--num_processes), or build on CPUs with --le_device cpu."
        )
    from accelerate import PartialState

    kwargs: dict[str, Any] = {"timeout": COLLECTIVE_TIMEOUT}
    if not cuda:
        kwargs["backend"] = "gloo"
    state = PartialState(cpu=not cuda, **kwargs)
    if state.num_processes != world:
        raise ConfigError(
            f"the launcher announced {world} processes but the process group has {state.num_processes}; "
            "start the build with one launcher command (accelerate launch / torchrun)"
        )
    comm = torch.device("cpu")
    if cuda:
        comm = torch.device("cuda", state.local_process_index)
        torch.cuda.set_device(comm)
    logger.info(
        "LE build: process %d of %d (%s, %s backend)", state.process_index, state.num_processes, comm, state.backend
    )
    return Dist(state.process_index, state.num_processes, state.local_process_index, comm)


def check_agreement(dist: Dist, described: dict[str, Any]) -> None:
    """Stop every process with one message when the processes were given different options,
    data, LLM weights, split or code (``described``: name -> value on this process)."""
    everyone = dist.all_gather_json(described)
    ref = everyone[0]
    lines = []
    for rank, mine in enumerate(everyone[1:], start=1):
        for key in sorted(set(ref) | set(mine)):
            if ref.get(key) != mine.get(key):
                lines.append(f"process {rank} has {key}={mine.get(key)!r} where process 0 has {ref.get(key)!r}")
    if lines:
        more = f" (and {len(lines) - 8} more)" if len(lines) > 8 else ""
        raise ConfigError(
            f"The {dist.world} processes of this LE build disagree on its configuration: "
            + "; ".join(lines[:8])
            + more
            + ". Every process must get the same options, data, LLM weights and recbole_lea version: start them "
            "with one launcher command in one environment."
        )


def assign(costs: list[float] | np.ndarray, world: int) -> list[int]:
    """Owner process of each unit of work: the most costly unit first to the least loaded process
    (ties: the lower rank), so every process computes the same assignment from the same costs."""
    load = [0.0] * world
    owner = [0] * len(costs)
    for i in sorted(range(len(costs)), key=lambda j: (-float(costs[j]), j)):
        r = min(range(world), key=lambda k: (load[k], k))
        owner[i] = r
        load[r] += float(costs[i])
    return owner


def balance(costs: list[float] | np.ndarray, world: int) -> float:
    """Mean load over the most loaded process's load under :func:`assign` (1.0: perfectly even)."""
    if not len(costs):
        return 1.0
    owner = assign(costs, world)
    load = np.zeros(world)
    for i, r in enumerate(owner):
        load[r] += float(costs[i])
    return float(load.mean() / load.max()) if load.max() > 0 else 1.0
