"""Classify image files with a trained model: ``scripts/predict.py``.

The model, its classes, image size, channels and normalisation constants all come from the checkpoint, and each
file goes through the same decoding and resizing as in training (:mod:`ignite_app.data.transforms`, never augmented).
The output is CSV: ``path,label,confidence`` (the softmax probability of the label), plus
``label_2,confidence_2,...,label_K,confidence_K`` with ``--top-k K``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ignite_app.data.formats import IMAGE_EXTENSIONS, is_image_file
from ignite_app.data.imagecheck import bad_images_message
from ignite_app.data.scan import find_images
from ignite_app.data.transforms import ImageTransform, UnreadableImage
from ignite_app.errors import DataError
from ignite_app.evaluation import SavedModel
from ignite_app.runstate.checkpoint import CheckpointError


@dataclass(frozen=True)
class Prediction:
    """The ``k`` best classes of one image, best first, with their probabilities."""

    path: str
    labels: tuple[str, ...]
    confidences: tuple[float, ...]


def collect_inputs(inputs: Sequence[Path]) -> list[Path]:
    """The image files named by ``inputs``: files as given, folders searched recursively, in a fixed order.

    Raises:
        DataError: an input is missing, is not an image file, or is a folder without images.
    """
    files: list[Path] = []
    for path in map(Path, inputs):
        if path.is_dir():
            found = find_images(path)
            if not found:
                raise DataError(f"input folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif path.is_file():
            if not is_image_file(path):
                raise DataError(f"input {path} is not an image file; supported: {', '.join(IMAGE_EXTENSIONS)}")
            files.append(path)
        else:
            raise DataError(f"input {path}: no such file or folder")
    return files


class _Inputs(Dataset):
    """Files as ``(image, index)``; an unreadable file gives a blank image and ``-1 - index`` (noted, not raised)."""

    def __init__(self, paths: Sequence[Path], transform: ImageTransform) -> None:
        self.paths, self.transform = [str(p) for p in paths], transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        try:
            return self.transform(self.transform.load(self.paths[i])), i
        except UnreadableImage:
            # one bad file must not stop the batch; it is decoded again in the main process for the message
            shape = (self.transform.channels, self.transform.size, self.transform.size)
            return torch.zeros(shape), -1 - i


def predict(saved: SavedModel, files: Sequence[Path], top_k: int = 1, batch_size: int = 64,
            device: torch.device | None = None, num_workers: int = 0,
            on_bad_image: str = "error") -> tuple[list[Prediction], list[UnreadableImage]]:
    """Classify ``files`` in batches; returns the predictions (in file order) and the files left out.

    Raises:
        CheckpointError: the model was not trained on image files.
        DataError: unreadable files with ``on_bad_image="error"`` (nothing is predicted then).
    """
    if saved.config.dataset != "folder":
        raise CheckpointError(f"checkpoint {saved.path} was trained on --dataset {saved.config.dataset}, not on "
                              "image files; predict.py needs a model trained with --dataset folder (evaluate this "
                              "one with evaluate.py)")
    device = device or torch.device("cpu")
    channels, size, _ = saved.input_shape
    dataset = _Inputs(files, ImageTransform(size, channels, crop_pct=saved.config.crop_pct,
                                            interpolation=saved.config.interpolation))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    model = saved.model.to(device).eval()
    predictions: list[Prediction] = []
    bad: list[UnreadableImage] = []
    with torch.no_grad():
        for x, index in loader:
            probabilities = model(x.to(device)).float().softmax(dim=1)  # (B, C)
            scores, classes = probabilities.topk(top_k, dim=1)  # (B, K), best first
            for i, row_scores, row_classes in zip(index.tolist(), scores.tolist(), classes.tolist()):
                if i < 0:
                    bad.append(_reason(dataset, -1 - i))
                    continue
                predictions.append(Prediction(dataset.paths[i], tuple(saved.classes[c] for c in row_classes),
                                              tuple(row_scores)))
    if bad and on_bad_image == "error":
        raise DataError(bad_images_message(bad, "input image", listed_in="stderr"))
    return predictions, bad


def _reason(dataset: _Inputs, i: int) -> UnreadableImage:
    try:
        dataset.transform.load(dataset.paths[i])
    except UnreadableImage as e:
        return e
    return UnreadableImage(dataset.paths[i], "could not be decoded in a loader worker")


def predictions_csv(predictions: Sequence[Prediction], top_k: int = 1) -> str:
    """``path,label,confidence`` rows (header first), plus ``label_i,confidence_i`` for i = 2..top_k."""
    header = ["path", "label", "confidence"]
    for k in range(2, top_k + 1):
        header += [f"label_{k}", f"confidence_{k}"]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for p in predictions:
        writer.writerow([p.path, *(v for pair in zip(p.labels, (f"{c:.6f}" for c in p.confidences)) for v in pair)])
    return buffer.getvalue()
