"""``ignite-app export`` (``scripts/export.py``): a checkpoint's model as one ONNX or ``.pt2`` file, verified.

The options are the typed :class:`ExportConfig`; ``--help`` and option errors answer before torch is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ignite_app.artifacts import ARTIFACT_FORMATS, format_of
from ignite_app.cli.options import build_parser, parse_options, preload_plugins
from ignite_app.config import ConfigError, Options, option
from ignite_app.runstate.fileio import output_path_problem

PROG = "export.py"
DESCRIPTION = ("Export a trained model for deployment: one ONNX (onnxruntime) or torch.export (.pt2) file that takes "
               "uint8 images (B, C, H, W) of the training size and does its own normalisation, with the classes and "
               "input handling in its metadata. The export is run beside the checkpoint's model on validation "
               "images and only written when their logits agree within --tolerance.")
DEFAULT_TOLERANCE = 1e-4  # ignite_app.export.DEFAULT_TOLERANCE (repeated here: that module imports torch)


@dataclass(frozen=True)
class ExportConfig(Options):
    """The options of ``scripts/export.py``."""

    checkpoint: Path = option(None, "best_model.pt or a training checkpoint", metavar="PATH", required=True)
    output: Path = option(None, "the file to write, FILE.onnx or FILE.pt2 (replaced atomically)", metavar="FILE",
                          required=True)
    format: str | None = option(None, "onnx (runs with onnxruntime, any language) or pt2 (torch.export.load)",
                                choices=ARTIFACT_FORMATS, default_text="from the --output suffix")
    data: tuple[Path, ...] = option((), "verify on these image files or folders instead of the training run's "
                                    "validation images (repeatable)", metavar="PATH", flag="--data")
    verify_images: int = option(256, "images to verify on (0 = all)", low=0, metavar="N")
    tolerance: float = option(DEFAULT_TOLERANCE, "the largest accepted |exported - checkpoint| logit difference, "
                              "times max(1, the largest |logit|)", low=0.0, low_open=True)
    batch_size: int = option(64, "images per verification batch", low=1, metavar="N")
    plugins: tuple[str, ...] = option((), "FILE.py or package.module to import first (the training run's own "
                                      "plugins are imported anyway)", metavar="PLUGIN", flag="--plugin")

    def __post_init__(self) -> None:
        super().__post_init__()
        suffix = format_of(self.output)
        if self.format is None and suffix is None:
            raise ConfigError(f"--output {self.output}: name the file FILE.onnx or FILE.pt2, or pass --format")
        if self.format is not None and suffix is not None and suffix != self.format:
            raise ConfigError(f"--output {self.output} ends in .{suffix} but --format is {self.format}; name it "
                              f"{self.output.with_suffix('.' + self.format)}")
        object.__setattr__(self, "format", self.format or suffix)


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    """Entry point of ``scripts/export.py``: 0 when written, 1 when the verification refused it, 2 for usage errors."""
    preload_plugins(argv, prog)
    parser = build_parser(ExportConfig, prog, DESCRIPTION)
    args = parse_options(ExportConfig, argv, parser)
    problem = output_path_problem(args.output, folder=False)
    if problem:
        parser.exit(2, f"{prog}: error: --output {args.output} {problem}; pass the file to write\n")

    from ignite_app.artifacts import require_export_extra
    from ignite_app.errors import UsageError

    try:
        require_export_extra(str(args.format))  # before the checkpoint is loaded: a missing package is named first
        from ignite_app.evaluation import load_saved_model
        from ignite_app.export import ExportRefused, export_model, verification_images

        saved = load_saved_model(args.checkpoint)
        images = verification_images(saved, args.data, args.verify_images)
        result = export_model(saved, str(args.format), args.output, images, args.tolerance, args.batch_size)
    except UsageError as e:
        parser.exit(2, f"{prog}: error: {e}\n")
    except ExportRefused as e:
        print(f"{prog}: refused: {e}", file=sys.stderr)
        return 1
    print(f"wrote {result.path} ({result.format}, {result.size_bytes / 1e6:.2f} MB): {len(saved.classes)} classes, "
          f"input uint8 (batch, {', '.join(map(str, saved.input_shape))})")
    print(f"verified on {result.num_images} images: max |exported - checkpoint| logit difference "
          f"{result.max_difference:.3g} (tolerance {result.tolerance:g} x {result.scale:.3g}), "
          f"{result.same_labels} of {result.num_images} labels identical")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
