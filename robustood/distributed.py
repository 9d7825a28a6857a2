"""torch.distributed: the process group ``torchrun`` describes, shards by sample index, and
gathers of per-sample values.

Launched with ``torchrun --nproc_per_node N``, every process runs the same evaluation on
its own share of the inputs. A share is a contiguous block of *whole batches* (the batches
one process would make), so each input is computed in the same batch as in a
single-process run and no input is repeated (torch's ``DistributedSampler`` pads by
repeating inputs). Per-sample values are then gathered in index order to every rank, which
computes every metric from the pooled values; rank 0 alone writes.

Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) everything here is a no-op
for one process.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from .errors import RobustoodError

__all__ = [
    "World",
    "all_gather_cat",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "broadcast_object",
    "init_from_env",
    "is_main",
    "shard_batches",
    "unwrap",
    "world",
]

TIMEOUT_ENV = "ROBUSTOOD_DIST_TIMEOUT_MIN"
"""Minutes a collective waits for the other ranks before the job stops (a rank that died); default 30."""


def _timeout() -> datetime.timedelta:
    text = os.environ.get(TIMEOUT_ENV, "30").strip()
    try:
        minutes = float(text)
    except ValueError:
        minutes = math.nan
    if not (math.isfinite(minutes) and minutes > 0):
        raise RobustoodError(f"{TIMEOUT_ENV} must be a positive number of minutes, got {text!r}")
    return datetime.timedelta(minutes=minutes)


@dataclass(frozen=True)
class World:
    """This process's place: ``rank`` of ``size`` processes, ``local_rank`` on its node, the
    ``backend`` of the process group (``None`` for a single process)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where tensors go for a collective: the local GPU under NCCL, else the CPU."""
        return torch.device("cuda", torch.cuda.current_device()) if self.backend == "nccl" else torch.device("cpu")


def world() -> World:
    """The current process group (a single process when none is initialised)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return World()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local, str(dist.get_backend()))


def is_main() -> bool:
    """Whether this process writes (rank 0, or the only process)."""
    return world().is_main


