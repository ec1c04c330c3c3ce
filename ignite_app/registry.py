"""Registries: the one place where the names of models, datasets and optimizers come from.

Every name a user can pass to ``--model``, ``--dataset`` or ``--optimizer`` is an entry of a :class:`Registry`,
the built-in ones included. Built-in entries are registered lazily, as a ``module:attribute`` string imported on
first use, so that ``--help`` and option errors answer without importing torch. A user adds an entry from Python
or from a ``--plugin`` file with the decorators::

    from ignite_app import register_model

    @register_model("tiny")
    def tiny(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        ...

A registry can also own a *source*: a prefix such as ``torchvision:`` whose names are listed and resolved by
functions of their own (the model zoos).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownName(ValueError):
    """A name that no registry entry or source knows; the message lists what is registered."""


@dataclass(frozen=True)
class Source:
    """Names under a prefix (``torchvision:resnet18``), listed and resolved by functions of the source."""

    prefix: str
    list_names: Callable[[], Iterable[str]]  # the names after the prefix
    resolve: Callable[[str], Any]  # the name after the prefix -> the entry; None for an unknown name (raise
    # UnknownName, with the reason, for a name the source knows but cannot serve)
    describe: str  # a few words for messages: what the names are


class Registry(Generic[T]):
    """Named entries of one kind, each registered once: an object, or a lazy ``"module:attribute"`` reference.

    Args:
        kind: what the entries are, for messages ("model").
        flag: the command-line flag that takes the names ("--model").
        list_hint: how a user lists every name (sources can hold thousands), for messages.
    """

    def __init__(self, kind: str, flag: str, list_hint: str | None = None) -> None:
        self.kind, self.flag, self.list_hint = kind, flag, list_hint
        self._entries: dict[str, T | str] = {}
        self._sources: dict[str, Source] = {}

    def register(self, name: str, entry: T | str | None = None, *, replace: bool = False) -> Any:
        """Register ``entry`` under ``name``; without ``entry``, a decorator that registers what it decorates.

        ``entry`` may be a ``"module:attribute"`` string, imported when the entry is first used.

        Raises:
            ValueError: the name is empty, contains ``:`` (reserved for sources), or is registered already
                (pass ``replace=True`` to replace it on purpose).
        """
        if not isinstance(name, str) or not name.strip() or ":" in name or name != name.strip():
            raise ValueError(f"a {self.kind} name must be a non-empty string without ':' or surrounding spaces, "
                             f"got {name!r}")
        if entry is None:
            def decorate(obj: T) -> T:
                self._add(name, obj, replace)
                return obj

            return decorate
        self._add(name, entry, replace)
        return entry

    def _add(self, name: str, entry: T | str, replace: bool) -> None:
        if name in self._entries and not replace and not _same_definition(self._entries[name], entry):
            raise ValueError(f"{self.kind} {name!r} is registered already; pick another name, or pass "
                             "replace=True to replace it")
        self._entries[name] = entry

    def add_source(self, source: Source) -> None:
        """Serve every ``PREFIX:NAME`` through ``source``."""
        self._sources[source.prefix] = source

    def names(self) -> list[str]:
        """The registered names, in registration order (sources' names are not listed: see :meth:`all_names`)."""
        return list(self._entries)

    def sources(self) -> list[Source]:
        return list(self._sources.values())

    def all_names(self) -> list[str]:
        """The registered names, then every source's ``PREFIX:NAME`` (imports the sources' packages)."""
        return [*self._entries, *(f"{s.prefix}:{n}" for s in self._sources.values() for n in s.list_names())]

    def __contains__(self, name: object) -> bool:
        """Whether ``name`` is registered, or has a known source's prefix (checked in full by :meth:`get`)."""
        if not isinstance(name, str):
            return False
        prefix, sep, _ = name.partition(":")
        return name in self._entries or (bool(sep) and prefix in self._sources)

    def get(self, name: str) -> T:
        """The entry of ``name``, imported if it was registered lazily.

        Raises:
            UnknownName: nothing is registered under ``name``; the message lists the names and the closest ones.
        """
        prefix, sep, rest = name.partition(":")
        if sep and prefix in self._sources:
            entry = self._sources[prefix].resolve(rest)
            if entry is None:
                raise self.unknown(name)
            return entry
        if name not in self._entries:
            raise self.unknown(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def unknown(self, name: str, candidates: Iterable[str] | None = None) -> UnknownName:
        """The error for an unknown ``name``: what is registered, the closest names, how to add one.

        The closest names are looked for among the registered names and, when the registry has sources, among
        theirs too (which imports the sources' packages: only on this error path).
        """
        names = self.names()
        close = closest_names(name, list(candidates) if candidates is not None else self.all_names())
        quoted = [repr(c) for c in close]
        hint = f" (did you mean {' or '.join([', '.join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)}?)" \
            if close else ""
        prefix, sep, _ = name.partition(":")
        what = (f"is not a {self._sources[prefix].describe}" if sep and prefix in self._sources
                else f"is not a registered {self.kind}")
        sources = "".join(f"; or {s.prefix}:NAME ({s.describe})" for s in self._sources.values())
        listing = f"; {self.list_hint}" if self.list_hint else ""
        return UnknownName(f"{self.flag} {name!r} {what}{hint}; registered: {', '.join(names) or 'none'}{sources}; "
                           f"add your own with ignite_app.register_{self.kind}(name) in a --plugin file{listing}")

    def help_text(self) -> str:
        """The names for ``--help``: registered ones and the sources' prefixes."""
        return ", ".join([*self._entries, *(f"{s.prefix}:NAME" for s in self._sources.values())])


def closest_names(name: str, candidates: Iterable[str], n: int = 4, cutoff: float = 0.6) -> list[str]:
    """The candidates closest to ``name``, best first (difflib's similarity, its default cutoff).

    Each candidate scores the better of two similarities: of the whole names, and of the parts after a ``:`` prefix,
    so that ``resnet18`` finds ``torchvision:resnet18`` and ``timm:resnt50`` finds ``torchvision:resnet50`` too.
    """
    bare = (name.partition(":")[2] or name).lower()
    scored = []
    for full in candidates:
        score = max(difflib.SequenceMatcher(None, name.lower(), full.lower()).ratio(),
                    difflib.SequenceMatcher(None, bare, (full.partition(":")[2] or full).lower()).ratio())
        if score >= cutoff:
            scored.append((score, full))
    scored.sort(key=lambda item: -item[0])  # stable: ties keep the candidates' order
    return [full for _, full in scored[:n]]


def _same_definition(old: Any, new: Any) -> bool:
    """Whether ``new`` is ``old`` defined again: the same function of the same file, imported a second time (a plugin
    file run as a script and also named by ``--plugin``, say). Registering it again is then harmless."""
    if old is new:
        return True
    try:
        return (getattr(old, "__qualname__", None) == getattr(new, "__qualname__", object())
                and inspect.getsourcefile(old) == inspect.getsourcefile(new))
    except TypeError:  # not a function or class: no source file to compare
        return False


MODELS: Registry[Any] = Registry("model", "--model", list_hint="train.py --list-models [PATTERN] lists every name")
DATASETS: Registry[Any] = Registry("dataset", "--dataset")
OPTIMIZERS: Registry[Any] = Registry("optimizer", "--optimizer")


def register_model(name: str, entry: Any = None, *, replace: bool = False) -> Any:
    """Register a network: ``fn(num_classes, input_shape) -> nn.Module`` or a :class:`ignite_app.models.ModelSpec`.

    Use as a decorator (``@register_model("tiny")``) or call with the entry.
    """
    return MODELS.register(name, entry, replace=replace)


def register_dataset(name: str, entry: Any = None, *, replace: bool = False) -> Any:
    """Register a dataset: ``fn(config) -> (train, val, class_names)`` or a :class:`ignite_app.data.DatasetSpec`."""
    return DATASETS.register(name, entry, replace=replace)


def register_optimizer(name: str, entry: Any = None, *, replace: bool = False) -> Any:
    """Register an optimizer: ``fn(param_groups, config) -> torch.optim.Optimizer``; each group's own ``lr`` and
    ``weight_decay`` must be respected."""
    return OPTIMIZERS.register(name, entry, replace=replace)


# The built-in entries, imported on first use: --help and option errors never import torch.
MODELS.register("cnn", "ignite_app.models.small:cnn")
MODELS.register("mlp", "ignite_app.models.small:mlp")
DATASETS.register("digits", "ignite_app.data.builtin:digits")
DATASETS.register("synthetic", "ignite_app.data.builtin:synthetic")
DATASETS.register("folder", "ignite_app.data.folder:folder_dataset")
DATASETS.register("mnist", "ignite_app.data.builtin:mnist")
DATASETS.register("fashion-mnist", "ignite_app.data.builtin:fashion_mnist")
DATASETS.register("cifar10", "ignite_app.data.builtin:cifar10")
DATASETS.register("cifar100", "ignite_app.data.builtin:cifar100")
OPTIMIZERS.register("sgd", "ignite_app.models.optimizers:sgd")
OPTIMIZERS.register("adam", "ignite_app.models.optimizers:adam")
OPTIMIZERS.register("adamw", "ignite_app.models.optimizers:adamw")


def _zoo(function: str, *bound: str) -> Callable[..., Any]:
    """A function of :mod:`ignite_app.models.zoo`, imported when called (it imports torch)."""

    def call(*args: Any) -> Any:
        # imported by name, like the built-in entries: the registry sits below the models in the package
        return getattr(importlib.import_module("ignite_app.models.zoo"), function)(*bound, *args)

    return call


# The model zoos: every torchvision classification network and every timm network, by name.
MODELS.add_source(Source("torchvision", _zoo("source_names", "torchvision"), _zoo("resolve", "torchvision"),
                         "torchvision classification network"))
MODELS.add_source(Source("timm", _zoo("source_names", "timm"), _zoo("resolve", "timm"), "timm network"))
