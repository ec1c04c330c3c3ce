"""The training recipe's parts on real code paths: loss, mixing, EMA, accumulation, clipping, schedules, stops."""

import copy
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from torch import nn

from ignite_app.config import ConfigError, TrainConfig
from ignite_app.engines import StepOptions, TrainRecipe, create_trainer
from ignite_app.handlers import attach_lr_scheduler
from ignite_app.recipe.accumulation import STEPPED, StepGroups
from ignite_app.recipe.ema import ModelEma
from ignite_app.recipe.losses import TrainingLoss, balanced_class_weights, soft_targets
from ignite_app.recipe.mixing import BatchMixer
from ignite_app.runstate.checkpoint import attach_training_checkpoint, checkpoint_iteration, training_checkpoints
from ignite_app.runstate.signals import attach_graceful_stop, attach_handler_stop

CPU = StepOptions(torch.device("cpu"))


# --- the loss --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_is_the_formula(smoothing):
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(16, 7, generator=g), torch.randint(7, (16,), generator=g)
    log_p = logits.log_softmax(dim=1)
    # (1 - s) * (-log p_y) + s * mean over the classes of (-log p_c)
    expected = ((1 - smoothing) * -log_p[torch.arange(16), y] + smoothing * -log_p.mean(dim=1)).mean()
    assert torch.allclose(TrainingLoss(smoothing)(logits, y), expected, atol=1e-6)
    # the same loss from the smoothed one-hot targets that mixing uses
    assert torch.allclose(TrainingLoss(smoothing)(logits, soft_targets(y, 7, smoothing)), expected, atol=1e-6)
    if smoothing == 0:
        assert torch.equal(TrainingLoss()(logits, y), nn.CrossEntropyLoss()(logits, y))


def test_balanced_class_weights_equal_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    labels = torch.tensor([0] * 50 + [1] * 5 + [2] * 20 + [4] * 25)  # class 3 has no sample
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2, 4]), y=labels.numpy())
    weights = balanced_class_weights(labels, 5)
    assert torch.allclose(weights[[0, 1, 2, 4]], torch.tensor(expected, dtype=torch.float32))
    assert weights[3] == 0


# --- mixing ----------------------------------------------------------------------------------------------------


def batch(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, 16, 16), dtype=torch.uint8, generator=g), torch.randint(10, (n,), generator=g)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_mixed_targets_sum_to_one_and_are_reproducible(mixup, cutmix):
    mixer = BatchMixer(10, mixup, cutmix, smoothing=0.1, seed=5, rank=1)
    x, y = batch()
    kinds = set()
    for iteration in range(1, 30):
        images, target = mixer(x, y, epoch=1, iteration=iteration)
        assert target.shape == (8, 10) and torch.allclose(target.sum(dim=1), torch.ones(8))
        assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
        again_images, again_target = mixer(x, y, epoch=1, iteration=iteration)
        assert torch.equal(images, again_images) and torch.equal(target, again_target)
        mix = mixer.draw(1, iteration, 16, 16)
        kinds.add(mix.kind)
        if mix.kind == "cutmix":  # the targets' share is the box's area
            top, bottom, left, right = mix.box
            assert mix.share == pytest.approx(1 - (bottom - top) * (right - left) / 256)
            assert torch.equal(images[1:, :, top:bottom, left:right], x[:-1, :, top:bottom, left:right] / 255.0)
        smoothed = soft_targets(y, 10, 0.1)
        assert torch.allclose(target, mix.share * smoothed + (1 - mix.share) * smoothed.roll(1, 0))
    assert kinds == {"mixup", "cutmix"} if mixup and cutmix else {"mixup" if mixup else "cutmix"}
    # a pure function of (seed, epoch, iteration, rank): change any one and the draw changes
    draws = {mixer.draw(1, 3, 16, 16), mixer.draw(2, 3, 16, 16), mixer.draw(1, 4, 16, 16),
             BatchMixer(10, mixup, cutmix, seed=5, rank=0).draw(1, 3, 16, 16),
             BatchMixer(10, mixup, cutmix, seed=6, rank=1).draw(1, 3, 16, 16)}
    assert len(draws) == 5


