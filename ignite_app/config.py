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
import os
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ignite_app.registry import DATASETS, MODELS, OPTIMIZERS, Registry, UnknownName

LR_SCHEDULERS = ("plateau", "cosine", "none")
PLATEAU_MONITORS = ("train_loss", "val_loss", "val_accuracy")
BEST_METRICS = ("accuracy", "f1_macro", "ap_macro")  # --best-metric: validation metrics, higher is better
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("gloo", "nccl")
CHANNELS = (1, 3)
BAD_IMAGE_POLICIES = ("error", "skip")
# training recipe
AUTO_AUGMENT_POLICIES = ("none", "trivialaugment", "randaugment", "augmix")
CLASS_WEIGHTS = ("none", "balanced")
SAMPLERS = ("shuffle", "balanced")
# The standard datasets (ignite_app.data.standard), read from torchvision's layout under --data-dir.
STANDARD_DATASETS = ("mnist", "fashion-mnist", "cifar10", "cifar100")
STANDARD_DATA_DIR = Path("data")  # their default --data-dir
STANDARD_VAL_SPLIT = 0.1  # their default --val-split: a share of the official training set, never the test set
# The options that only --dataset folder reads, and those that folders and the standard datasets read; with another
# built-in dataset they are refused rather than ignored (a registered dataset receives the whole config and may read
# any of them).
FOLDER_ONLY = ("label_map", "cache", "crop_fraction", "scale_min", "check_images")
IMAGE_DATA_ONLY = ("data_dir", "val_split", "augment")
STANDARD_ONLY = ("download",)
NORMALIZATIONS = ("dataset", "pretrained")
FOLDER_IMAGE_SIZE = 32  # image folders have no size of their own: --image-size's default for them
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
                          "3x32x32 images for speed tests), folder (your own image folders, --data-dir), mnist, "
                          "fashion-mnist, cifar10, cifar100 (read from --data-dir in torchvision's layout), or one "
                          "registered by a --plugin", registry=DATASETS)
    # The data folder and the label-map file are compared by content on a resume (classes, training-set size and
    # normalisation constants), not by path, so a run can continue after its data folder was moved.
    data_dir: Path | None = option(None, "folder: DIR/train/<class>/* and DIR/val/<class>/*, or DIR/<class>/* with "
                                   "--val-split; standard datasets: the folder torchvision downloads them into",
                                   metavar="DIR", affects_results=False,
                                   default_text="data for the standard datasets; required for folder")
    label_map: Path | None = option(None, "folder: label-map file, one class name per line, line i = class i",
                                    metavar="FILE", default_text="the sorted class folder names",
                                    affects_results=False)
    val_split: float | None = option(None, "share of each class held out for validation (stratified; the same split "
                                     "for every --seed): folder, when DIR has no train/ and val/ folders; standard "
                                     "datasets, from the official training set (the test set is for "
                                     "evaluate.py --split test)", low=0.0, high=1.0, low_open=True, high_open=True,
                                     metavar="FRACTION", default_text="0.1 for the standard datasets")
    image_size: int | None = option(None, "images are resized to SIZE x SIZE pixels (files when they are read, "
                                    "the in-memory datasets on the device)", low=8, metavar="SIZE",
                                    default_text="the network's pretrained input size with --pretrained or "
                                    "--normalization pretrained, else the dataset's own size; folders: "
                                    f"{FOLDER_IMAGE_SIZE}")
    channels: int = option(3, "folder: 3 = RGB, 1 = grayscale; every image is converted to it", choices=CHANNELS)
    augment: bool | None = option(None, "each dataset's usual augmentation of training images, never of validation "
                                  "images: folder, a random resized crop and a horizontal flip; CIFAR, a 4-pixel "
                                  "padded random crop and a flip; MNIST-like, a 2-pixel padded crop",
                                  default_text="on for folder and the standard datasets")
    on_bad_image: str = option("error", "folder: an image that cannot be decoded, met when it is loaded, stops the "
                               "run with exit code 2 (error), or is replaced by another training sample or left out "
                               "of validation, and listed in train.log (skip)", choices=BAD_IMAGE_POLICIES,
                               # a changed training set is refused on resume by its content check
                               affects_results=False)
    batch_size: int = option(64, "samples per batch in each process: with N processes a step trains on N x "
                             "BATCH_SIZE samples", low=1)
    num_workers: int | None = option(None, "data-loading worker processes per training process (0 loads in the "
                                     "main process)", low=0, metavar="N", affects_results=False,
                                     default_text="min(8, CPU cores per process - 1) for image files and the "
                                     "standard datasets, 0 for digits and synthetic")
    # data at scale: the standard datasets, the image pipeline, unreadable images met at load time
    download: bool = option(False, "standard datasets: fetch the files through torchvision into --data-dir when they "
                            "are not there", affects_results=False)
    cache: Path | None = option(None, "folder: keep every image decoded and resized in memory-mapped files under DIR, "
                                "read by later epochs and later runs (about 260 kB per image at --image-size 224; "
                                "delete DIR to reclaim the space)", metavar="DIR", affects_results=False)
    crop_fraction: float | None = option(None, "folder: images are decoded with their short side at "
                                         "SIZE / FRACTION; validation keeps the centre SIZE x SIZE of that",
                                         low=0.0, high=1.0, low_open=True, metavar="FRACTION",
                                         default_text="the network's, else 0.875")
    scale_min: float | None = option(None, "folder, with --augment: the smallest random crop as a share of the "
                                     "image's area (RandomResizedCrop's scale)", low=0.0, high=1.0, low_open=True,
                                     metavar="SHARE", default_text="0.08")
    stats_images: int = option(2000, "training images the mean and std are computed from, a seeded sample (when the "
                               "dataset does not give them)", low=2, metavar="N")
    check_images: bool = option(False, "folder: decode every image once before training, to find the unreadable "
                                "ones before the start rather than when they are loaded (costs about one epoch)")
    prefetch: int | None = option(None, "batches each loader worker prepares ahead (with --num-workers > 0)", low=1,
                                  metavar="N", affects_results=False, default_text="2")
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
    early_stopping_patience: int = option(0, "stop after this many validations without a better --best-metric "
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
    # training recipe: every switch is off by default
    label_smoothing: float = option(0.0, "cross-entropy with label smoothing F on the training targets (the "
                                    "validation loss stays plain cross-entropy)", low=0.0, high=1.0, high_open=True,
                                    metavar="F")
    mixup_alpha: float = option(0.0, "MixUp: mix pairs of training images with a Beta(A, A) share (0 = off)", low=0.0,
                                metavar="A")
    cutmix_alpha: float = option(0.0, "CutMix: paste a box of one training image into another, area from Beta(A, "
                                 "A) (0 = off); with --mixup-alpha too, each mixed batch uses one of the two",
                                 low=0.0, metavar="A")
    mix_prob: float = option(1.0, "share of training batches that are mixed (with --mixup-alpha or "
                             "--cutmix-alpha)", low=0.0, high=1.0, metavar="P")
    ema_decay: float | None = option(None, "keep an exponential moving average of the weights (decay D per "
                                     "optimizer step); validation, the best model and best_model.pt use it "
                                     "(default: off)", low=0.0, high=1.0, low_open=True, high_open=True, metavar="D")
    ema_warmup_steps: int = option(0, "EMA: the decay grows linearly from 0 to D over the first N optimizer steps",
                                   low=0, metavar="N")
    accumulate_steps: int = option(1, "gradient accumulation: one optimizer step per K batches (a group never "
                                   "crosses an epoch's end)", low=1, metavar="K")
    clip_grad_norm: float | None = option(None, "clip the gradients' global L2 norm to X (after unscaling under "
                                          "AMP); the norm before clipping is logged as train/grad_norm (default: "
                                          "off)", low=0.0, low_open=True, metavar="X")
    class_weights: str = option("none", "balanced: weight the training loss of each class by N / (C x its count)",
                                choices=CLASS_WEIGHTS)
    sampler: str = option("shuffle", "shuffle: each image once per epoch; balanced: draw classes equally (with "
                          "replacement, as many samples per epoch as the training set)", choices=SAMPLERS)
    auto_augment: str = option("none", "folder: augmentation policy on the training images (torchvision)",
                               choices=AUTO_AUGMENT_POLICIES)
    random_erasing: float = option(0.0, "folder: erase a random box of each training image with probability P",
                                   low=0.0, high=1.0, metavar="P")
    # transfer learning: pretrained weights, fine-tuning
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
    # set by build() from the network's pretrained configuration (--normalization pretrained): how the in-memory
    # datasets are resized on the device (image files are resized bilinear, antialiased, by the image pipeline)
    interpolation: str = option("bilinear", "how the in-memory datasets are resized to --image-size", cli=False,
                                affects_results=False, choices=("bilinear", "bicubic", "nearest"))
    # checkpoints and resuming
    checkpoint_every: int | None = option(None, "also write a training checkpoint every N iterations (one is "
                                          "always written after each epoch)", low=1, metavar="N",
                                          affects_results=False)
    keep_last: int = option(2, "training checkpoints to keep (the newest ones)", low=1, affects_results=False)
    resume: str | None = option(None, "continue a run: a training checkpoint's path, or 'auto' for the newest "
                                "readable checkpoint of --run-name (none yet: start it)", metavar="PATH|auto",
                                affects_results=False)
    # scores of the probabilities: the best-model metric, PR curves, confident mistakes
    best_metric: str = option("accuracy", "the validation metric that chooses best_model.pt and drives early "
                              "stopping: accuracy, f1_macro (macro F1) or ap_macro (mean average precision)",
                              choices=BEST_METRICS)
    pr_curves: int = option(20, "TensorBoard PR curves (val/pr_curve/<class>) of at most N classes per validation, "
                            "the lowest AP first (0 = none)", low=0, metavar="N", affects_results=False)
    log_mistakes: int = option(0, "after each validation, the K most confident wrong predictions as one TensorBoard "
                               "image (val/mistakes; 0 = off)", low=0, metavar="K", affects_results=False)

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
        self._check_recipe_options()
        self._check_transfer_options()

    def _check_dataset_options(self) -> None:
        if self.dataset == "folder" and self.data_dir is None:
            raise ConfigError("--dataset folder needs --data-dir DIR: a folder with train/<class>/ and "
                              "val/<class>/ folders, or with <class>/ folders and --val-split")
        if self.dataset in STANDARD_DATASETS:  # frozen: the defaults of the standard datasets, set once here
            if self.data_dir is None:
                object.__setattr__(self, "data_dir", STANDARD_DATA_DIR)
            if self.val_split is None:
                object.__setattr__(self, "val_split", STANDARD_VAL_SPLIT)
        builtin = ("folder", *STANDARD_DATASETS, *IGNORES_FOLDER_OPTIONS)
        if self.dataset not in builtin:
            return  # a registered dataset may read any option
        readers = {name: ("--dataset folder", "folder") for name in FOLDER_ONLY}
        readers.update({name: ("--dataset folder and the standard datasets", "folder", *STANDARD_DATASETS)
                        for name in IMAGE_DATA_ONLY})
        readers.update({name: (f"the standard datasets ({', '.join(STANDARD_DATASETS)})", *STANDARD_DATASETS)
                        for name in STANDARD_ONLY})
        for name, (who, *datasets) in readers.items():
            value = getattr(self, name)
            if self.dataset not in datasets and value is not None and value is not False:  # --no-augment is harmless
                raise ConfigError(f"{flag_name(name)} {value} is only read with {who} (this run uses --dataset "
                                  f"{self.dataset}); drop {flag_name(name)}, or use a dataset that reads it")

    def _check_recipe_options(self) -> None:
        """Refuse training-recipe options that would silently do nothing."""
        if self.mix_prob != 1.0 and not self.mixes:
            raise ConfigError(f"--mix-prob {self.mix_prob:g} has no effect without --mixup-alpha or --cutmix-alpha; "
                              "set one of them or drop --mix-prob")
        if self.ema_warmup_steps and self.ema_decay is None:
            raise ConfigError(f"--ema-warmup-steps {self.ema_warmup_steps} has no effect without --ema-decay; set "
                              "--ema-decay (0.999, say) or drop --ema-warmup-steps")
        if self.dataset in IGNORES_FOLDER_OPTIONS:
            for name, off in (("auto_augment", "none"), ("random_erasing", 0.0)):
                if getattr(self, name) != off:
                    raise ConfigError(f"{flag_name(name)} {getattr(self, name)} is only read with --dataset folder "
                                      f"and the standard datasets (this run uses --dataset {self.dataset}); use one "
                                      f"of them or drop {flag_name(name)}")

    @property
    def mixes(self) -> bool:
        """Whether training batches are mixed (MixUp or CutMix)."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0

    def _check_transfer_options(self) -> None:
        """Refuse transfer-learning options that cannot apply; a zoo name is checked last, since that
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
        """Whether training images are augmented: ``--augment``, or by default for folders and the standard
        datasets."""
        return self.augment if self.augment is not None else self.dataset in ("folder", *STANDARD_DATASETS)

    @property
    def loader_workers(self) -> int:
        """``--num-workers``, or its default: none for the small in-memory datasets (digits, synthetic), whose
        batches are one indexing operation; else one per CPU core this process can use, keeping one for the
        training loop, at most 8. The results do not depend on it (per-sample seeds)."""
        if self.num_workers is not None:
            return self.num_workers
        if self.dataset in IGNORES_FOLDER_OPTIONS:
            return 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        processes = self.nproc_per_node or int(os.environ.get("LOCAL_WORLD_SIZE", "1"))  # torchrun sets it
        return max(0, min(8, cores // processes - 1))

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
