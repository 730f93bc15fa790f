"""Plain training on several processes: DistributedDataParallel under ``torchrun`` (docs/scaling.md).

``torchrun --nproc_per_node N -m genosynth.cli train ...`` starts N copies of the command with
``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in their environment. :func:`init_from_env` joins
them in one process group (gloo on the CPU, nccl on CUDA, one GPU per process), after which
:func:`~genosynth.training.plain.train_generator` finds the group (:meth:`Shards.current`) and:

* every process holds the whole cohort and draws the same permutation of its rows each epoch
  from the shared seeded generator, then trains on its own contiguous slice of it
  (:meth:`Shards.rows`); the slices have equal sizes (the permutation is padded by wrapping) so
  every process takes the same number of optimiser steps and the gradient all-reduces match;
* the configured batch sizes stay the global ones: each process takes ``ceil(batch / N)`` rows
  per step, so N processes follow about the optimisation path of one (same steps per epoch);
* the VAE and then the DiT are wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`
  (:meth:`Shards.wrap`), which averages the gradients, so the weights stay equal on every
  process; the EMA, the latent scale, the LD prior and the frequency calibration are computed
  identically on every process from those weights and the shared generator;
* the per-process noise (reparameterisation, label dropout, diffusion time and noise) comes from
  a generator seeded from ``(seed, stage, epoch, rank)`` (:meth:`Shards.noise`), so processes
  draw different noise and a resumed run redraws the same;
* only rank 0 writes the checkpoint (the one-process format, from the unwrapped networks),
  ``PREFIX.log`` and the summary, and shows progress bars.

One process (no ``torchrun``, or ``--nproc_per_node 1``) never creates a group and trains exactly
as before: same code path, byte-identical checkpoints for the same seed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from genosynth.errors import InputError

STAGES = ("vae", "dit")


def world_size_from_env() -> int:
    """``WORLD_SIZE`` set by torchrun (1 when absent)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def launched() -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE`` > 1)."""
    return world_size_from_env() > 1


def env_rank() -> int:
    """``RANK`` set by torchrun (0 when absent): rank 0 alone writes outputs."""
    return int(os.environ.get("RANK", "0") or 0)


def local_processes() -> int:
    """Processes of this run on this machine (``LOCAL_WORLD_SIZE``; 1 when absent)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)


def init_from_env(device: str = "cpu") -> torch.device | None:
    """Join the process group torchrun describes; return this process's device (None: one process).

    ``device`` ``"cuda"`` (or ``"auto"`` with a GPU) uses nccl and GPU ``LOCAL_RANK``; ``"cpu"`` uses gloo.
    """
    if not launched():
        return None
    if not dist.is_available():
        raise InputError("this torch build has no torch.distributed; run one process (without torchrun)")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK {local} but only {torch.cuda.device_count()} GPUs are visible; "
                             "give torchrun --nproc_per_node at most the number of GPUs, or use --device cpu")
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")


def shutdown(*, wait: bool = True) -> None:
    """Leave the process group (if any); with ``wait``, once every process got here (not after an error)."""
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


def active() -> bool:
    """Whether a process group of more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes."""
    return not active() or dist.get_rank() == 0


def agree(value):
    """Rank 0's ``value`` on every process (``value`` itself with one process); e.g. a drawn seed."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass(frozen=True)
class Shards:
    """How the rows of each epoch are split over the processes of the group (see the module doc)."""

    rank: int  # this process, 0 .. world - 1
    world: int  # processes in the group
    seed: int  # the run's seed, from which the per-process noise is derived

    @classmethod
    def current(cls, seed: int) -> "Shards | None":
        """The running group's split (None without a group of two or more processes)."""
        if not active():
            return None
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), seed=int(seed))

    def rows(self, n_rows: int, gen: torch.Generator) -> torch.Tensor:
        """This process's rows of the epoch: int64, shape (ceil(n_rows / world),).

        Every process draws the same ``randperm(n_rows, generator=gen)`` (``gen`` is in the
        same state everywhere), pads it by wrapping to a multiple of ``world`` and takes slice
        ``rank``; together the slices cover every row (a few twice).
        """
        order = torch.randperm(n_rows, generator=gen)  # (R,)
        per = -(-n_rows // self.world)
        if per * self.world > n_rows:
            order = torch.cat([order, order[: per * self.world - n_rows]])  # (per * world,)
        return order[self.rank * per:(self.rank + 1) * per]  # (per,)

    def batch_size(self, batch: int) -> int:
        """Rows per process and step: ``ceil(batch / world)``, so the global batch stays ``batch``."""
        return max(1, -(-batch // self.world))

    def noise(self, stage: str, epoch: int) -> torch.Generator:
        """This process's noise generator of ``stage`` epoch ``epoch``: a pure function of (seed, stage, epoch, rank)."""
        words = [self.seed, STAGES.index(stage), epoch, self.rank]
        state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)

    def wrap(self, module: torch.nn.Module, dev: torch.device) -> torch.nn.Module:
        """``module`` in DistributedDataParallel (its weights broadcast from rank 0; gradients averaged)."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [dev.index if dev.index is not None else torch.cuda.current_device()] if dev.type == "cuda" else None
        # every parameter of GenotypeVAE and DiT1D (phenotype embedding included) gets a gradient each step
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=False)

    def total(self, values: np.ndarray, dev: torch.device) -> np.ndarray:
        """Sum of ``values`` (float, shape (k,)) over the processes, on every process."""
        t = torch.as_tensor(values, dtype=torch.float64, device=dev if dev.type == "cuda" else "cpu")  # (k,)
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.cpu().numpy()
