"""The validation loss: ignite's ``Loss``, except that a batch without samples adds nothing."""

from __future__ import annotations

from collections.abc import Sequence

from ignite.metrics import Loss
from torch import Tensor


class ValidationLoss(Loss):
    """The mean loss over every validation sample, as ignite's ``Loss``.

    A batch can hold no sample when every image of it was left out as unreadable (``--on-bad-image skip``); the
    mean loss of no sample is NaN, and ignite's ``Loss`` would add ``NaN * 0`` to its sum, so such a batch is
    passed over.
    """

    def update(self, output: Sequence[Tensor]) -> None:
        if len(output[1]) == 0:
            return
        super().update(output)
