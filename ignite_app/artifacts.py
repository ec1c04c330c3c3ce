"""Exported models (``scripts/export.py``): what their metadata says and how to run them.

An artifact is one file: ONNX (``.onnx``, run with onnxruntime) or a ``torch.export`` archive (``.pt2``, loaded with
``torch.export.load``), holding the saved model (preprocessing + network): uint8 images (B, C, H, W) in, logits
(B, classes) out. Its metadata, one JSON document (ONNX ``metadata_props`` key ``ignite_app``; the ``.pt2`` archive's
extra file ``ignite_app.json``), says everything a consumer needs without this package:

- ``classes``: the class names, index i = class i; ``input``: shape, dtype, layout;
- ``preprocessing``: how to turn an image file into the input (decoding, colour, resize, interpolation, crop) and
  the normalisation the model applies itself;
- ``source`` and ``versions``: the checkpoint it came from, the app's and torch's versions.

:func:`load_artifact` checks a file before anything runs on it: its kind, its metadata, and that its output has one
score per class; the export command verifies its own output through the same loader.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ignite_app.errors import UsageError

__all__ = ["ARTIFACT_FORMATS", "METADATA_KEY", "PT2_METADATA_FILE", "Artifact", "ArtifactError", "load_artifact",
           "artifact_from_bytes", "format_of", "require_export_extra"]

ARTIFACT_FORMATS = ("onnx", "pt2")
METADATA_KEY = "ignite_app"  # ONNX metadata_props key of the JSON document
PT2_METADATA_FILE = "ignite_app.json"  # the same document inside a .pt2 archive
METADATA_VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"  # a .pt2 archive is a zip file
_EXTRA_MODULES = {"onnx": ("onnx", "onnxscript", "onnxruntime")}  # what exporting needs; running: onnxruntime


class ArtifactError(UsageError):
    """An exported model cannot be used: unreadable, not made by this app, or inconsistent (the CLIs exit 2)."""


def require_export_extra(fmt: str, modules: tuple[str, ...] | None = None) -> None:
    """Refuse at once, with the install command, when the packages of the ``export`` extra are missing."""
    import importlib.util

    missing = [m for m in (modules or _EXTRA_MODULES.get(fmt, ())) if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"the {fmt} format needs the packages of the export extra (missing: {', '.join(missing)}); "
                         "install them with: pip install -e .[export]")


def format_of(path: Path) -> str | None:
    """The format a file name asks for: ``onnx`` or ``pt2`` from its suffix, None for another suffix."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in ARTIFACT_FORMATS else None


@dataclass(frozen=True)
class Artifact:
    """A loaded exported model: its metadata and a function from uint8 images to logits.

    Attributes:
        source: where it was read from (a path, or what is being verified).
        format: ``onnx`` or ``pt2``.
        metadata: the JSON document (see the module docstring).
        run: ``run(images)``: uint8 numpy (B, C, H, W) -> float32 numpy logits (B, classes).
    """

    source: str
    format: str
    metadata: dict[str, Any]
    run: Callable[[np.ndarray], np.ndarray]

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.metadata["classes"])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        _, c, h, w = self.metadata["input"]["shape"]
        return int(c), int(h), int(w)

    @property
    def dataset(self) -> str:
        return str(self.metadata["preprocessing"]["dataset"])

    @property
    def crop_fraction(self) -> float:
        """The centre crop's share of the resized short side (image folders; 1 for the other datasets)."""
        return float(self.metadata["preprocessing"].get("crop_fraction") or 1.0)


def load_artifact(path: Path, threads: int | None = None) -> Artifact:
    """Read and check an exported model file; ``threads``: onnxruntime's intra-op threads (default: its own choice).

    Raises:
        ArtifactError: the file is missing, of another kind than its name says, truncated or corrupt, not exported
            by this app, or its output does not have one score per class of its metadata.
    """
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"--model-file {path}: {'no such file' if not path.exists() else 'is a folder'}")
    fmt = format_of(path)
    if fmt is None:
        raise ArtifactError(f"--model-file {path}: the name must end in .onnx or .pt2 (the two formats "
                            "scripts/export.py writes)")
    return artifact_from_bytes(path.read_bytes(), fmt, str(path), threads)


