"""Fine-tuning: head and backbone parameter groups, no weight decay on norms and biases, a frozen backbone.

The optimizer always gets the same four groups, named in :data:`GROUP_NAMES`, in that order, whatever the
backbone learning-rate scale and whether the backbone is frozen: a resumed run or another process then loads
the optimizer state into the same structure at every epoch. A frozen backbone keeps its groups; its parameters
simply get no gradient, and torch's optimizers skip a parameter without one (no step, no weight decay, no
momentum). Each group carries ``lr_scale`` (1 for the head, ``backbone_lr_scale`` for the backbone): a scheduler
sets ``lr = value * group["lr_scale"]`` per group (ignite's ``CosineAnnealingScheduler`` sets one value on every
group unless given ``param_group_index``), so the head's rate stays the reported ``train/lr``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

GROUP_NAMES = ("head", "head_no_decay", "backbone", "backbone_no_decay")


def param_groups(network: nn.Module, head_names: Iterable[str], lr: float, weight_decay: float,
                 backbone_lr_scale: float = 1.0) -> list[dict]:
    """Four optimizer groups: head and backbone, each with and without weight decay.

    As timm does (``param_groups_weight_decay``), 1-d parameters (norm weights and shifts), biases and the
    names a timm network lists in ``no_weight_decay()`` (position embeddings, class tokens) get no weight decay.
    Frozen parameters are included, so unfreezing changes no group.

    Args:
        network: The bare network (not the Classifier wrapper): ``head_names`` are its parameter names.
        head_names: The classifier's parameter names (``ZooInfo.head``); empty when they are unknown (a network
            given from Python without a recognisable head): everything is then in the backbone groups.
        lr: The head's learning rate.
        weight_decay: For the groups with decay.
        backbone_lr_scale: The backbone's learning rate is ``lr * backbone_lr_scale``.

    Returns:
        Dicts for ``torch.optim`` with keys ``params``, ``lr``, ``weight_decay``, ``name`` and ``lr_scale``; a group
        may be empty (a head without biases, a network without norms).
    """
    if backbone_lr_scale < 0:
        raise ValueError(f"backbone_lr_scale must be >= 0, got {backbone_lr_scale}")
    head = _checked_head(network, head_names, allow_empty=True)
    skip = set(network.no_weight_decay()) if hasattr(network, "no_weight_decay") else set()
    buckets: dict[str, list[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    for name, param in network.named_parameters():
        no_decay = param.ndim <= 1 or name.endswith(".bias") or any(fnmatch.fnmatch(name, s) for s in skip)
        buckets[("head" if name in head else "backbone") + ("_no_decay" if no_decay else "")].append(param)
    groups = []
    for name in GROUP_NAMES:
        scale = 1.0 if name.startswith("head") else backbone_lr_scale
        groups.append({"name": name, "params": buckets[name], "lr": lr * scale, "lr_scale": scale,
                       "weight_decay": 0.0 if name.endswith("no_decay") else weight_decay})
    return groups


def apply_lr_scales(optimizer: torch.optim.Optimizer) -> None:
    """Give every group the head's learning rate times its ``lr_scale``, after a scheduler set one value on all.

    The first group is the head's (scale 1), which holds the unscaled value, so this can run after every scheduler
    step, whether or not the scheduler changed anything. Groups without ``lr_scale`` (an optimizer that made its
    own) are left alone.
    """
    groups = optimizer.param_groups
    if groups[0].get("lr_scale") != 1.0:
        return
    for group in groups[1:]:
        if "lr_scale" in group:
            group["lr"] = groups[0]["lr"] * group["lr_scale"]


def set_backbone_frozen(network: nn.Module, head_names: Iterable[str], frozen: bool) -> int:
    """Turn ``requires_grad`` off (``frozen``) or on for every parameter outside the head; returns how many."""
    head = _checked_head(network, head_names)
    changed = 0
    for name, param in network.named_parameters():
        if name not in head:
            param.requires_grad_(not frozen)
            changed += 1
    return changed


def backbone_norm_eval(network: nn.Module, head_names: Iterable[str]) -> int:
    """Put the backbone's batch-norm layers in eval mode; returns how many.

    Call it after every ``model.train()`` while the backbone is frozen: in training mode batch norm would still
    update its running statistics (and normalise with the batch's), changing a "frozen" backbone.
    """
    head = _checked_head(network, head_names)
    count = 0
    for name, module in network.named_modules():
        if isinstance(module, _BatchNorm) and not any(h.startswith(f"{name}.") for h in head):
            module.eval()
            count += 1
    return count


def _checked_head(network: nn.Module, head_names: Iterable[str], allow_empty: bool = False) -> frozenset[str]:
    head = frozenset(head_names)
    known = {name for name, _ in network.named_parameters()}
    if (not head and not allow_empty) or not head <= known:
        missing = sorted(head - known) or ["(no names given)"]
        raise ValueError(f"head parameter names not in the network: {', '.join(missing[:5])}; pass ZooInfo.head "
                         "of this network (names relative to the bare network, not the Classifier)")
    return head
