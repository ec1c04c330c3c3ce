"""Export a saved model for deployment without this package: ONNX or ``torch.export`` (``scripts/export.py``).

What is exported is the saved model itself, preprocessing included (:class:`~ignite_app.models.Classifier`): uint8
images (B, C, H, W) of the training input size in, logits out, the float conversion and normalisation inside, and
a dynamic batch dimension. The file carries its metadata (:mod:`ignite_app.artifacts`).

Nothing is left on disk unless it is right: the exported bytes are loaded back (onnxruntime for ONNX,
``torch.export.load`` for ``.pt2``) through the same loader ``scripts/predict.py --model-file`` uses, run on
validation images beside the checkpoint's model, and written (atomically) only when the largest difference between
the two models' logits is within the tolerance. TorchScript is not used: the pinned torch deprecates it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ignite_app.artifacts import METADATA_KEY, METADATA_VERSION, PT2_METADATA_FILE, artifact_from_bytes
from ignite_app.data.transforms import source_short_side
from ignite_app.evaluation import SavedModel, evaluation_data
from ignite_app.models.preprocess import to_uint8
from ignite_app.runstate.fileio import atomic_write

__all__ = ["DEFAULT_TOLERANCE", "ExportRefused", "ExportResult", "export_model", "model_metadata",
           "verification_images"]

# The largest |exported - checkpoint| difference of any logit accepted, relative to the largest |logit| (or 1):
# the exporters reorder float32 arithmetic (fused kernels, other convolution algorithms), so the logits differ by
# rounding, ~1e-6 for the small CNN and a ResNet-18 (the tests measure it); a wrong graph differs by whole units.
DEFAULT_TOLERANCE = 1e-4
PROTOBUF_LIMIT = 2**31 - 1  # bytes: one protobuf message (a single-file ONNX model) cannot be larger


class ExportRefused(Exception):
    """The exported model does not reproduce the checkpoint's (nothing was written); the CLI exits with 1."""


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote and how closely it reproduces the checkpoint's model."""

    path: Path
    format: str
    size_bytes: int
    max_difference: float  # the largest |exported - checkpoint| logit over the verification images
    tolerance: float  # times `scale`: the largest difference accepted
    scale: float  # max(1, the largest |logit| of the checkpoint's model)
    num_images: int
    same_labels: int  # images whose arg-max label is the same in both models


def model_metadata(saved: SavedModel, fmt: str) -> dict[str, Any]:
    """The artifact's metadata: classes, input, how to prepare an image, where it came from, versions."""
    from importlib.metadata import PackageNotFoundError, version

    c, h, w = saved.input_shape
    folder = saved.config.dataset == "folder"
    try:
        app_version = version("ignite_app")
    except PackageNotFoundError:
        app_version = "unknown"
    return {
        "version": METADATA_VERSION,
        "classes": list(saved.classes),
        "input": {"shape": ["batch", c, h, w], "dtype": "uint8", "layout": "NCHW", "range": [0, 255]},
        "output": "logits (batch, classes); softmax gives the probabilities",
        "preprocessing": {
            "dataset": saved.config.dataset,
            # how scripts/predict.py and training turn an image file into the input (image folders only; other
            # datasets give (C, H, W) uint8 images themselves)
            "decode": "JPEG: torchvision (libjpeg-turbo), others: Pillow; EXIF orientation applied" if folder else None,
            "color": ("RGB" if c == 3 else "L (Pillow's luma)") if folder else None,
            # the short side resized to ceil(size / crop_fraction), then the centre (h, w) crop
            "resize_short_side": source_short_side(h, saved.crop_fraction) if folder else None,
            "interpolation": "bilinear, antialiased" if folder else None,
            "crop": [h, w] if folder else None,
            "crop_fraction": saved.crop_fraction if folder else None,
            "normalization": {"mean": list(saved.mean), "std": list(saved.std), "formula": "(x / 255 - mean) / std",
                              "inside_model": True},
        },
        "source": {"checkpoint": saved.path.name, "model": saved.config.model, "format": fmt},
        "versions": {"ignite_app": app_version, "torch": torch.__version__.split("+")[0]},
    }


