"""Parameter groups, a frozen backbone and its batch-norm statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ignite_app.models import zoo
from ignite_app.models.finetune import (
    GROUP_NAMES,
    apply_lr_scales,
    backbone_norm_eval,
    param_groups,
    set_backbone_frozen,
)


@pytest.fixture
def resnet() -> tuple[nn.Module, tuple[str, ...]]:
    torch.manual_seed(0)
    net, info = zoo.create_network("timm:test_resnet", 3, 3)
    return net, info.head


def test_groups_split_head_backbone_and_decay(resnet: tuple[nn.Module, tuple[str, ...]]) -> None:
    net, head = resnet
    groups = param_groups(net, head, lr=0.1, weight_decay=0.05, backbone_lr_scale=0.1)
    assert [g["name"] for g in groups] == list(GROUP_NAMES)
    names = {id(p): n for n, p in net.named_parameters()}
    members = {g["name"]: [names[id(p)] for p in g["params"]] for g in groups}
    assert members["head"] == ["fc.weight"] and members["head_no_decay"] == ["fc.bias"]
    assert sorted(n for ns in members.values() for n in ns) == sorted(names.values())  # each exactly once
    assert all(p.ndim > 1 and not n.endswith(".bias")
               for n, p in net.named_parameters() if n in members["backbone"])
    assert any(".bn" in n or "bn1" in n for n in members["backbone_no_decay"])  # norm weights: no decay
    lr = {g["name"]: (g["lr"], g["lr_scale"], g["weight_decay"]) for g in groups}
    assert lr["head"] == (0.1, 1.0, 0.05) and lr["head_no_decay"] == (0.1, 1.0, 0.0)
    assert lr["backbone"] == pytest.approx((0.01, 0.1, 0.05)) and lr["backbone_no_decay"][2] == 0.0


def test_groups_keep_their_structure_at_scale_one_and_when_frozen(resnet: tuple[nn.Module, tuple[str, ...]]) -> None:
    net, head = resnet
    set_backbone_frozen(net, head, frozen=True)
    groups = param_groups(net, head, lr=0.1, weight_decay=0.0)
    assert [g["name"] for g in groups] == list(GROUP_NAMES)
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))  # frozen ones included
    assert groups[2]["lr"] == groups[0]["lr"] == 0.1


def test_timm_no_weight_decay_names_are_honoured() -> None:
    net, info = zoo.create_network("timm:test_vit", 3, 3)
    groups = param_groups(net, info.head, lr=0.1, weight_decay=0.05)
    no_decay = {id(p) for p in groups[3]["params"]}
    assert id(net.pos_embed) in no_decay and id(net.cls_token) in no_decay


def test_frozen_backbone_does_not_change_while_head_trains(resnet: tuple[nn.Module, tuple[str, ...]]) -> None:
    net, head = resnet
    assert set_backbone_frozen(net, head, frozen=True) == len(list(net.parameters())) - len(head)
    opt = torch.optim.SGD(param_groups(net, head, lr=0.5, weight_decay=0.1), momentum=0.9)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 3, (8,))
    for _ in range(2):
        net.train()
        backbone_norm_eval(net, head)
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    after = dict(net.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in before if n not in head)  # no step, no decay
    assert all(not torch.equal(before[n], after[n]) for n in head)
    assert all(torch.equal(buffers[n], b) for n, b in net.named_buffers())  # running stats, batch counters


def test_without_norm_eval_a_train_step_moves_running_stats(resnet: tuple[nn.Module, tuple[str, ...]]) -> None:
    """The control for the test above: model.train() alone lets batch norm update a frozen backbone."""
    net, head = resnet
    set_backbone_frozen(net, head, frozen=True)
    stats = net.bn1.running_mean.clone()
    net.train()
    net(torch.rand(8, 3, 32, 32))
    assert not torch.equal(stats, net.bn1.running_mean)


def test_unfreeze_trains_the_backbone_again(resnet: tuple[nn.Module, tuple[str, ...]]) -> None:
    net, head = resnet
    set_backbone_frozen(net, head, frozen=True)
    set_backbone_frozen(net, head, frozen=False)
    assert all(p.requires_grad for p in net.parameters())
    opt = torch.optim.SGD(param_groups(net, head, lr=0.5, weight_decay=0.0, backbone_lr_scale=0.5))
    before = net.conv1[0].weight.detach().clone()
    F.cross_entropy(net(torch.rand(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0])).backward()
    opt.step()
    assert not torch.equal(before, net.conv1[0].weight)


def test_backbone_norm_eval_leaves_the_rest_in_training_mode(resnet: tuple[nn.Module, tuple[str, ...]]) -> None:
    net, head = resnet
    net.train()
    count = backbone_norm_eval(net, head)
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert count == len(norms) > 0 and not any(m.training for m in norms)
    assert net.training and net.fc.training


@pytest.mark.parametrize("head", [(), ("fc.weight", "nope.bias")])
def test_unknown_head_names_are_refused(resnet: tuple[nn.Module, tuple[str, ...]], head: tuple[str, ...]) -> None:
    net, _ = resnet
    if head:
        with pytest.raises(ValueError, match="head parameter names not in the network"):
            param_groups(net, head, lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="head parameter names not in the network"):
        set_backbone_frozen(net, head, frozen=True)


def test_without_a_known_head_every_parameter_is_backbone(resnet: tuple[nn.Module, tuple[str, ...]]) -> None:
    """A network given from Python whose head cannot be found: one learning rate, decay split as usual."""
    net, _ = resnet
    groups = param_groups(net, (), lr=0.1, weight_decay=0.05)
    assert [len(g["params"]) for g in groups[:2]] == [0, 0]
    assert sum(len(g["params"]) for g in groups[2:]) == len(list(net.parameters()))
    assert groups[0]["lr"] == groups[2]["lr"] == 0.1


@pytest.mark.parametrize("scheduler", ["cosine", "plateau"])
def test_schedulers_keep_the_backbone_scale(resnet: tuple[nn.Module, tuple[str, ...]], scheduler: str) -> None:
    """ignite's cosine scheduler sets one value on every group; torch's plateau scheduler lowers each group on its
    own (with an eps): after apply_lr_scales, the backbone's rate is the head's times its scale either way."""
    from ignite.engine import Engine, Events
    from ignite.handlers.param_scheduler import CosineAnnealingScheduler
    from torch.optim.lr_scheduler import ReduceLROnPlateau

    net, head = resnet
    optimizer = torch.optim.SGD(param_groups(net, head, lr=1e-3, weight_decay=0.0, backbone_lr_scale=0.01))
    trainer = Engine(lambda e, b: None)
    if scheduler == "cosine":
        trainer.add_event_handler(Events.ITERATION_STARTED,
                                  CosineAnnealingScheduler(optimizer, "lr", start_value=1e-3, end_value=0.0,
                                                           cycle_size=20))
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: apply_lr_scales(optimizer))
    else:
        plateau = ReduceLROnPlateau(optimizer, factor=0.5, patience=0)  # eps 1e-8: 1e-5 x 0.5^n stops early
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: plateau.step(1.0))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: apply_lr_scales(optimizer))
    ratios = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: ratios.append(
        (optimizer.param_groups[2]["lr"] / optimizer.param_groups[0]["lr"], optimizer.param_groups[0]["lr"])))
    trainer.run(range(15), max_epochs=1)
    assert ratios[-1][1] < 5e-4  # the head's rate did move
    assert all(ratio == pytest.approx(0.01) for ratio, _ in ratios)
    assert all(g["lr"] == optimizer.param_groups[2]["lr"] for g in optimizer.param_groups[2:])
