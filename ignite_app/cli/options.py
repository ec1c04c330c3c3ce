"""Command lines generated from typed option dataclasses (:class:`ignite_app.config.Options`).

Every command (train, evaluate, predict) declares its options once, as fields with :func:`ignite_app.config.option`;
this module turns them into an ``argparse`` parser (type, choices, default, help, flag) and turns the parsed values
back into the validated dataclass. A value the dataclass refuses exits with code 2 and names the flag. Only the
standard library and the config module are imported: ``--help`` and option errors answer before torch is imported.
"""

from __future__ import annotations

import argparse
import textwrap
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any, TypeVar

from ignite_app.config import ConfigError, Options, flag_name
from ignite_app.plugins import import_plugins

O = TypeVar("O", bound=Options)


def build_parser(cls: type[Options], prog: str, description: str,
                 groups: Mapping[str, Sequence[str]] | None = None) -> argparse.ArgumentParser:
    """One argument per command-line field of ``cls``: its type, choices, default and help come from the field.

    Args:
        cls: the options dataclass.
        prog: the command's name in messages.
        description: the first paragraph of ``--help``.
        groups: how ``--help`` groups the options (title -> field names); fields in no group are listed first.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    group_of: dict[str, argparse._ArgumentGroup] = {}
    for title, names in (groups or {}).items():
        group = parser.add_argument_group(title)
        group_of.update(dict.fromkeys(names, group))
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if f.metadata.get("cli", True):
            args, kwargs = _argument(cls, f, hints[f.name])
            group_of.get(f.name, parser).add_argument(*args, **kwargs)
    return parser


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's help layout, without line breaks at hyphens: names such as ``fashion-mnist`` stay whole."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)


def _argument(cls: type[Options], f: Field, hint: Any) -> tuple[list[str], dict[str, Any]]:
    meta = f.metadata
    default = f.default if f.default is not MISSING else None
    help_text = meta["help"]
    registry = meta.get("registry")
    if registry is not None:  # the names registered now, plugins' included (they are imported before the parser)
        help_text += f"; registered: {registry.help_text()}"
    shown = meta.get("default_text") or default
    base, element = _base_type(hint)
    kwargs: dict[str, Any] = {}
    if base is tuple:
        if meta.get("positional"):
            return [f.name], {"nargs": "+", "type": element, "metavar": meta.get("metavar"), "help": help_text}
        kwargs.update(action="append", default=None, type=element, help=f"{help_text} (default: none)")
    else:
        shown_text = "" if shown is None or meta.get("required") else f" (default: {shown})"
        kwargs.update(default=default, help=help_text + shown_text)
        if base is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = base
            if meta.get("choices"):
                kwargs["choices"] = meta["choices"]
    if meta.get("metavar") and base is not bool:
        kwargs["metavar"] = meta["metavar"]
    if meta.get("required"):
        kwargs["required"] = True
    return [flag_name(f.name, cls)], {"dest": f.name, **kwargs}


def _base_type(hint: object) -> tuple[type, type]:
    """(the argparse kind, the element type of a tuple): ``tuple[Path, ...]`` -> (tuple, Path)."""
    if typing.get_origin(hint) is tuple:
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return tuple, (args[0] if args and args[0] in (str, Path) else str)
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    base = args[0] if args else hint
    return (base if base in (bool, int, float, str, Path) else str), str  # type: ignore[return-value]


def parse_options(cls: type[O], argv: Sequence[str] | None, parser: argparse.ArgumentParser,
                  **fixed: Any) -> O:
    """Parse ``argv`` into a validated ``cls``; a value it refuses exits with code 2 and names the flag.

    Args:
        fixed: values of fields that are not on the command line.
    """
    values = vars(parser.parse_args(argv))
    for name, value in values.items():
        if isinstance(cls.__dataclass_fields__[name].default, tuple):  # repeatable: None when absent
            values[name] = tuple(value or ())
    try:
        return cls(**values, **fixed)
    except ConfigError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits


def preload_plugins(argv: Sequence[str] | None, prog: str) -> tuple[str, ...]:
    """Import the ``--plugin`` modules named in ``argv`` before the real parser is built, so that the names they
    register appear in ``--help`` and pass validation; returns them. A plugin that fails exits with code 2."""
    pre = argparse.ArgumentParser(prog=prog, add_help=False)
    pre.add_argument("--plugin", action="append", default=[])
    known, _ = pre.parse_known_args(argv)
    from ignite_app.errors import UsageError

    try:
        import_plugins(known.plugin)
    except UsageError as e:
        pre.exit(2, f"{prog}: error: {e}\n")
    return tuple(known.plugin)
