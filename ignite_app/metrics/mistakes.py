"""The most confident wrong predictions of a validation, exact across processes (``--log-mistakes K``).

A model that is wrong *and sure of it* points at mislabelled images, ambiguous classes or a shortcut it learned;
the K most confident mistakes are the first images to look at. :class:`ConfidentMistakes` keeps, per process, its
K best candidates (the batch's raw images included, so nothing has to be loaded again), then gathers every
process's candidates and keeps the K best of all: the same K images, in the same order, as one process finds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ignite.distributed as idist
import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced
from torch import Tensor

from ignite_app.metrics.scores import all_gather_rows
from ignite_app.models.preprocess import to_uint8

__all__ = ["MISTAKES", "ConfidentMistakes", "Mistakes"]

MISTAKES = "mistakes"  # default name of the metric: engine.state.metrics[MISTAKES] holds the Mistakes


@dataclass(frozen=True)
class Mistakes:
    """The K most confident wrong predictions, most confident first (ties: the lower validation index first).

    Attributes:
        images: (K, C, H, W) uint8, the raw pixels as the loader gave them (float images in [0, 1] scaled to
            0..255), on the CPU.
        true: (K,) int64 true classes.
        predicted: (K,) int64 predicted classes.
        confidence: (K,) float32 probability of the predicted class.
        index: (K,) int64 position of each image in the validation set.
    """

    images: Tensor
    true: Tensor
    predicted: Tensor
    confidence: Tensor
    index: Tensor

    def __len__(self) -> int:
        return len(self.index)

    def state_dict(self) -> dict[str, Tensor]:
        """The tensors, loadable with ``weights_only=True`` (the report logger's checkpoint state carries them)."""
        return {name: getattr(self, name).clone() for name in _FIELDS}

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Tensor]) -> Mistakes:
        return cls(**{name: state[name] for name in _FIELDS})


_FIELDS = ("images", "true", "predicted", "confidence", "index")


def _most_confident(confidence: Tensor, index: Tensor, k: int) -> Tensor:
    """Positions of the ``k`` highest confidences, ties by the lower index: a total order, so the choice does not
    depend on the order in which the candidates arrived."""
    by_index = index.argsort(stable=True)
    by_confidence = confidence[by_index].argsort(descending=True, stable=True)
    return by_index[by_confidence][:k]


class ConfidentMistakes(Metric):
    """The ``k`` wrong predictions of highest confidence over one run of the engine; `compute()` gives `Mistakes`.

    ``update((probs, y, images))`` takes the batch's probabilities (B, C), targets (B,) and raw images
    (B, C, H, W). A sample's validation index is its position in the stream of its process mapped as
    :class:`~ignite_app.data.samplers.ShardSampler` splits the validation set (rank r gets r, r + W, ...), so that
    ties in confidence are broken the same way on any number of processes. Per batch only the wrong predictions'
    images are copied, and at most ``k`` are kept.

    Args:
        k: how many mistakes to keep (at least 1).
        output_transform: maps the engine's output to ``(probs, y, images)``; the default reads the app
            evaluator's output (:class:`~ignite_app.engines.EvalOutput`).
    """

    def __init__(self, k: int, output_transform: Callable[[Any], Any] = lambda out: (out.probs, out.y, out.images),
                 device: str | torch.device = torch.device("cpu")) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}; it is how many mistakes to keep")
        self.k = k
        super().__init__(output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._seen = 0
        self._kept: dict[str, Tensor] | None = None  # the fields of Mistakes, at most k rows

    @reinit__is_reduced
    def update(self, output: Sequence[Tensor]) -> None:
        probs, y, images = output
        n = len(y)
        confidence, predicted = probs.detach().float().max(dim=1)  # (B,)
        wrong = (predicted != y).cpu()
        position = self._seen + torch.arange(n)
        self._seen += n
        if not wrong.any():
            return
        batch = {"images": to_uint8(images.detach()[wrong.to(images.device)].cpu()), "true": y.cpu()[wrong].long(),
                 "predicted": predicted.cpu()[wrong], "confidence": confidence.cpu()[wrong],
                 "index": idist.get_rank() + idist.get_world_size() * position[wrong]}
        if self._kept is not None:
            batch = {name: torch.cat([self._kept[name], batch[name]]) for name in _FIELDS}
        keep = _most_confident(batch["confidence"], batch["index"], self.k)
        self._kept = {name: value[keep] for name, value in batch.items()}

    def compute(self) -> Mistakes:
        """The ``k`` most confident mistakes of all processes together (every rank gets them)."""
        kept = self._kept or _nothing()
        if idist.get_world_size() > 1:
            kept = _gather(kept)
        keep = _most_confident(kept["confidence"], kept["index"], self.k)
        return Mistakes(**{name: value[keep] for name, value in kept.items()})


def _nothing() -> dict[str, Tensor]:
    """The candidates of a process that has seen no mistake."""
    empty = {name: torch.empty(0, dtype=torch.int64) for name in ("true", "predicted", "index")}
    return {"images": torch.empty(0, 0, 0, 0, dtype=torch.uint8), "confidence": torch.empty(0), **empty}


def _gather(kept: dict[str, Tensor]) -> dict[str, Tensor]:
    """Every rank's candidates; a rank without any still takes part (its image shape is learnt from the others)."""
    images = kept["images"]
    shapes = idist.all_gather(torch.tensor([len(images), *images.shape[1:]] if len(images) else [0, 0, 0, 0]))
    shapes = shapes.view(-1, 4)
    if not len(images):
        images = torch.empty(0, *shapes[:, 1:].max(dim=0).values.tolist(), dtype=torch.uint8)
    rows = shapes[:, 0].tolist()
    return {name: all_gather_rows(images if name == "images" else kept[name], rows) for name in _FIELDS}

