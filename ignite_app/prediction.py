"""Classify image files with a trained model: ``scripts/predict.py``.

The model, its classes, image size, channels, validation crop and normalisation constants all come from the
checkpoint, or from an exported model's metadata (:mod:`ignite_app.artifacts`), and each file goes through the
pipeline that validation used in training (:mod:`ignite_app.data.pipeline`: decoded, its short side resized,
centre-cropped, never augmented). The output is CSV: ``path,label,confidence`` (the softmax probability of the
label), plus ``label_2,confidence_2,...,label_K,confidence_K`` with ``--top-k K`` and one ``p_<class>`` column per
class with ``--probabilities``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ignite_app.data.badimages import bad_images_message
from ignite_app.data.formats import IMAGE_EXTENSIONS, is_image_file
from ignite_app.data.pipeline import BadImage, FileTable, ImageDataset, ImageLoader
from ignite_app.data.scan import find_images
from ignite_app.data.transforms import EvalTransform, source_short_side
from ignite_app.errors import DataError
from ignite_app.evaluation import SavedModel
from ignite_app.runstate.checkpoint import CheckpointError

if TYPE_CHECKING:
    from ignite_app.artifacts import Artifact


@dataclass(frozen=True)
class Prediction:
    """The ``k`` best classes of one image, best first, with their probabilities."""

    path: str
    labels: tuple[str, ...]
    confidences: tuple[float, ...]
    probabilities: tuple[float, ...] = ()  # every class's, in class-index order (--probabilities)


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
            files += map(Path, found)
        elif path.is_file():
            if not is_image_file(path):
                raise DataError(f"input {path} is not an image file; supported: {', '.join(IMAGE_EXTENSIONS)}")
            files.append(path)
        else:
            raise DataError(f"input {path}: no such file or folder")
    return files


def input_dataset(input_shape: tuple[int, int, int], crop_fraction: float, files: Sequence[Path],
                  on_bad_image: str | None = "error") -> ImageDataset:
    """``files`` in a model's validation view (``input_shape`` (C, H, W), centre crop ``crop_fraction``): item i is
    ``(uint8 image, i)``; an unreadable file is left out of its batch and carried by it
    (:class:`~ignite_app.data.pipeline.Batch`), never raised in a worker (``on_bad_image=None``: raised)."""
    channels, size, _ = input_shape
    table = FileTable.from_paths([str(p) for p in files], range(len(files)))
    return ImageDataset(table, ImageLoader(channels, source_short_side(size, crop_fraction)),
                        EvalTransform(size, crop_fraction), on_bad_image)


def predict(saved: SavedModel, files: Sequence[Path], top_k: int = 1, batch_size: int = 64,
            device: torch.device | None = None, num_workers: int = 0, on_bad_image: str = "error",
            probabilities: bool = False) -> tuple[list[Prediction], list[BadImage]]:
    """Classify ``files`` in batches; returns the predictions (in file order) and the files left out.

    Raises:
        CheckpointError: the model was not trained on image files.
        DataError: with ``on_bad_image="error"``, some files could not be decoded (all of them are named).
    """
    if saved.config.dataset != "folder":
        raise CheckpointError(f"checkpoint {saved.path} was trained on --dataset {saved.config.dataset}, not on "
                              "image files; predict.py needs a model trained with --dataset folder (evaluate this "
                              "one with evaluate.py)")
    device = device or torch.device("cpu")
    model = saved.model.to(device).eval()
    dataset = input_dataset(saved.input_shape, saved.crop_fraction, files, on_bad_image)
    return _predict(lambda x: model(x.to(device, non_blocking=True)), saved.classes, dataset, top_k, batch_size,
                    num_workers, on_bad_image, probabilities, pin_memory=device.type == "cuda")


def predict_artifact(artifact: Artifact, files: Sequence[Path], top_k: int = 1, batch_size: int = 64,
                     num_workers: int = 0, on_bad_image: str = "error",
                     probabilities: bool = False) -> tuple[list[Prediction], list[BadImage]]:
    """:func:`predict` with an exported model (``--model-file``): its metadata gives the classes and the input.

    Raises:
        ArtifactError: the model was not trained on image files.
        DataError: as :func:`predict`.
    """
    from ignite_app.artifacts import ArtifactError

    if artifact.dataset != "folder":
        raise ArtifactError(f"{artifact.source} was trained on --dataset {artifact.dataset}, not on image files; "
                            "predict.py needs a model trained with --dataset folder")
    dataset = input_dataset(artifact.input_shape, artifact.crop_fraction, files, on_bad_image)
    return _predict(lambda x: torch.from_numpy(artifact.run(x.numpy())), artifact.classes, dataset, top_k,
                    batch_size, num_workers, on_bad_image, probabilities)


def _predict(forward: Callable[[Tensor], Tensor], class_names: Sequence[str], dataset: ImageDataset, top_k: int,
             batch_size: int, num_workers: int, on_bad_image: str, probabilities: bool,
             pin_memory: bool = False) -> tuple[list[Prediction], list[BadImage]]:
    """Classify the images of ``dataset`` with ``forward`` (uint8 images -> logits)."""
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                        collate_fn=dataset.collate_fn)
    predictions: list[Prediction] = []
    bad: list[BadImage] = []
    with torch.no_grad():
        for batch in loader:
            bad += batch.unreadable
            x, index = batch
            if not len(index):
                continue
            probs = forward(x).float().softmax(dim=1).cpu()  # (B, C)
            scores, classes = probs.topk(top_k, dim=1)  # (B, K), best first
            for row, (i, row_scores, row_classes) in enumerate(zip(index.tolist(), scores.tolist(),
                                                                    classes.tolist())):
                predictions.append(Prediction(dataset.table.path(i), tuple(class_names[c] for c in row_classes),
                                              tuple(row_scores), tuple(probs[row].tolist()) if probabilities else ()))
    if bad and on_bad_image == "error":
        raise DataError(bad_images_message(bad, "input image", listed_in="stderr"))
    return predictions, bad


def predictions_csv(predictions: Sequence[Prediction], top_k: int = 1,
                    class_names: Sequence[str] | None = None) -> str:
    """``path,label,confidence`` rows (header first), plus ``label_i,confidence_i`` for i = 2..top_k, and with
    ``class_names`` (the predictions made with ``probabilities``) one ``p_<class>`` column per class."""
    header = ["path", "label", "confidence"]
    for k in range(2, top_k + 1):
        header += [f"label_{k}", f"confidence_{k}"]
    header += [f"p_{name}" for name in class_names or ()]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for p in predictions:
        writer.writerow([p.path, *(v for pair in zip(p.labels, (f"{c:.6f}" for c in p.confidences)) for v in pair),
                         *(f"{c:.6f}" for c in (p.probabilities if class_names else ()))])
    return buffer.getvalue()