def test_mix_prob_leaves_that_share_of_batches_unmixed():
    x, y = batch()
    never = BatchMixer(10, mixup_alpha=0.4, prob=0.0)
    images, target = never(x, y, 1, 1)
    assert images is x and torch.equal(target, F.one_hot(y, 10).float())
    half = BatchMixer(10, mixup_alpha=0.4, prob=0.5)
    mixed = sum(half.draw(1, i, 16, 16).kind == "mixup" for i in range(1, 401))
    assert 160 < mixed < 240


def test_mixing_options_that_would_do_nothing_are_refused():
    with pytest.raises(ConfigError, match=r"--mix-prob 0.5 has no effect without --mixup-alpha or --cutmix-alpha"):
        TrainConfig(mix_prob=0.5)
    with pytest.raises(ConfigError, match=r"--ema-warmup-steps 10 has no effect without --ema-decay"):
        TrainConfig(ema_warmup_steps=10)
    with pytest.raises(ConfigError, match=r"--auto-augment trivialaugment is only read with --dataset folder"):
        TrainConfig(auto_augment="trivialaugment")
    with pytest.raises(ConfigError, match=r"--ema-decay must be < 1, got 1.0"):
        TrainConfig(ema_decay=1.0)


# --- EMA -------------------------------------------------------------------------------------------------------


def test_ema_weights_follow_the_formula_with_warm_up_and_survive_a_weights_only_round_trip():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    ema = ModelEma(model, decay=0.9, warmup_steps=4)
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(1, 7):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
            model[1].running_mean.add_(1.0)
        ema.update(model)
        d = 0.9 * min(1.0, step / 4)  # the decay grows linearly over the warm-up
        expected = [d * e + (1 - d) * p.detach() for e, p in zip(expected, model.parameters())]
        assert ema.decay_at(step) == pytest.approx(d)
    assert all(torch.allclose(e, a, atol=1e-6) for e, a in zip(expected, ema.module.parameters()))
    assert torch.equal(ema.module[1].running_mean, model[1].running_mean)  # buffers: copied
    assert not any(p.requires_grad for p in ema.module.parameters()) and not ema.module.training
    buffer = io.BytesIO()
    torch.save(ema.state_dict(), buffer)
    buffer.seek(0)
    restored = ModelEma(model, decay=0.9, warmup_steps=4)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.updates == 6 and all(torch.equal(a, b) for a, b in zip(restored.module.parameters(),
                                                                              ema.module.parameters()))


# --- accumulation and clipping -----------------------------------------------------------------------------------


def test_groups_never_cross_an_epoch_end():
    groups = StepGroups(3)
    positions = [groups.position(i, epoch_length=7) for i in range(1, 15)]
    assert [(p.first, p.last, p.size) for p in positions[:7]] == [
        (True, False, 3), (False, False, 3), (False, True, 3), (True, False, 3), (False, False, 3), (False, True, 3),
        (True, True, 1)]
    assert positions[7:] == positions[:7]  # the second epoch starts a fresh group
    assert groups.steps_per_epoch(7) == 3


def grad_norm(model):
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))


def run_steps(model, batches, accumulate, clip=None, epoch_length=None, before_step=None):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    if before_step is not None:
        optimizer.register_step_pre_hook(before_step)
    recipe = TrainRecipe(StepGroups(accumulate), clip_grad_norm=clip)
    trainer = create_trainer(model, optimizer, nn.CrossEntropyLoss(), CPU, recipe=recipe)
    outputs = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: outputs.append(dict(e.state.output)))
    trainer.run(batches, max_epochs=1, epoch_length=epoch_length or len(batches))
    return outputs


def test_accumulating_k_batches_equals_one_batch_of_k_times_the_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 5))  # no batch norm
    x, y = torch.rand(24, 3, 2, 2), torch.randint(5, (24,))
    accumulated, whole = copy.deepcopy(model), copy.deepcopy(model)
    outputs = run_steps(accumulated, [(x[i:i + 6], y[i:i + 6]) for i in range(0, 24, 6)], accumulate=4)
    run_steps(whole, [(x, y)], accumulate=1)
    assert [o[STEPPED] for o in outputs] == [False, False, False, True]
    for a, b in zip(accumulated.parameters(), whole.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), whole.parameters()))  # it did train


