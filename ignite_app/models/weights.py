"""``--weights FILE``: load a local weights file into a network, leaving the classifier fresh when classes differ.

Accepted files, all read without running pickled code (``torch.load(weights_only=True)`` or safetensors):

- a plain state dict: ``.pt``, ``.pth``, ``.bin`` (torchvision's and timm's downloads are such files);
- a ``.safetensors`` file;
- a checkpoint of this app: ``best_model.pt`` (key ``state_dict``) or ``training_*.pt`` (key ``model``), each the
  state dict of the saved ``Classifier``; its ``network.*`` tensors are taken and ``preprocess.*`` left out
  (the preprocessing comes from the new run's ``--normalization``); when its ``classes`` are not the new run's,
  the classifier head is left freshly initialised even if it has as many classes;
- any of these with the ``module.`` prefix of a DistributedDataParallel wrapper.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ignite_app.errors import UsageError

from ignite_app.models.zoo_info import ZooInfo

CHECKPOINT_KEYS = ("state_dict", "model")   # best_model.pt, training_*.pt (and timm's train.py checkpoints)
PREFIXES = ("module.", "network.")          # DDP wrapper, then the app's Classifier
MAX_LISTED = 8                              # mismatched tensors named in an error


@dataclass(frozen=True)
class LoadReport:
    """What a load did: the tensors copied and the ones left freshly initialised, by name."""

    origin: str                        # the file, or "torchvision weights ..."
    loaded: int                        # tensors copied into the network
    left_out: tuple[str, ...]          # head tensors kept fresh because their shape differs (another class count)
    adapted: tuple[str, ...] = ()      # first-conv weights adapted to the network's input channels
    ignored: tuple[str, ...] = ()      # file tensors with no place in the network by design (auxiliary heads)

    def summary(self) -> str:
        """The log line: ``loaded 62 tensors from FILE; left out (the classes differ: ...): fc.weight, fc.bias``."""
        parts = [f"loaded {self.loaded} tensors from {self.origin}"]
        if self.left_out:
            parts.append(f"left out (the classes differ: freshly initialised): {', '.join(self.left_out)}")
        if self.adapted:
            parts.append(f"adapted to the input channels: {', '.join(self.adapted)}")
        if self.ignored:
            parts.append(f"ignored {len(self.ignored)} auxiliary tensors")
        return "; ".join(parts)


def load_weights(network: nn.Module, path: str | Path, info: ZooInfo, keep_head: bool = True,
                 classes: Sequence[str] | None = None) -> LoadReport:
    """Load the weights file ``path`` into ``network`` (built by ``create_network`` as ``info`` says).

    Args:
        network: The bare network (``Classifier.network``).
        path: The weights file or app checkpoint.
        info: The network's :class:`ZooInfo` (``registered_info`` for a registered network).
        keep_head: Load the head too when its shape fits; False leaves it freshly initialised whatever its
            shape (the file's classes are other classes, even if as many).
        classes: The new run's class names: an app checkpoint trained on other classes keeps its head out.

    Raises:
        UsageError: The file is missing or unreadable, holds no state dict, or its tensors outside the head do
            not fit the network (the message lists the first mismatched names and shapes).
    """
    path = Path(path)
    state, file_classes = read_weights(path)
    if classes is not None and file_classes is not None and list(file_classes) != list(classes):
        keep_head = False
    if not keep_head:
        state = {k: v for k, v in state.items() if k not in info.head}
    return load_state_into(network, state, info, origin=str(path))


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The network tensors of a weights file or app checkpoint, with ``module.``/``network.`` prefixes removed."""
    return read_weights(path)[0]


def read_weights(path: Path) -> tuple[dict[str, Tensor], list[str] | None]:
    """:func:`read_state_dict`, and the class names an app checkpoint records (None for other files)."""
    if not path.is_file():
        raise UsageError(f"--weights {path}: no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(path), device="cpu")
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling, safetensors header and zip errors share no base class
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise UsageError(f"--weights {path}: cannot be read as a state dict with weights_only=True or as "
                         f"safetensors ({type(err).__name__}: {first})") from err
    classes = raw.get("classes") if isinstance(raw, Mapping) else None
    return _network_tensors(raw, path), list(map(str, classes)) if isinstance(classes, (list, tuple)) else None


def _network_tensors(raw: object, path: Path) -> dict[str, Tensor]:
    if isinstance(raw, Mapping):
        for key in CHECKPOINT_KEYS:
            if isinstance(raw.get(key), Mapping):
                raw = raw[key]
                break
    if not isinstance(raw, Mapping) or not raw:
        raise UsageError(f"--weights {path}: holds {type(raw).__name__}, expected a state dict (name -> tensor) "
                         f"or a checkpoint with one of the keys {', '.join(CHECKPOINT_KEYS)}")
    state = {str(k): v for k, v in raw.items() if isinstance(v, Tensor)}
    for prefix in PREFIXES:
        if state and all(k.startswith(prefix) or k.startswith("preprocess.") for k in state) \
                and any(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not state:
        raise UsageError(f"--weights {path}: holds no tensors")
    return state


def load_state_into(network: nn.Module, state: Mapping[str, Tensor], info: ZooInfo, origin: str) -> LoadReport:
    """Copy ``state`` into ``network``: every non-head tensor must fit; head tensors of another shape (or missing
    from ``state``) stay fresh. Nothing is copied unless everything else fits."""
    target = network.state_dict()
    head = set(info.head)
    # A fresh state_dict, not a dict copy: its _metadata carries the module versions that some modules'
    # loaders require (MNASNet refuses a state dict without one).
    merged = network.state_dict()
    loaded, left_out, adapted, problems = 0, [], [], []
    for key, want in target.items():
        have = state.get(key)
        if have is None:
            if key in head:
                left_out.append(key)
            elif not key.endswith("num_batches_tracked"):  # older files lack the counter; keeping ours is harmless
                problems.append(f"{key}: missing from the file, network {tuple(want.shape)}")
            continue
        if have.shape != want.shape:
            if key in head:
                left_out.append(key)
                continue
            fixed = _adapt_first_conv(key, have, want, info)
            if fixed is None:
                problems.append(f"{key}: file {tuple(have.shape)}, network {tuple(want.shape)}")
                continue
            have = fixed
            adapted.append(key)
        merged[key] = have
        loaded += 1
    ignored = [k for k in state if k not in target and info.ignore_prefixes and k.startswith(info.ignore_prefixes)]
    problems += [f"{k}: in the file {tuple(state[k].shape)}, not in the network"
                 for k in state if k not in target and k not in ignored]
    if problems:
        raise UsageError(_mismatch_message(origin, info.name, problems))
    network.load_state_dict(merged, strict=True)
    return LoadReport(origin, loaded, tuple(left_out), tuple(adapted), tuple(ignored))


def _adapt_first_conv(key: str, have: Tensor, want: Tensor, info: ZooInfo) -> Tensor | None:
    """timm's first-conv weights saved for 3 channels, loaded into a network built for ``in_chans`` (or None)."""
    if not any(key == f"{conv}.weight" for conv in info.first_conv):
        return None
    if have.ndim != 4 or have.shape[0] != want.shape[0] or have.shape[2:] != want.shape[2:]:
        return None
    from timm.models import adapt_input_conv

    try:
        return adapt_input_conv(want.shape[1], have, base_chans=have.shape[1])
    except (NotImplementedError, ValueError):
        return None


def _mismatch_message(origin: str, name: str, problems: list[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED])
    more = f"; and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return (f"--weights {origin} does not fit {name}: {len(problems)} tensors outside the classifier head differ: "
            f"{shown}{more}. Pass the --model the file was saved from (and the same input channels).")
