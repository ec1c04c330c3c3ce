"""The run configuration: one frozen dataclass holds every option, its default, its help text and its checks.

The command line (:mod:`ignite_app.cli`) is generated from the fields below, so a new option is added here once
and appears in ``--help``, in validation and in the saved ``config.json`` together. :class:`Options` is the
machinery (declaring, coercing and checking fields) that the evaluation and prediction commands' configs share.

The names ``--model``, ``--dataset`` and ``--optimizer`` accept are not fixed here: they are checked against the
registries (:mod:`ignite_app.registry`) when a config is created, so a name registered by a ``--plugin`` file is as
valid as a built-in one.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ignite_app.registry import DATASETS, MODELS, OPTIMIZERS, Registry, UnknownName

LR_SCHEDULERS = ("plateau", "cosine", "none")
PLATEAU_MONITORS = ("train_loss", "val_loss", "val_accuracy")
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("gloo", "nccl")
CHANNELS = (1, 3)
BAD_IMAGE_POLICIES = ("error", "skip")
NORMALIZATIONS = ("dataset", "pretrained")
FOLDER_IMAGE_SIZE = 32  # image folders have no size of their own: --image-size's default for them
# The options that only --dataset folder reads; with another built-in dataset they are refused rather than ignored
# (a registered dataset receives the whole config and may read any of them).
FOLDER_ONLY = ("data_dir", "label_map", "val_split", "augment")
IGNORES_FOLDER_OPTIONS = ("digits", "synthetic")

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class ConfigError(ValueError):
    """An option has a value it cannot take; the message names the flag, the value and what is allowed."""


def option(default: Any, help: str, *, choices: tuple[Any, ...] | None = None, low: float | None = None,
           high: float | None = None, low_open: bool = False, high_open: bool = False, metavar: str | None = None,
           affects_results: bool = True, default_text: str | None = None, registry: Registry | None = None,
           flag: str | None = None, cli: bool = True, required: bool = False, positional: bool = False) -> Any:
    """Declare a config field with its help text and checks (used by validation and by the CLI).

    Args:
        default: the default value.
        help: one line for ``--help``.
        choices: the allowed values of a string or int option.
        low: smallest allowed value of a number (inclusive unless ``low_open``).
        high: largest allowed value of a number (inclusive unless ``high_open``).
        low_open: whether ``low`` itself is excluded.
        high_open: whether ``high`` itself is excluded.
        metavar: how ``--help`` names the value.
        affects_results: whether the trained weights depend on it; a run can only be resumed with the same values
            of such options (``--epochs`` aside), while the others (output, logging, speed) may change.
        default_text: how ``--help`` describes the default when the value itself (``None``) says little.
        registry: the registry whose names the option takes (checked when the config is created).
        flag: the command-line flag, when it is not ``--`` + the field's name with dashes.
        cli: whether the option is on the command line at all (some are only set by the app).
        required: whether the command line requires it (its type then has no ``None``).
        positional: (a tuple) the command's positional arguments rather than a repeatable flag.
    """
    meta = {"help": help, "choices": choices, "low": low, "high": high, "low_open": low_open, "high_open": high_open,
            "metavar": metavar, "affects_results": affects_results, "default_text": default_text,
            "registry": registry, "flag": flag, "cli": cli, "required": required, "positional": positional}
    return field(default=default, metadata=meta)


def flag_name(name: str, cls: type | None = None) -> str:
    """The command-line flag of a config field: ``batch_size`` -> ``--batch-size`` (``handlers`` -> ``--handler``)."""
    fields_of = getattr(cls or TrainConfig, "__dataclass_fields__", {})
    custom = fields_of[name].metadata.get("flag") if name in fields_of else None
    return custom or "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Options:
    """A frozen dataclass of :func:`option` fields, coerced to their types and checked when it is created.

    The training config and the evaluation and prediction commands' configs are all ``Options``; the command
    lines are generated from their fields (:mod:`ignite_app.cli.options`).
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            value = _coerce(flag_name(f.name, type(self)), hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)  # frozen: normalise once, here
            _check_bounds(f, value, flag_name(f.name, type(self)))

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON-able values (paths become strings, tuples lists)."""

        def plain(v: Any) -> Any:
            return str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v

        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Any:
        """Rebuild options from :meth:`to_dict` output; unknown keys are an error that lists them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; known keys: {', '.join(sorted(known))}")
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig(Options):
    """Everything a training run depends on. Build one directly or from the command line (``ignite_app.cli``)."""

    # data
    dataset: str = option("digits", "dataset: digits (scikit-learn's 8x8 handwritten digits), synthetic (random "
                          "3x32x32 images for speed tests), folder (your own image folders, --data-dir), or one "
                          "registered by a --plugin", registry=DATASETS)
    # The data folder and the label-map file are compared by content on a resume (classes, training-set size and
    # normalisation constants), not by path, so a run can continue after its data folder was moved.
    data_dir: Path | None = option(None, "folder: DIR/train/<class>/* and DIR/val/<class>/*, or DIR/<class>/* with "
                                   "--val-split", metavar="DIR", affects_results=False)
    label_map: Path | None = option(None, "folder: label-map file, one class name per line, line i = class i",
                                    metavar="FILE", default_text="the sorted class folder names",
                                    affects_results=False)
    val_split: float | None = option(None, "folder: share of each class held out for validation when DIR has no "
                                     "train/ and val/ folders (stratified; the same split for every --seed)",
                                     low=0.0, high=1.0, low_open=True, high_open=True, metavar="FRACTION")
    image_size: int | None = option(None, "images are resized to SIZE x SIZE pixels (files when they are read, "
                                    "the in-memory datasets on the device)", low=8, metavar="SIZE",
                                    default_text="the network's pretrained input size with --pretrained or "
                                    "--normalization pretrained, else the dataset's own size; folders: "
                                    f"{FOLDER_IMAGE_SIZE}")
    channels: int = option(3, "folder: 3 = RGB, 1 = grayscale; every image is converted to it", choices=CHANNELS)
    augment: bool | None = option(None, "folder: random crop and horizontal flip of training images (never of "
                                  "validation images)", default_text="on for --dataset folder")
    on_bad_image: str = option("error", "folder: an image that cannot be decoded stops the start (error) or is "
                               "left out and listed in train.log (skip)", choices=BAD_IMAGE_POLICIES,
                               # a changed training set is refused on resume by its content check
                               affects_results=False)
    batch_size: int = option(64, "samples per batch in each process: with N processes a step trains on N x "
                             "BATCH_SIZE samples", low=1)
    num_workers: int = option(0, "data-loading worker processes (0 loads in the main process)", low=0,
                              affects_results=False)
    # model and optimisation
    model: str = option("cnn", "network architecture: cnn, mlp, torchvision:NAME (a torchvision classification "
                        "network), timm:NAME (a timm network; --list-models lists both zoos), or one registered "
                        "by a --plugin", registry=MODELS)
    epochs: int = option(30, "number of epochs to train (a resumed run may be given more)", low=1,
                         affects_results=False)
    optimizer: str = option("adamw", "optimizer: sgd, adam, adamw, or one registered by a --plugin",
                            registry=OPTIMIZERS)
    lr: float = option(3e-3, "initial learning rate", low=0.0, low_open=True)
    momentum: float = option(0.9, "SGD momentum (sgd only)", low=0.0, high=1.0)
    weight_decay: float = option(1e-4, "weight decay", low=0.0)
    lr_scheduler: str = option("plateau", "plateau: ReduceLROnPlateau stepped once per epoch; cosine: per-iteration "
                               "cosine decay after a linear warm-up; none: constant", choices=LR_SCHEDULERS)
    plateau_monitor: str = option("train_loss", "value the plateau scheduler watches after each epoch",
                                  choices=PLATEAU_MONITORS)
    plateau_factor: float = option(0.5, "plateau: multiply the lr by this when the monitored value stalls",
                                   low=0.0, high=1.0, low_open=True, high_open=True)
    plateau_patience: int = option(2, "plateau: epochs without improvement before the lr is lowered", low=0)
    warmup_epochs: float = option(1.0, "cosine: epochs of linear lr warm-up", low=0.0)
    early_stopping_patience: int = option(0, "stop after this many validations without a better accuracy "
                                          "(0 = off)", low=0)
    # run control
    seed: int = option(0, "random seed for weights, data order and dropout", low=0)
    device: str = option("auto", "where to train: auto picks cuda when it is available", choices=DEVICES,
                         affects_results=False)
    output_dir: Path = option(Path("runs"), "folder that holds the run folders", metavar="DIR",
                              affects_results=False)
    run_name: str | None = option(None, "name of this run's folder (default: the start time, e.g. "
                                  "20261127-154500); an existing folder is never overwritten, except to resume "
                                  "it", metavar="NAME", affects_results=False)
    log_every: int = option(10, "iterations between two TensorBoard train/loss points", low=1,
                            affects_results=False)
    epoch_length: int | None = option(None, "iterations per epoch (default: one pass over the training set); "
                                      "small values make quick smoke runs", low=1, metavar="N")
    progress: bool = option(True, "show a progress bar", affects_results=False)
    log_weights: int | None = option(None, "every N iterations, log each parameter's L2 norm to TensorBoard "
                                     "(weights_norm/<name>; default: off)", low=1, metavar="N", affects_results=False)
    log_grads: int | None = option(None, "every N iterations, log the L2 norm of each parameter's gradient to "
                                   "TensorBoard (grads_norm/<name>; default: off)", low=1, metavar="N",
                                   affects_results=False)
    # several processes, GPUs
    backend: str | None = option(None, "torch.distributed backend: gloo (CPU) or nccl (GPUs); needed with "
                                 "--nproc-per-node and under torchrun (default: one process)", choices=BACKENDS,
                                 affects_results=False)
    nproc_per_node: int | None = option(None, "start this many training processes on this machine (not under "
                                        "torchrun, which starts them itself)", low=1, metavar="N",
                                        affects_results=False)
    amp: bool = option(False, "automatic mixed precision: float16 with a gradient scaler on CUDA, bfloat16 on CPU")
    channels_last: bool = option(False, "channels-last memory layout (faster convolutions on recent GPUs)",
                                 affects_results=False)
    # extensions
    plugins: tuple[str, ...] = option((), "FILE.py or package.module imported before the options are checked, to "
                                      "register models, datasets and optimizers (repeatable)", metavar="PLUGIN",
                                      affects_results=False, flag="--plugin")
    handlers: tuple[str, ...] = option((), "FILE.py:FUNCTION or package.module:FUNCTION called with the built app "
                                       "before training, to attach your own event handlers (repeatable)",
                                       metavar="SPEC", affects_results=False, flag="--handler")
    # set by build() when the network or the data came from Python (build(config, model=..., data=...)): a command
    # that rebuilds the run from its config.json (resume, evaluate, predict) cannot rebuild them and says so
    python_model: bool = option(False, "the network was given to build() from Python", cli=False,
                                affects_results=False)
    python_data: bool = option(False, "the data was given to build() from Python", cli=False, affects_results=False)
    # transfer learning (issue 14): pretrained weights, fine-tuning
    pretrained: bool = option(False, "start from the architecture's default pretrained weights (torchvision:NAME, "
                              "timm:NAME), read from the zoo's cache (TORCH_HOME, the Hugging Face cache) or "
                              "downloaded into it")
    weights: Path | None = option(None, "start from a local weights file: a state dict (.pt, .pth, .bin), a "
                                  ".safetensors file, or this app's best_model.pt / training_*.pt; the classifier "
                                  "head stays freshly initialised when the classes differ", metavar="FILE")
    normalization: str | None = option(None, "pretrained: the mean and std, resize, crop and interpolation of the "
                                       "network's pretrained configuration; dataset: the training set's mean and "
                                       "std", choices=NORMALIZATIONS, default_text="pretrained with --pretrained or "
                                       "with --weights of a torchvision:/timm: network, else dataset")
    drop_path: float | None = option(None, "stochastic depth: drop residual branches at this rate (networks that "
                                     "have it: timm's drop_path_rate, torchvision's stochastic_depth_prob)",
                                     low=0.0, high=1.0, high_open=True, metavar="RATE",
                                     default_text="the architecture's own")
    freeze_epochs: int = option(0, "train only the classifier head for the first N epochs (the backbone frozen, "
                                "its batch norm in eval mode), then the whole network", low=0, metavar="N")
    backbone_lr_scale: float = option(1.0, "the backbone's learning rate is F times the head's (--lr)", low=0.0,
                                      metavar="F")
    # set by build() from the network's pretrained configuration (--normalization pretrained): how image files are
    # cropped and resized, so that evaluate.py and predict.py prepare them the same way
    crop_pct: float | None = option(None, "files: the short side is resized to SIZE / CROP_PCT, then centre-cropped "
                                    "to SIZE (default: the whole image resized to SIZE x SIZE)", cli=False,
                                    affects_results=False, low=0.0, high=1.0, low_open=True)
    interpolation: str = option("bilinear", "how images are resized", cli=False, affects_results=False,
                                choices=("bilinear", "bicubic", "nearest"))
    # checkpoints and resuming
    checkpoint_every: int | None = option(None, "also write a training checkpoint every N iterations (one is "
                                          "always written after each epoch)", low=1, metavar="N",
                                          affects_results=False)
    keep_last: int = option(2, "training checkpoints to keep (the newest ones)", low=1, affects_results=False)
    resume: str | None = option(None, "continue a run: a training checkpoint's path, or 'auto' for the newest "
                                "readable checkpoint of --run-name (none yet: start it)", metavar="PATH|auto",
                                affects_results=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.run_name is not None and not _RUN_NAME.match(self.run_name):
            raise ConfigError(f"--run-name {self.run_name!r} is not a valid folder name; use letters, digits, "
                              "'.', '_' and '-', starting with a letter or digit")
        if self.nproc_per_node is not None and self.backend is None:
            raise ConfigError(f"--nproc-per-node {self.nproc_per_node} needs --backend gloo (CPU) or nccl (GPUs)")
        if self.resume == "auto" and self.run_name is None:
            raise ConfigError("--resume auto needs --run-name: it continues the run of that name")
        self._check_dataset_options()
        self._check_transfer_options()

    def _check_dataset_options(self) -> None:
        if self.dataset == "folder":
            if self.data_dir is None:
                raise ConfigError("--dataset folder needs --data-dir DIR: a folder with train/<class>/ and "
                                  "val/<class>/ folders, or with <class>/ folders and --val-split")
            return
        if self.dataset not in IGNORES_FOLDER_OPTIONS:
            return
        for name in FOLDER_ONLY:
            value = getattr(self, name)
            if value is not None and value is not False:  # --no-augment is harmless: nothing else augments
                raise ConfigError(f"{flag_name(name)} {value} is only read with --dataset folder (this run uses "
                                  f"--dataset {self.dataset}); add --dataset folder or drop {flag_name(name)}")

    def _check_transfer_options(self) -> None:
        """Refuse transfer-learning options that cannot apply (issue 14); a zoo name is checked last, since that
        imports torchvision and timm."""
        zoo = self.model.partition(":")[0] in {source.prefix for source in MODELS.sources()}
        if self.pretrained and self.weights is not None:
            raise ConfigError(f"--pretrained and --weights {self.weights} both set the starting weights; pass one")
        for name, value in (("pretrained", self.pretrained), ("drop_path", self.drop_path)):
            if value and not zoo:
                raise ConfigError(f"{flag_name(name)} needs a torchvision:NAME or timm:NAME --model; {self.model!r} "
                                  "has " + ("no pretrained weights (start it from a file with --weights FILE)"
                                            if name == "pretrained" else "no stochastic depth to set"))
        if zoo:
            try:
                MODELS.get(self.model)
            except UnknownName as e:
                raise ConfigError(str(e)) from None

    @property
    def uses_pretrained_input(self) -> bool:
        """Whether the network's pretrained configuration sets the normalisation (``--normalization``'s default
        included: pretrained with ``--pretrained``, or with ``--weights`` of a zoo network)."""
        if self.normalization is not None:
            return self.normalization == "pretrained"
        zoo = self.model.partition(":")[0] in {source.prefix for source in MODELS.sources()}
        return self.pretrained or (self.weights is not None and zoo)

    @property
    def augments(self) -> bool:
        """Whether training images are augmented: ``--augment``, or by default for folder datasets."""
        return self.augment if self.augment is not None else self.dataset == "folder"

    def result_differences(self, other: TrainConfig) -> list[str]:
        """The options that change the trained weights and differ from ``other``, as ``--flag: a -> b`` lines."""
        return [f"{flag_name(f.name)}: {getattr(other, f.name)!r} -> {getattr(self, f.name)!r}"
                for f in fields(self)
                if f.metadata["affects_results"] and getattr(self, f.name) != getattr(other, f.name)]

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild a config from :meth:`to_dict` output (a run's ``config.json``), importing its ``--plugin``
        modules first so that the names they register are known."""
        from ignite_app.plugins import import_plugins

        import_plugins(values.get("plugins", ()))
        return super().from_dict(values)


def default_image_size(config: TrainConfig, pretrained_size: int | None = None) -> int | None:
    """``--image-size`` when it is not given: the network's pretrained input size (``pretrained_size``) when it
    starts from its pretrained weights (``--pretrained``, whatever ``--normalization``) or its pretrained
    configuration sets the normalisation, else the dataset's own size: None (the images are not resized), or
    :data:`FOLDER_IMAGE_SIZE` for image folders, which have no size of their own."""
    if config.image_size is not None:
        return config.image_size
    if pretrained_size is not None and (config.pretrained or config.uses_pretrained_input):
        return pretrained_size
    return FOLDER_IMAGE_SIZE if config.dataset == "folder" else None


def _coerce(flag: str, hint: Any, value: Any) -> Any:
    """Check a value against its annotation; accept an int for a float and a str for a Path."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{flag} needs a value, got None")
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif base is Path:
        ok = isinstance(value, (str, Path))
        value = Path(value) if ok else value
    elif typing.get_origin(base) is tuple:
        element = typing.get_args(base)[0]  # tuple[str, ...] or tuple[Path, ...]
        ok = isinstance(value, (tuple, list)) and all(isinstance(v, (str, Path)) for v in value)
        value = tuple(Path(v) if element is Path else str(v) for v in value) if ok else value
        base = tuple
    else:
        ok = isinstance(value, base)
    if not ok:
        raise ConfigError(f"{flag} must be a finite {base.__name__}, got {value!r}")
    return value


def _check_bounds(f: dataclasses.Field, value: Any, flag: str) -> None:
    meta = f.metadata
    if value is None:
        return
    if meta.get("registry") is not None and value not in meta["registry"]:
        try:
            meta["registry"].get(value)  # raises UnknownName with the registered names
        except UnknownName as e:
            raise ConfigError(str(e)) from None
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{flag} must be one of {', '.join(map(str, meta['choices']))}; got {value!r}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("low_open") and value == low)):
        relation = ">" if meta.get("low_open") else ">="
        raise ConfigError(f"{flag} must be {relation} {low:g}, got {value!r}")
    if high is not None and (value > high or (meta.get("high_open") and value == high)):
        relation = "<" if meta.get("high_open") else "<="
        raise ConfigError(f"{flag} must be {relation} {high:g}, got {value!r}")