def test_clipping_bounds_the_norm_and_reports_the_norm_before_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    x, y = torch.rand(8, 3, 2, 2) * 100, torch.randint(5, (8,))
    reference = copy.deepcopy(model)
    nn.CrossEntropyLoss()(reference(x), y).backward()
    unclipped = grad_norm(reference)
    stepped_with = []  # the norm of the gradients the optimizer steps with
    (output,) = run_steps(model, [(x, y)], accumulate=1, clip=0.5,
                          before_step=lambda optimizer, args, kwargs: stepped_with.append(grad_norm(model)))
    assert unclipped > 0.5
    assert output["grad_norm"] == pytest.approx(float(unclipped), rel=1e-5)
    assert float(stepped_with[0]) == pytest.approx(0.5, rel=1e-4)


def test_the_cosine_schedule_counts_optimizer_steps():
    model = nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    config = TrainConfig(lr=1.0, lr_scheduler="cosine", warmup_epochs=0.0, epochs=2, accumulate_steps=3)
    trainer = Engine(lambda engine, batch: {STEPPED: True})
    lrs = []
    attach_lr_scheduler(trainer, Engine(lambda e, b: None), optimizer, config, epoch_length=7)
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: lrs.append(optimizer.param_groups[0]["lr"]))
    trainer.run(range(7), max_epochs=2)
    # 3 steps per epoch (groups of 3, 3 and 1 batches), 6 in all: the lr changes at each group's first batch only
    starts = [0, 3, 6, 7, 10, 13]
    assert [i for i in range(1, 14) if lrs[i] != lrs[i - 1]] == starts[1:]
    assert lrs[0] == 1.0 and lrs[13] > 0


# --- checkpoints and stops wait for the end of a group --------------------------------------------------------------


class Counter:
    def __init__(self):
        self.n = 0

    def state_dict(self):
        return {"n": self.n}

    def load_state_dict(self, state):
        self.n = state["n"]


def accumulating_engine(k):
    groups = StepGroups(k)
    return Engine(lambda e, b: {STEPPED: groups.position(e.state.iteration, e.state.epoch_length).last})


def test_a_checkpoint_due_inside_a_group_is_written_at_its_end(tmp_path):
    trainer = accumulating_engine(2)
    attach_training_checkpoint(trainer, {"counter": Counter()}, tmp_path, keep_last=100, every=2, synchronous=True)
    trainer.run(range(5), max_epochs=2)
    # epoch 1: groups (1, 2) (3, 4) (5); epoch 2: (6, 7) (8, 9) (10): saves due at 6 and 8 wait for 7 and 9
    assert sorted(checkpoint_iteration(p) for p in training_checkpoints(tmp_path)) == [2, 4, 5, 7, 9, 10]


def test_a_stop_waits_for_the_end_of_the_group(tmp_path):
    trainer = accumulating_engine(3)
    saved = []
    stop = attach_graceful_stop(trainer, lambda e: saved.append(e.state.iteration))
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=4), lambda e: setattr(stop, "signum", 15))
    trainer.run(range(10), max_epochs=1)
    assert saved == [6] and stop.stopped_at == 6 and trainer.state.iteration == 6


def test_a_handler_stop_inside_a_group_says_why_it_cannot_be_resumed_from_there():
    trainer = accumulating_engine(3)
    saved = []
    graceful = attach_graceful_stop(trainer, lambda e: None)
    stop = attach_handler_stop(trainer, lambda e: saved.append(e.state.iteration), graceful, finished=lambda: False)
    trainer.add_event_handler(Events.ITERATION_COMPLETED(once=5), lambda e: e.terminate())
    trainer.run(range(10), max_epochs=1)
    assert (stop.stopped_at, stop.saved, saved) == (5, False, [])
    assert stop.unsaved_reason == "it stopped inside a group of --accumulate-steps batches"
