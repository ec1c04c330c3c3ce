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

from ignite_app.cli.config_file import NEVER_FROM_FILE, ConfigFileError, config_file_values, read_config_file
from ignite_app.config import ConfigError, Options, flag_name
from ignite_app.plugins import import_plugins

O = TypeVar("O", bound=Options)

CONFIG_FLAG = "--config"
_CONFIG_DEST = "_config_file"  # not a field of any options class


def build_parser(cls: type[Options], prog: str, description: str,
                 groups: Mapping[str, Sequence[str]] | None = None,
                 config_file: bool = False) -> argparse.ArgumentParser:
    """One argument per command-line field of ``cls``: its type, choices, default and help come from the field.

    Args:
        cls: the options dataclass.
        prog: the command's name in messages.
        description: the first paragraph of ``--help``.
        groups: how ``--help`` groups the options (title -> field names); fields in no group are listed first.
        config_file: add ``--config FILE`` (:mod:`ignite_app.cli.config_file`), read by :func:`parse_options`.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=_HelpFormatter)
    if config_file:
        parser.add_argument(CONFIG_FLAG, dest=_CONFIG_DEST, metavar="FILE", type=Path, default=None,
                            help="read options from a YAML or JSON file (a run's config.json works as is); flags on "
                                 f"the command line override it; {' and '.join(NEVER_FROM_FILE)} are never read "
                                 "from a file")
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
    return parse_known_options(cls, argv, parser, **fixed)[0]


def parse_known_options(cls: type[O], argv: Sequence[str] | None, parser: argparse.ArgumentParser,
                        **fixed: Any) -> tuple[O, dict[str, Any]]:
    """:func:`parse_options`, and the parsed values of the parser's arguments that are no field of ``cls`` (a
    command's own extra arguments), by destination.

    With ``--config FILE`` (a parser built with ``config_file=True``), the file's values replace the defaults and
    the command line's flags override them; a repeatable flag given on the command line replaces the file's list.
    """
    from_file = _config_file_values(cls, argv, parser)
    for action in parser._actions:  # an option the file gives is no longer required on the command line
        if action.dest in from_file:
            action.required = False
    parser.set_defaults(**{k: v for k, v in from_file.items() if not isinstance(v, tuple)})
    values = vars(parser.parse_args(argv))
    values.pop(_CONFIG_DEST, None)
    extra = {k: values.pop(k) for k in list(values) if k not in cls.__dataclass_fields__}
    for name, value in values.items():
        if isinstance(cls.__dataclass_fields__[name].default, tuple):  # repeatable: None when absent
            values[name] = tuple(value) if value is not None else from_file.get(name, ())
    try:
        return cls(**values, **fixed), extra
    except ConfigError as e:
        parser.error(str(e) + _from_file_note(cls, str(e), from_file, argv, parser))
        raise  # unreachable: parser.error exits


def _config_file_path(argv: Sequence[str] | None) -> Path | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument(CONFIG_FLAG, type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    return known.config


def _config_file_values(cls: type[Options], argv: Sequence[str] | None,
                        parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The values of ``--config FILE`` when the parser takes one and ``argv`` gives it; a bad file exits with 2."""
    if CONFIG_FLAG not in parser._option_string_actions:
        return {}
    path = _config_file_path(argv)
    if path is None:
        return {}
    try:
        return config_file_values(cls, path)
    except ConfigFileError as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits


def _from_file_note(cls: type[Options], message: str, from_file: Mapping[str, Any], argv: Sequence[str] | None,
                    parser: argparse.ArgumentParser) -> str:
    """" (from --config FILE)" when the refused option's value came from the file rather than the command line."""
    for name in from_file:
        flag = flag_name(name, cls)
        if message.startswith(flag + " ") and flag not in (argv or []):
            return f" (from {CONFIG_FLAG} {_config_file_path(argv)})"
    return ""


def preload_plugins(argv: Sequence[str] | None, prog: str) -> tuple[str, ...]:
    """Import the ``--plugin`` modules named in ``argv`` before the real parser is built, so that the names they
    register appear in ``--help`` and pass validation; returns them. A plugin that fails exits with code 2."""
    pre = argparse.ArgumentParser(prog=prog, add_help=False)
    pre.add_argument("--plugin", action="append", default=[])
    pre.add_argument(CONFIG_FLAG, type=Path, default=None)
    known, _ = pre.parse_known_args(argv)
    from ignite_app.errors import UsageError

    plugins = known.plugin
    if not plugins and known.config is not None:  # the file's plugins, unless the command line gives its own
        try:
            data = read_config_file(known.config)
        except ConfigFileError:
            data = {}  # the parser reports the file's problem, with the usage
        listed = data.get("plugins", data.get("plugin"))
        plugins = [listed] if isinstance(listed, str) else [p for p in listed or () if isinstance(p, str)]
    try:
        import_plugins(plugins)
    except UsageError as e:
        pre.exit(2, f"{prog}: error: {e}\n")
    return tuple(plugins)