def env_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset or unreadable)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def init_from_env(device: str | torch.device | None = None) -> World:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``); nothing for a single process or a group already joined.

    The backend is NCCL when ``device`` is CUDA (or ``auto`` finds CUDA) and gloo otherwise.
    Under NCCL each process uses one GPU, the one of its local rank
    (:func:`~robustood.utils.select_device` maps ``cuda`` to it); a ``cuda:N`` naming
    another GPU is refused, as it would put two ranks on one GPU.
    """
    import torch.distributed as dist

    from .utils import select_device

    if dist.is_available() and dist.is_initialized():
        return world()
    size = env_world_size()
    if size <= 1:
        return World()
    if not dist.is_available():
        raise RobustoodError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RobustoodError(
            f"WORLD_SIZE={size} but {', '.join(missing)} is not set; start the job with torchrun "
            "(torchrun --nproc_per_node N -m robustood ...)"
        )
    dev = select_device(device)
    backend = "gloo"
    if dev.type == "cuda":
        mine = select_device("cuda")
        if dev != mine:
            raise RobustoodError(
                f"device {dev} under torchrun: rank {os.environ['RANK']} uses {mine} (its LOCAL_RANK); "
                "give --device cuda and each rank takes its own GPU"
            )
        torch.cuda.set_device(mine)
        backend = "nccl" if dist.is_nccl_available() else "gloo"
    dist.init_process_group(backend, timeout=_timeout())
    atexit.register(shutdown)  # a group left open at exit can abort the process under gloo
    return world()


def shard_batches(n: int, batch_size: int, w: World | None = None) -> range:
    """This rank's inputs of ``n``: a contiguous block of whole batches (batch-aligned), so each
    input lands in the same batch as in one process. Ranks past the last batch get none."""
    w = w or world()
    batches = -(-n // batch_size) if n else 0
    lo = batches * w.rank // w.size
    hi = batches * (w.rank + 1) // w.size
    return range(min(lo * batch_size, n), min(hi * batch_size, n))


_DTYPES = (
    torch.float32,
    torch.float64,
    torch.float16,
    torch.bfloat16,
    torch.int64,
    torch.int32,
    torch.uint8,
    torch.bool,
)
_MAX_DIMS = 6


def all_gather_cat(t: torch.Tensor, w: World | None = None) -> torch.Tensor:
    """Every rank's ``t`` concatenated along dim 0 in rank order, on every rank (on ``t``'s device).

    Ranks may hold different numbers of rows; a rank with none may hold any empty tensor
    (it takes the others' trailing shape and dtype). One process: ``t`` itself.
    """
    w = w or world()
    if not w.distributed:
        return t
    import torch.distributed as dist

    if t.dtype not in _DTYPES or t.dim() > _MAX_DIMS:
        raise RobustoodError(f"cannot gather a {t.dtype} tensor of {t.dim()} dimensions")
    dev = w.comm_device
    rows = int(t.shape[0]) if t.dim() else 0
    header = torch.full((3 + _MAX_DIMS,), -1, dtype=torch.int64)
    header[0], header[1], header[2] = rows, _DTYPES.index(t.dtype), t.dim()
    header[3 : 3 + t.dim()] = torch.tensor(t.shape, dtype=torch.int64)
    headers = [torch.empty_like(header, device=dev) for _ in range(w.size)]
    dist.all_gather(headers, header.to(dev))
    info = [h.cpu().tolist() for h in headers]
    full = [h for h in info if h[0] > 0]
    if not full:
        return t
    ref = full[0]
    dtype, trailing = _DTYPES[ref[1]], tuple(ref[4 : 3 + ref[2]])
    if any(h[1] != ref[1] or tuple(h[4 : 3 + h[2]]) != trailing for h in full):
        raise RobustoodError("ranks hold per-sample values of different shapes or types; they cannot be pooled")
    src = t.detach().to(dev, dtype) if rows else torch.zeros((0, *trailing), dtype=dtype, device=dev)
    wire = torch.uint8 if dtype == torch.bool else dtype  # gloo does not gather bool tensors on every version
    longest = max(h[0] for h in info)
    padded = torch.zeros((longest, *trailing), dtype=wire, device=dev)
    padded[:rows] = src.reshape(rows, *trailing).to(wire)
    parts = [torch.empty_like(padded) for _ in range(w.size)]
    dist.all_gather(parts, padded)
    out = torch.cat([p[: h[0]] for p, h in zip(parts, info, strict=True)])
    return out.to(dtype).to(t.device)


def all_reduce_sum(values: list[float] | list[int], w: World | None = None) -> list[float]:
    """Element-wise sums over ranks (float64; exact for counts below 2⁵³)."""
    w = w or world()
    if not w.distributed:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=w.comm_device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def any_rank(flag: bool, w: World | None = None) -> bool:
    """Whether ``flag`` holds on any rank (every rank must call it), so all ranks take the same
    branch through the collectives that follow; ``flag`` itself in one process."""
    w = w or world()
    return bool(flag) if not w.distributed else all_reduce_sum([float(bool(flag))], w)[0] > 0


def broadcast_object(obj: Any, w: World | None = None) -> Any:
    """Rank 0's ``obj`` on every rank (plain rows and dicts between the job's own processes)."""
    w = w or world()
    if not w.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if w.is_main else None]
    dist.broadcast_object_list(box, src=0, device=w.comm_device if w.backend == "nccl" else None)
    return box[0]


def barrier(w: World | None = None) -> None:
    """Wait for every rank (no-op for one process)."""
    w = w or world()
    if w.distributed:
        import torch.distributed as dist

        if w.backend == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


@contextlib.contextmanager
def main_first(w: World | None = None) -> Iterator[bool]:
    """Rank 0 runs the block first (e.g. fills a cache); the others wait, then run it. Yields
    whether this rank is rank 0."""
    w = w or world()
    if not w.is_main:
        barrier(w)
    try:
        yield w.is_main
    finally:
        if w.is_main:
            barrier(w)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (``model`` itself otherwise):
    attacks run on it, because a pass through the wrapper expects a gradient-synchronising
    backward pass on every rank."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def shutdown() -> None:
    """Leave the process group, if one was joined here."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
