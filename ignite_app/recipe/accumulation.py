"""Gradient accumulation (``--accumulate-steps K``): which batches of an epoch add up to one optimizer step.

An iteration is one batch, as without accumulation: ``--epoch-length``, ``--checkpoint-every``, ``--log-every`` and
``training_<iteration>.pt`` count batches. The batches of an epoch are cut into groups of K from its first batch
on; the last group of an epoch is shorter when K does not divide the epoch's length, so a group never crosses an
epoch's end (ignite's ``supervised_training_step`` groups by the global iteration instead, which would carry
gradients from one epoch's last batches into the next epoch's first step). Each batch's loss is divided by its
group's size, so a group of K batches of B samples steps as one batch of K x B would.

The trainer's step marks the last batch of each group with ``output["stepped"] = True``; checkpoints and signal
stops wait for such a batch (:func:`at_step_boundary`): the gradients accumulated so far are not part of a
checkpoint, so a run can only be saved, and resumed exactly, between two groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ignite.engine import Engine

STEPPED = "stepped"  # the trainer output's key: whether this batch ended with an optimizer step


@dataclass(frozen=True)
class GroupPosition:
    """Where a batch sits in its group."""

    first: bool  # the group's first batch: the gradients are cleared before it
    last: bool  # the group's last batch: the optimizer steps after it
    size: int  # the number of batches in the group


@dataclass(frozen=True)
class StepGroups:
    """Groups of ``size`` batches per optimizer step, counted from each epoch's first batch."""

    size: int = 1

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"a group has at least one batch, got {self.size}")

    def position(self, iteration: int, epoch_length: int) -> GroupPosition:
        """The group position of global ``iteration`` (1-based) in epochs of ``epoch_length`` batches."""
        p = (iteration - 1) % epoch_length  # 0-based position in the epoch
        start = p - p % self.size
        end = min(start + self.size, epoch_length)
        return GroupPosition(first=p == start, last=p + 1 == end, size=end - start)

    def steps_per_epoch(self, epoch_length: int) -> int:
        """Optimizer steps in an epoch of ``epoch_length`` batches."""
        return -(-epoch_length // self.size)

    def starts_group(self, engine: Engine, event: object = None) -> bool:
        """Event filter: true on the first batch of a group (where a per-step lr scheduler fires)."""
        return self.position(engine.state.iteration, engine.state.epoch_length).first


def at_step_boundary(engine: Engine) -> bool:
    """Whether the trainer's last iteration ended a group (always true without accumulation, or for an engine
    whose output does not say)."""
    output = engine.state.output
    return not (isinstance(output, Mapping) and output.get(STEPPED) is False)
