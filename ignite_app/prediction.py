"""Classify image files with a trained model: ``scripts/predict.py``.

The model, its classes, image size, channels and normalisation constants all come from the checkpoint, and each
file goes through the same decoding and resizing as in training (:mod:`ignite_app.transforms`, never augmented).
The output is CSV: ``path,label,confidence`` (the softmax probability of the label), plus
``label_2,confidence_2,...,label_K,confidence_K`` with ``--top-k K``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ignite_app.checkpoint import CheckpointError
from ignite_app.config import BAD_IMAGE_POLICIES, DEVICES
from ignite_app.errors import DataError, UsageError
from ignite_app.evaluation import SavedModel, load_saved_model
from ignite_app.fileio import atomic_write_text
from ignite_app.folder import find_images
from ignite_app.imagecheck import bad_images_message
from ignite_app.transforms import IMAGE_EXTENSIONS, ImageTransform, UnreadableImage, is_image_file

PROG = "predict.py"


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
    dataset = _Inputs(files, ImageTransform(size, channels, saved.mean, saved.std))
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


def build_parser() -> argparse.ArgumentParser:
    """The options of ``scripts/predict.py``."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Classify image files with a model trained with --dataset folder. Prints CSV: "
        "path,label,confidence (the probability of the label), or writes it to --output.")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                        help="image files, or folders searched recursively for " + ", ".join(IMAGE_EXTENSIONS))
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="PATH",
                        help="best_model.pt or a training checkpoint of a --dataset folder run")
    parser.add_argument("--output", type=Path, default=None, metavar="FILE.csv",
                        help="write the CSV to this file instead of printing it")
    parser.add_argument("--top-k", type=int, default=1, metavar="K",
                        help="also give the 2nd..K-th best labels: columns label_2,confidence_2,... (default: 1)")
    parser.add_argument("--batch-size", type=int, default=64, metavar="N", help="images per batch (default: 64)")
    parser.add_argument("--num-workers", type=int, default=0, metavar="N",
                        help="decoding worker processes (default: 0)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto picks cuda when it is available (default: auto)")
    parser.add_argument("--on-bad-image", choices=BAD_IMAGE_POLICIES, default="error",
                        help="an input that cannot be decoded stops everything before any output (error) or is "
                        "left out of the output and listed on stderr (skip) (default: error)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``scripts/predict.py``. Returns the exit code: 0, or 2 for anything refused."""
    from ignite_app.app import resolve_device

    parser = build_parser()
    args = parser.parse_args(argv)
    for flag, value, low in (("--top-k", args.top_k, 1), ("--batch-size", args.batch_size, 1),
                             ("--num-workers", args.num_workers, 0)):
        if value < low:
            parser.error(f"{flag} must be >= {low}, got {value}")
    if args.output is not None and args.output.is_dir():
        parser.error(f"--output {args.output} is a folder; pass the CSV file to write, e.g. "
                     f"{args.output / 'predictions.csv'}")
    try:
        saved = load_saved_model(args.checkpoint)
        if args.top_k > len(saved.classes):
            parser.error(f"--top-k {args.top_k}: the model has {len(saved.classes)} classes; pass at most "
                         f"{len(saved.classes)}")
        files = collect_inputs(args.inputs)
        predictions, skipped = predict(saved, files, args.top_k, args.batch_size, resolve_device(args.device),
                                       args.num_workers, args.on_bad_image)
    except UsageError as e:
        parser.exit(2, f"{PROG}: error: {e}\n")
    for bad in skipped:
        print(f"{PROG}: skipped unreadable image {bad.path}: {bad.reason}", file=sys.stderr)
    text = predictions_csv(predictions, args.top_k)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(args.output, text)
        print(f"wrote {len(predictions)} predictions to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
