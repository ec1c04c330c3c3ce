"""An exponential moving average of the weights (``--ema-decay D``, ``--ema-warmup-steps N``), checkpointable.

ignite's ``EMAHandler`` cannot go into a training checkpoint as it is: it has no ``state_dict``, and the state of
its warm-up scheduler holds an object that ``torch.load(weights_only=True)`` refuses. :class:`ModelEma` is the
small replacement: its state is the averaged weights and the number of updates, and the warm-up is a function of
that number, so a resumed run continues the average exactly.

After each optimizer step ``t`` (1, 2, ...) every parameter becomes ``ema = d_t * ema + (1 - d_t) * w`` with
``d_t = D * min(1, t / N)`` (``d_t = D`` without warm-up): early on, when the weights move fast, the average follows
them closely. Buffers (batch-norm statistics) are copied from the model; before each validation every process
takes rank 0's (:func:`ignite_app.app.attach_buffer_sync`), so that every rank holds the same average.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


class ModelEma:
    """The moving average of ``model``'s weights, held in ``module`` (a copy of ``model``, in eval mode).

    Args:
        model: the model to average (the bare model, not a ``DistributedDataParallel`` wrapper).
        decay: D, in (0, 1).
        warmup_steps: N; 0 for none.
    """

    def __init__(self, model: nn.Module, decay: float, warmup_steps: int = 0) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay, self.warmup_steps = decay, warmup_steps
        self.updates = 0

    def decay_at(self, step: int) -> float:
        """``d_t`` of update ``step`` (1-based)."""
        return self.decay * min(1.0, step / self.warmup_steps) if self.warmup_steps else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average in ``model``'s current weights (call once per optimizer step)."""
        self.updates += 1
        weight = 1.0 - self.decay_at(self.updates)
        for averaged, current in zip(self.module.parameters(), model.parameters()):
            averaged.lerp_(current.detach(), weight)  # averaged + weight * (current - averaged)
        for averaged, current in zip(self.module.buffers(), model.buffers()):
            averaged.copy_(current)

    def state_dict(self) -> dict[str, Any]:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
