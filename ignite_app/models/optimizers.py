"""The built-in optimizers, registered as ``sgd``, ``adam`` and ``adamw``.

Each follows the optimizer registry's contract ``fn(param_groups, config) -> torch.optim.Optimizer``: the groups
carry their own ``lr`` and ``weight_decay`` (a fine-tuned backbone and its head get different ones); the config
gives the rest.
"""

from __future__ import annotations

from typing import Any

import torch

from ignite_app.config import TrainConfig


def sgd(param_groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (``--momentum``; 0 turns both off)."""
    return torch.optim.SGD(param_groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0,
                           weight_decay=config.weight_decay)


def adam(param_groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam; its weight decay is an L2 term in the gradient."""
    return torch.optim.Adam(param_groups, lr=config.lr, weight_decay=config.weight_decay)


def adamw(param_groups: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW: Adam with decoupled weight decay (the default)."""
    return torch.optim.AdamW(param_groups, lr=config.lr, weight_decay=config.weight_decay)
