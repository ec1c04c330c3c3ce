"""Augmentation policies (--auto-augment, --random-erasing): uint8 in and out, a pure function of the sample's seed."""

import pytest
import torch
from folder_data import write_digit_folders
from standard_files import write_cifar10

from ignite_app.config import TrainConfig
from ignite_app.data.builtin import load_standard_data
from ignite_app.data.folder import build_folder_data
from ignite_app.data.loaders import build_loaders
from ignite_app.data.policies import POLICIES, apply_policy, sample_policy
from ignite_app.data.transforms import PaddedCropTransform, TrainTransform


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


def test_the_training_transforms_apply_the_policy_after_the_crop_from_a_seed_of_its_own():
    policy = sample_policy("randaugment", 0.25)
    x = image(size=24)
    with_policy = TrainTransform(16, policy=policy)
    cropped = TrainTransform(16)(x, 9)
    assert torch.equal(with_policy(x, 9), policy(cropped, 9))  # the same crop, then the policy
    assert not torch.equal(policy(cropped, 9), apply_policy(cropped, 9, "randaugment", 0.25))  # not the crop's draws
    padded = PaddedCropTransform(16, 2, flip=True, policy=policy)
    assert torch.equal(padded(x[:, :16, :16], 4), policy(PaddedCropTransform(16, 2, flip=True)(x[:, :16, :16], 4), 4))
    assert sample_policy("none", 0.0) is None


def test_with_no_augment_the_policy_runs_on_the_validation_view(tmp_path):
    root = write_digit_folders(tmp_path / "digits", train=6, val=2, rgb=True)
    config = TrainConfig(dataset="folder", data_dir=root, image_size=16, augment=False, auto_augment="augmix")
    data = build_folder_data(config)
    assert data.train.takes_sample_seeds and not data.val.takes_sample_seeds
    plain = data.val.transform(data.train.loader(data.train.table.path(0)))
    assert torch.equal(data.train[(0, 5)][0], sample_policy("augmix")(plain, 5))
    no_policy = build_folder_data(TrainConfig(**{**config.to_dict(), "auto_augment": "none"}))
    assert not no_policy.train.takes_sample_seeds


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


@pytest.mark.parametrize("augment", [True, False])
def test_a_standard_dataset_applies_the_policy_to_its_training_samples(tmp_path, augment):
    write_cifar10(tmp_path)
    config = TrainConfig(dataset="cifar10", data_dir=tmp_path, augment=augment, auto_augment="trivialaugment")
    data = load_standard_data(config)
    assert data.train.takes_sample_seeds and not getattr(data.val, "takes_sample_seeds", False)
    image = data.train.images[3]
    view = PaddedCropTransform(32, 4, flip=True)(image, 11) if augment else image
    assert torch.equal(data.train[(3, 11)][0], sample_policy("trivialaugment")(view, 11))