def verification_images(saved: SavedModel, data: Sequence[Path] = (), limit: int = 256) -> Tensor:
    """Up to ``limit`` images (0: all) as uint8 (N, C, H, W): from ``data`` (image files or folders, decoded as
    training decoded them), else the training run's validation images."""
    if data:
        from ignite_app.prediction import collect_inputs, input_dataset

        files = collect_inputs(data)
        files = files[:limit] if limit else files
        inputs = input_dataset(saved.input_shape, saved.crop_fraction, files, on_bad_image=None)  # raises if unreadable
        return torch.stack([inputs[i][0] for i in range(len(inputs))])
    dataset, _ = evaluation_data(saved, saved.config)
    count = min(limit, len(dataset)) if limit else len(dataset)
    return torch.stack([to_uint8(dataset[i][0]) for i in range(count)])


def export_model(saved: SavedModel, fmt: str, output: Path, images: Tensor, tolerance: float = DEFAULT_TOLERANCE,
                 batch_size: int = 64) -> ExportResult:
    """Export ``saved``'s model to ``output`` in ``fmt`` (``onnx`` or ``pt2``), verified on ``images``.

    Raises:
        ArtifactError: the model is too large for one ONNX file, or the export cannot be read back.
        ExportRefused: the exported model's logits differ from the checkpoint's by more than ``tolerance``.
    """
    from ignite_app.artifacts import ArtifactError

    model = saved.model.cpu().eval()
    size = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    if fmt == "onnx" and size > PROTOBUF_LIMIT:
        raise ArtifactError(f"the model's weights take {size / 2**30:.2f} GiB, over the 2 GiB protobuf limit of a "
                            "single-file ONNX model; export it with --format pt2")
    example = images[:2] if len(images) >= 2 else torch.zeros(2, *saved.input_shape, dtype=torch.uint8)
    metadata = json.dumps(model_metadata(saved, fmt), indent=1)
    data = _onnx_bytes(model, example, metadata) if fmt == "onnx" else _pt2_bytes(model, example, metadata)
    artifact = artifact_from_bytes(data, fmt, f"the exported {fmt} model")
    worst, scale, same = 0.0, 1.0, 0
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            expected = model(batch).float().numpy()  # (B, classes)
            got = artifact.run(batch.numpy())
            worst = max(worst, float(np.abs(got - expected).max()))
            scale = max(scale, float(np.abs(expected).max()))
            same += int((got.argmax(axis=1) == expected.argmax(axis=1)).sum())
    if not worst <= tolerance * scale:  # NaN is refused too
        raise ExportRefused(f"the exported {fmt} model differs from the checkpoint's by up to {worst:.3g} in the "
                            f"logits of {len(images)} images, over the tolerance {tolerance:g} x {scale:.3g} (the "
                            f"largest |logit|); {same} of {len(images)} labels agree; {output} was not written")
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(output, lambda f: f.write(data))
    return ExportResult(output, fmt, len(data), worst, tolerance, scale, len(images), same)


def _batch_dimension() -> dict[int, Any]:
    return {0: torch.export.Dim("batch", min=1)}


def _pt2_bytes(model: nn.Module, example: Tensor, metadata: str) -> bytes:
    program = torch.export.export(model, (example,), dynamic_shapes=(_batch_dimension(),))
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={PT2_METADATA_FILE: metadata})
    return buffer.getvalue()


def _onnx_bytes(model: nn.Module, example: Tensor, metadata: str) -> bytes:
    import onnx

    program = torch.onnx.export(model, (example,), dynamic_shapes=(_batch_dimension(),), dynamo=True,
                                external_data=False, input_names=["images"], output_names=["logits"],
                                verbose=False)
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
