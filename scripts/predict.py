#!/usr/bin/env python
"""Classify image files with a trained model: ``python scripts/predict.py --help`` lists the options."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ignite_app.cli.predict import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
