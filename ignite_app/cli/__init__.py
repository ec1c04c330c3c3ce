"""The command lines: ``ignite-app train | evaluate | predict | export | find-lr`` (and ``scripts/*.py``, thin
wrappers of the same).

- :mod:`~ignite_app.cli.train`, :mod:`~ignite_app.cli.evaluate`, :mod:`~ignite_app.cli.predict`,
  :mod:`~ignite_app.cli.export`, :mod:`~ignite_app.cli.find_lr`: the commands, their options generated from typed
  configs (:mod:`~ignite_app.cli.options`; ``--config FILE``: :mod:`~ignite_app.cli.config_file`);
- :mod:`~ignite_app.cli.launch`: one process, N spawned processes or torchrun's;
- :mod:`~ignite_app.cli.worker`: one training process, its outcome as an exit code.

Nothing heavy is imported here: ``--help`` and option errors answer before torch is.
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Sequence

# subcommand -> "module:function"; each function takes (argv, prog) and returns the exit code
COMMANDS = {
    "train": ("ignite_app.cli.train:main", "train an image classifier"),
    "evaluate": ("ignite_app.cli.evaluate:main", "evaluate a checkpoint: report, confusion matrix, CSV files"),
    "predict": ("ignite_app.cli.predict:main", "classify image files with a checkpoint or an exported model"),
    "export": ("ignite_app.cli.export:main", "export a checkpoint's model to ONNX or torch.export (.pt2), verified"),
    "find-lr": ("ignite_app.cli.find_lr:main", "find a learning rate (train.py's options)"),
}
PROG = "ignite-app"


def usage() -> str:
    lines = [f"usage: {PROG} COMMAND [options]   ({PROG} COMMAND --help lists a command's options)", "", "commands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ignite-app`` console script: dispatch to the command named first."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        (sys.stdout if args else sys.stderr).write(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        sys.stderr.write(f"{PROG}: error: unknown command {name!r}{hint} commands: {', '.join(COMMANDS)}\n")
        return 2
    module, _, function = COMMANDS[name][0].partition(":")
    return getattr(importlib.import_module(module), function)(rest, prog=f"{PROG} {name}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
