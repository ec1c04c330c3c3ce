"""``--config FILE``: options from a YAML or JSON file, checked like the command line's.

A key is an option's field name (``batch_size``, as in a run's ``config.json``) or its flag without the dashes
(``batch-size``, ``plugin``); its value goes through the option's type as a command-line value would: a number
written as text (PyYAML reads ``1e-3`` as a string) becomes the number, while a YAML boolean (``no``, ``on``) is
only accepted by an on/off option. The run-control keys ``run_name`` and ``resume`` are never taken from a file (a
run's ``config.json`` holds them): pass ``--run-name`` and ``--resume`` on the command line. Flags given on the
command line override the file's values.

Only the standard library and PyYAML (imported for YAML files only) are used: an error in the file answers before
torch is imported.
"""

from __future__ import annotations

import difflib
import json
import typing
from collections.abc import Mapping
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Any

from ignite_app.config import Options, flag_name

NEVER_FROM_FILE = ("run_name", "resume")  # what a file must never decide: which run folder is written


class ConfigFileError(ValueError):
    """The file cannot be read, or a key or value in it is not an option's; the message names the file."""


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping at the top of a YAML or JSON file (``.json``: JSON; anything else: YAML, which reads JSON too).

    Raises:
        ConfigFileError: missing, unreadable, not valid YAML/JSON, or not a mapping of option names to values.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigFileError(f"--config {path}: cannot be read ({e.strerror if isinstance(e, OSError) else e})") \
            from None
    try:
        if Path(path).suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except ValueError as e:  # json.JSONDecodeError
        raise ConfigFileError(f"--config {path}: not valid JSON ({e})") from None
    except Exception as e:  # yaml.YAMLError, without importing yaml for the except clause
        raise ConfigFileError(f"--config {path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigFileError(f"--config {path}: expected a mapping of option names to values, got a "
                              f"{type(data).__name__}")
    return dict(data)


def raw_values(cls: type[Options], data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``data``'s entries keyed by field name, run-control keys and values the app itself sets left out.

    Raises:
        ConfigFileError: a key that is no option of ``cls`` (with the closest valid one).
    """
    by_key = {}
    for f in fields(cls):
        by_key[f.name] = f
        by_key[flag_name(f.name, cls).lstrip("-")] = f
    values: dict[str, Any] = {}
    for key, value in data.items():
        f = by_key.get(str(key))
        if f is None:
            names = sorted({f.name for f in fields(cls) if f.metadata.get("cli", True)})
            closest = difflib.get_close_matches(str(key), names, n=1, cutoff=0.0)
            raise ConfigFileError(f"--config {path}: unknown key {key!r}" +
                                  (f"; the closest option is {closest[0]!r}" if closest else "") +
                                  f" (options: {', '.join(names)})")
        if f.name in NEVER_FROM_FILE:
            continue
        if not f.metadata.get("cli", True):  # set by the app (python_model...): only its default can be rebuilt
            if value != f.default:
                raise ConfigFileError(f"--config {path}: {f.name} is {value!r}, which no command line can "
                                      f"reproduce: {f.metadata['help']}")
            continue
        values[f.name] = value
    return values


def convert(cls: type[Options], name: str, value: Any, path: Path) -> Any:
    """A file's value for field ``name``, converted as the command line converts a flag's text.

    Raises:
        ConfigFileError: a value of the wrong kind; the message names the file, the key and what is expected.
    """
    f: Field = cls.__dataclass_fields__[name]
    hint = typing.get_type_hints(cls)[name]
    args = typing.get_args(hint)
    where = f"--config {path}: {name}: "
    if value is None:
        if type(None) in args or (f.default is None and f.default is not MISSING):
            return None
        raise ConfigFileError(f"{where}needs a value, got null")
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigFileError(f"{where}expected a list of strings, got {value!r}")
        return tuple(value)
    base = next((a for a in args if a is not type(None)), hint)
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigFileError(f"{where}expected true or false, got {value!r}")
        return value
    if isinstance(value, bool):  # YAML reads yes/no/on/off (unquoted) as booleans
        raise ConfigFileError(f"{where}expected a {base.__name__}, got the boolean {value!r} (YAML reads unquoted "
                              "yes, no, on and off as booleans: quote the value)")
    if base in (int, float):
        if isinstance(value, str) or (base is float and isinstance(value, int)):
            try:
                return base(value)  # what argparse's type= does with the flag's text ("1e-3" included)
            except ValueError:
                pass
        elif isinstance(value, base):
            return value
        raise ConfigFileError(f"{where}expected a{'n' if base is int else ''} {base.__name__}, got {value!r}")
    if isinstance(value, (int, float)):  # a number where text is expected: the text a command line would pass
        return str(value)
    if not isinstance(value, str):
        raise ConfigFileError(f"{where}expected a string, got {value!r}")
    return value


def config_file_values(cls: type[Options], path: Path) -> dict[str, Any]:
    """The options a config file sets, by field name, converted (:func:`convert`) but not yet checked: the checks
    run when the options are created, on the file's and the command line's values together.

    Raises:
        ConfigFileError: see :func:`read_config_file`, :func:`raw_values` and :func:`convert`.
    """
    raw = raw_values(cls, read_config_file(path), path)
    return {name: convert(cls, name, value, path) for name, value in raw.items()}