def artifact_from_bytes(data: bytes, fmt: str, source: str, threads: int | None = None) -> Artifact:
    """:func:`load_artifact` for bytes in memory (``source`` names them in messages)."""
    is_zip = data[:4] == _ZIP_MAGIC
    if fmt == "onnx" and is_zip:
        raise ArtifactError(f"{source} is a torch.export archive (.pt2), not an ONNX model: rename it to .pt2")
    if fmt == "pt2" and not is_zip:
        raise ArtifactError(f"{source} is not a torch.export archive (.pt2 files are zip archives; it starts with "
                            f"{data[:8]!r}): truncated, corrupt, or another kind of file")
    artifact = _load_onnx(data, source, threads) if fmt == "onnx" else _load_pt2(data, source)
    _check_output(artifact)
    return artifact


def _metadata(text: str | None, source: str) -> dict[str, Any]:
    if text is None:
        raise ArtifactError(f"{source} holds no {METADATA_KEY} metadata: it was not exported by scripts/export.py "
                            "(its classes and input handling are unknown); export the checkpoint with it")
    try:
        metadata = json.loads(text)
        version, classes, shape = metadata["version"], metadata["classes"], metadata["input"]["shape"]
        if not classes or len(shape) != 4:
            raise ValueError("no classes, or an input shape that is not (batch, C, H, W)")
    except (ValueError, KeyError, TypeError) as e:
        raise ArtifactError(f"{source}: its {METADATA_KEY} metadata is malformed ({type(e).__name__}: {e})") from None
    if version != METADATA_VERSION:
        raise ArtifactError(f"{source} has metadata version {version}, this app reads version {METADATA_VERSION}; "
                            "export the checkpoint again with this version")
    return metadata


def _load_onnx(data: bytes, source: str, threads: int | None = None) -> Artifact:
    require_export_extra("onnx", ("onnxruntime",))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: the session's warnings are about graph optimisations
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own pybind classes (InvalidProtobuf, Fail...)
        raise ArtifactError(f"{source} is not a readable ONNX model: truncated, corrupt, or another kind of file "
                            f"({type(e).__name__}: {str(e)[:200]})") from None
    metadata = _metadata(session.get_modelmeta().custom_metadata_map.get(METADATA_KEY), source)
    name = session.get_inputs()[0].name

    def run(images: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(images, dtype=np.uint8)})[0]

    return Artifact(source, "onnx", metadata, run)


def _load_pt2(data: bytes, source: str) -> Artifact:
    import torch

    extra = {PT2_METADATA_FILE: ""}
    try:
        program = torch.export.load(io.BytesIO(data), extra_files=extra)
    except (zipfile.BadZipFile, RuntimeError, KeyError, ValueError, EOFError) as e:
        raise ArtifactError(f"{source} is not a readable torch.export archive: truncated or corrupt "
                            f"({type(e).__name__}: {str(e)[:200]})") from None
    metadata = _metadata(extra[PT2_METADATA_FILE] or None, source)
    module = program.module()

    def run(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))).float().numpy()

    return Artifact(source, "pt2", metadata, run)


def _check_output(artifact: Artifact) -> None:
    """Run one blank image: the output must be (1, number of classes) — the metadata belongs to this model."""
    blank = np.zeros((1, *artifact.input_shape), dtype=np.uint8)
    try:
        out = artifact.run(blank)
    except Exception as e:
        raise ArtifactError(f"{artifact.source} does not run on its metadata's input, uint8 "
                            f"{(1, *artifact.input_shape)} ({type(e).__name__}: {str(e)[:200]}); the model and "
                            "its metadata do not belong together") from None
    if out.shape != (1, len(artifact.classes)):
        raise ArtifactError(f"{artifact.source}: the model gives {out.shape[-1]} scores per image but its metadata "
                            f"names {len(artifact.classes)} classes; the model and its metadata do not belong "
                            "together: export the checkpoint again")
