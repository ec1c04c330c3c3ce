"""``python -m ignite_app.cli COMMAND ...``: the same as the ``ignite-app`` command."""

import sys

from ignite_app.cli import main

sys.exit(main())
