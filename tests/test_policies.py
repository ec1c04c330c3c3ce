"""Augmentation policies (--auto-augment, --random-erasing): uint8 in and out, a pure function of the sample's seed."""

import pytest
import torch
from folder_data import write_digit_folders

from ignite_app.config import TrainConfig
from ignite_app.data.folder import build_folder_data
from ignite_app.data.loaders import build_loaders
from ignite_app.data.policies import POLICIES, apply_policy
from ignite_app.data.transforms import ImageTransform


def image(channels=3, size=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (channels, size, size), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", POLICIES[1:])
def test_a_policy_is_a_pure_function_of_the_seed(policy, channels):
    x = image(channels)
    draws = [apply_policy(x, seed, policy) for seed in range(12)]
    assert all(d.dtype == torch.uint8 and d.shape == x.shape for d in draws)
    assert torch.equal(apply_policy(x, 7, policy), draws[7])
    assert len({d.numpy().tobytes() for d in draws}) > 6  # the seeds draw different operations


def test_the_policy_leaves_the_callers_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    apply_policy(image(), 5, "trivialaugment", 0.5)
    assert torch.equal(torch.rand(3), expected)


def test_random_erasing_blanks_a_box_with_its_probability():
    x = image(seed=1) | 1  # no zero pixel: an erased one is black
    erased = [bool((apply_policy(x, s, "none", 0.5) == 0).any()) for s in range(200)]
    assert 70 < sum(erased) < 130
    assert torch.equal(apply_policy(x, 3, "none", 0.0), x)


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown augmentation policy 'autoaugment'; available: none, "
                                         r"trivialaugment, randaugment, augmix"):
        apply_policy(image(), 0, "autoaugment")
    with pytest.raises(ValueError, match=r"apply_policy takes a uint8 \(C, H, W\) image, got torch.float32"):
        apply_policy(image().float(), 0, "augmix")


def test_the_folder_transform_applies_the_policy_after_the_crop_to_training_samples_only():
    transform = ImageTransform(16, 3, augment=True, policy="randaugment", erasing=0.25)
    x = image()
    assert transform.random and torch.equal(transform(x), x)  # no seed: validation and prediction
    cropped = ImageTransform(16, 3, augment=True)(x, seed=9)
    assert torch.equal(transform(x, seed=9), apply_policy(cropped, 9, "randaugment", 0.25))
    assert ImageTransform(16, 3, policy="augmix").random and not ImageTransform(16, 3).random


def test_a_folder_run_with_a_policy_loads_the_same_batches_with_workers(tmp_path):
    root = write_digit_folders(tmp_path / "digits", train=12, val=4, rgb=True)
    config = TrainConfig(dataset="folder", data_dir=root, image_size=16, batch_size=8, auto_augment="trivialaugment",
                         random_erasing=0.5)
    data = build_folder_data(config)
    assert data.train.takes_sample_seeds and not data.val.takes_sample_seeds

    def first_epoch(workers):
        train, _ = build_loaders(data, TrainConfig(**{**config.to_dict(), "num_workers": workers}))
        train.batch_sampler.set_epoch(1)
        return torch.cat([x for x, _ in train])

    in_process = first_epoch(0)
    assert torch.equal(first_epoch(2), in_process)  # the worker that loads a sample changes nothing
