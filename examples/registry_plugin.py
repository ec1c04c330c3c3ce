"""A plugin file that registers a model, a dataset and an optimizer, which then work like the built-in ones.

    python scripts/train.py --plugin examples/registry_plugin.py --model tiny --dataset digits-inverted \
        --optimizer rmsprop
    python examples/registry_plugin.py [train.py options...]     # the same, with those three as defaults

``--plugin`` files are imported before the options are checked, so ``--help`` lists ``tiny``, ``digits-inverted``
and ``rmsprop``, and every process of a run, a resumed run, ``scripts/evaluate.py`` and ``scripts/predict.py``
import the file again (its path is in the run's ``config.json``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ignite_app import register_dataset, register_model, register_optimizer  # noqa: E402


@register_model("tiny")
def tiny(num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """A small CNN. It receives normalised float images: the app's preprocessing sits in front of it."""
    channels = input_shape[0]
    return nn.Sequential(nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(16 * 4, num_classes))


class Inverted(Dataset):
    """Another dataset's images with their pixels inverted: white digits on black become black on white."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return 255 - self.images[i], int(self.labels[i])  # (C, H, W) uint8, and an int label


@register_dataset("digits-inverted")
def digits_inverted(config) -> tuple[Dataset, Dataset, list[str]]:
    """The minimal contract: ``(train, val, class_names)``; the app computes the mean and std itself."""
    from ignite_app.data.builtin import load_digits_data

    digits = load_digits_data()
    return (Inverted(digits.train.images, digits.train.labels), Inverted(digits.val.images, digits.val.labels),
            [f"digit {name}" for name in digits.classes])


@register_optimizer("rmsprop")
def rmsprop(param_groups: list[dict], config) -> torch.optim.Optimizer:
    """Each parameter group brings its own ``lr`` and ``weight_decay``; the rest comes from the config."""
    return torch.optim.RMSprop(param_groups, lr=config.lr, momentum=config.momentum,
                               weight_decay=config.weight_decay)


if __name__ == "__main__":
    from ignite_app.cli.train import main

    defaults = ["--plugin", __file__, "--model", "tiny", "--dataset", "digits-inverted", "--optimizer", "rmsprop"]
    sys.exit(main([*defaults, *sys.argv[1:]]))
