"""Where a process computes: ``--device auto|cpu|cuda`` resolved for this process (low in the import graph: the
evaluate and predict commands need it without importing the training wiring)."""

from __future__ import annotations

import ignite.distributed as idist
import torch

from ignite_app.errors import UsageError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cuda`` without a GPU is a usage error.

    With several processes on a GPU machine each one takes the GPU of its local rank.
    """
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or --device auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and idist.get_world_size() > 1:
        torch.cuda.set_device(idist.get_local_rank())
        return torch.device("cuda", idist.get_local_rank())
    return torch.device(name)
