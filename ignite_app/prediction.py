"""Classify image files with a trained model: ``scripts/predict.py``.

The model, its classes, image size, channels and normalisation constants all come from the checkpoint, or from an
exported model's metadata (:mod:`ignite_app.artifacts`), and each file goes through the same decoding and resizing
as in training (:mod:`ignite_app.data.transforms`, never augmented). The output is CSV: ``path,label,confidence``
(the softmax probability of the label), plus ``label_2,confidence_2,...,label_K,confidence_K`` with ``--top-k K``
and one ``p_<class>`` column per class with ``--probabilities``.
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
from torch.utils.data import DataLoader, Dataset

from ignite_app.data.formats import IMAGE_EXTENSIONS, is_image_file
from ignite_app.data.imagecheck import bad_images_message
from ignite_app.data.scan import find_images
from ignite_app.data.transforms import ImageTransform, UnreadableImage
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
            device: torch.device | None = None, num_workers: int = 0, on_bad_image: str = "error",
            probabilities: bool = False) -> tuple[list[Prediction], list[UnreadableImage]]:
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
    model = saved.model.to(device).eval()
    return _predict(lambda x: model(x.to(device)), saved.classes, saved.input_shape, files, top_k, batch_size,
                    num_workers, on_bad_image, probabilities, pin_memory=device.type == "cuda")


def predict_artifact(artifact: Artifact, files: Sequence[Path], top_k: int = 1, batch_size: int = 64,
                     num_workers: int = 0, on_bad_image: str = "error",
                     probabilities: bool = False) -> tuple[list[Prediction], list[UnreadableImage]]:
    """:func:`predict` with an exported model (``--model-file``): its metadata gives the classes and the input.

    Raises:
        ArtifactError: the model was not trained on image files.
        DataError: as :func:`predict`.
    """
    from ignite_app.artifacts import ArtifactError

    if artifact.dataset != "folder":
        raise ArtifactError(f"{artifact.source} was trained on --dataset {artifact.dataset}, not on image files; "
                            "predict.py needs a model trained with --dataset folder")
    return _predict(lambda x: torch.from_numpy(artifact.run(x.numpy())), artifact.classes, artifact.input_shape,
                    files, top_k, batch_size, num_workers, on_bad_image, probabilities)


def _predict(forward: Callable[[Tensor], Tensor], class_names: Sequence[str], input_shape: tuple[int, int, int],
             files: Sequence[Path], top_k: int, batch_size: int, num_workers: int, on_bad_image: str,
             probabilities: bool, pin_memory: bool = False) -> tuple[list[Prediction], list[UnreadableImage]]:
    """Decode ``files`` for ``input_shape`` and classify them with ``forward`` (uint8 images -> logits)."""
    channels, size, _ = input_shape
    dataset = _Inputs(files, ImageTransform(size, channels))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory)
    predictions: list[Prediction] = []
    bad: list[UnreadableImage] = []
    with torch.no_grad():
        for x, index in loader:
            probs = forward(x.to(torch.uint8)).float().softmax(dim=1).cpu()  # (B, C)
            scores, classes = probs.topk(top_k, dim=1)  # (B, K), best first
            for row, (i, row_scores, row_classes) in enumerate(zip(index.tolist(), scores.tolist(),
                                                                    classes.tolist())):
                if i < 0:
                    bad.append(_reason(dataset, -1 - i))
                    continue
                predictions.append(Prediction(dataset.paths[i], tuple(class_names[c] for c in row_classes),
                                              tuple(row_scores), tuple(probs[row].tolist()) if probabilities else ()))
    if bad and on_bad_image == "error":
        raise DataError(bad_images_message(bad, "input image", listed_in="stderr"))
    return predictions, bad


def _reason(dataset: _Inputs, i: int) -> UnreadableImage:
    try:
        dataset.transform.load(dataset.paths[i])
    except UnreadableImage as e:
        return e
    return UnreadableImage(dataset.paths[i], "could not be decoded in a loader worker")


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
