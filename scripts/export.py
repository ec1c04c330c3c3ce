#!/usr/bin/env python
"""Export a trained model to ONNX or torch.export (.pt2), verified: ``python scripts/export.py --help``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ignite_app.cli.export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
