"""Plugins: ``--plugin FILE.py|package.module`` registers things, ``--handler FILE.py:FUNCTION`` attaches handlers.

A ``--plugin`` module is imported before the options are checked, so the models, datasets and optimizers it
registers (:mod:`ignite_app.registry`) are names like any other; every process of a run, and every command that
rebuilds a run from its ``config.json`` (resume, evaluate, predict), imports it again.

A ``--handler`` function is called with the built :class:`~ignite_app.app.App` before the run starts, and attaches whatever
it likes to ``app.trainer`` / ``app.evaluator``::

    # my_handlers.py
    from ignite.engine import Events

    def every_other_epoch(app):
        @app.trainer.on(Events.EPOCH_COMPLETED(every=2))
        def hello(trainer):
            print("epoch", trainer.state.epoch)

    $ python scripts/train.py --handler my_handlers.py:every_other_epoch

Each process of a distributed run loads the file (or module) itself, so its top-level code runs once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ignite_app.errors import UsageError

@dataclass(frozen=True)
class Plugin:
    """A ``--handler`` function, with the spec that named it and the file that defines it (for error messages)."""

    spec: str
    function: Callable[[Any], None]
    file: str | None

    def __call__(self, app: Any) -> None:
        self.function(app)

    def where(self, error: BaseException) -> str:
        """`` (FILE line N)``: the innermost line of this plugin's file in ``error``'s traceback, or ``""``."""
        line = None
        tb = error.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self.file:
                line = tb.tb_lineno
            tb = tb.tb_next
        return f" ({self.file} line {line})" if line is not None else ""


def culprit(error: BaseException, plugins: Sequence[Plugin]) -> Plugin | None:
    """The plugin whose code raised ``error`` (the innermost frame of the traceback that is a plugin's), if any."""
    files = {p.file: p for p in plugins if p.file is not None}
    found = None
    tb = error.__traceback__
    while tb is not None:
        found = files.get(tb.tb_frame.f_code.co_filename, found)
        tb = tb.tb_next
    return found


def _fail(spec: str, problem: str, flag: str = "--handler") -> UsageError:
    return UsageError(f"{flag} {spec!r}: {problem}")


def _load_file(spec: str, target: str, flag: str = "--handler") -> ModuleType:
    path = Path(target)
    if not path.is_file():
        raise _fail(spec, f"file {path} does not exist (give a path to a .py file, relative to the current "
                          "folder, or a module name such as mypackage.handlers)", flag)
    # A unique module name per file: two plugin files both called handlers.py must not replace each other.
    name = f"ignite_app_plugin_{path.stem}_{hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]}"
    if name in sys.modules:  # loaded already in this process (the CLI checks the specs before building)
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise _fail(spec, f"{path} cannot be imported as Python code", flag)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:
        del sys.modules[name]
        raise _fail(spec, f"importing {path} failed: {type(e).__name__}: {e}", flag) from e
    return module


def _load_module(spec: str, target: str, flag: str = "--handler") -> ModuleType:
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        if e.name is not None and (target == e.name or target.startswith(e.name + ".")):
            raise _fail(spec, f"no module named {target!r} (is its package installed, or on PYTHONPATH? for a "
                              "file, give its path ending in .py)", flag) from None
        raise _fail(spec, f"importing module {target!r} failed: {e}", flag) from e
    except Exception as e:
        raise _fail(spec, f"importing module {target!r} failed: {type(e).__name__}: {e}", flag) from e


def _is_file(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def import_plugins(specs: Sequence[str]) -> list[ModuleType]:
    """Import each ``--plugin`` (``FILE.py`` or ``package.module``), once per process, in order.

    Raises:
        UsageError: a file that does not exist, a module that cannot be found, or an import that fails; the
            message names the plugin and the error.
    """
    return [_load_file(spec, spec, "--plugin") if _is_file(spec) else _load_module(spec, spec, "--plugin")
            for spec in specs]


def load_plugin(spec: str) -> Plugin:
    """The function that ``spec`` (``FILE.py:FUNCTION`` or ``package.module:FUNCTION``) names.

    Raises:
        UsageError: the message says which part is wrong: the form, the file or module, the function, or its
            signature (it must accept one argument, the ``App``).
    """
    target, sep, function = spec.rpartition(":")
    if not sep or not target or not function:
        raise _fail(spec, "expected FILE.py:FUNCTION or package.module:FUNCTION")
    module = _load_file(spec, target) if _is_file(target) else _load_module(spec, target)
    if not hasattr(module, function):
        defined = sorted(n for n, v in vars(module).items()
                         if callable(v) and not n.startswith("_") and getattr(v, "__module__", None) == module.__name__)
        raise _fail(spec, f"{target} has no {function!r}; it defines: {', '.join(defined) or 'no functions'}")
    plugin = getattr(module, function)
    if not callable(plugin):
        raise _fail(spec, f"{target}.{function} is a {type(plugin).__name__}, not a function")
    try:
        inspect.signature(plugin).bind(object())
    except TypeError:
        raise _fail(spec, f"{function}{inspect.signature(plugin)} must accept exactly one argument, the App "
                          f"(def {function}(app): ...)") from None
    except ValueError:  # builtins without a signature: let the call decide
        pass
    return Plugin(spec, plugin, getattr(module, "__file__", None))


def load_plugins(specs: Sequence[str]) -> list[Plugin]:
    """:func:`load_plugin` for each spec, in order."""
    return [load_plugin(spec) for spec in specs]
