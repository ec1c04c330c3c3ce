#!/usr/bin/env python
"""Find a learning rate with ignite's FastaiLRFinder: ``python scripts/find_lr.py --help`` lists the options."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from ignite_app.cli.find_lr import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
