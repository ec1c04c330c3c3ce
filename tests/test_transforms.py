"""The transforms: seeded uint8 augmentation (a pure function of the sample's seed), the validation view."""

import pytest
import torch
from image_files import photo, save
from torchvision.transforms import v2

from ignite_app.data.decode import decode_image
from ignite_app.data.pipeline import ImageLoader
from ignite_app.data.transforms import EvalTransform, PaddedCropTransform, TrainTransform, source_short_side


def test_source_short_side_is_the_ceiling_of_size_over_crop_fraction():
    assert source_short_side(224) == 256 and source_short_side(224, 0.9) == 249 and source_short_side(32) == 37
    with pytest.raises(ValueError, match=r"crop_fraction must be in \(0, 1\].*got 1.5"):
        source_short_side(224, 1.5)


def test_training_augmentation_is_a_pure_function_of_the_seed_and_leaves_the_global_rng_alone():
    image = torch.from_numpy(photo(60, 80)).permute(2, 0, 1)
    transform = TrainTransform(32, scale_min=0.25)
    state = torch.get_rng_state()
    draws = [transform(image, seed) for seed in range(12)]
    assert torch.equal(torch.get_rng_state(), state)  # with 0 workers this is the training process's stream
    assert all(d.dtype == torch.uint8 and d.shape == (3, 32, 32) for d in draws)
    assert torch.equal(transform(image, 5), draws[5]) and len({d.sum().item() for d in draws}) > 8
    torch.manual_seed(5)  # the oracle: the same v2 steps with the global generator seeded by hand
    expected = v2.Compose([v2.RandomResizedCrop(32, scale=(0.25, 1.0), antialias=True),
                           v2.RandomHorizontalFlip()])(image)
    assert torch.equal(draws[5], expected)
    with pytest.raises(TypeError, match=r"needs each sample's seed: fetch training samples by SampleKey"):
        transform(image, None)


def test_padded_crop_is_a_window_of_the_zero_padded_image():
    image = torch.randint(1, 256, (3, 8, 8), dtype=torch.uint8)
    padded = torch.nn.functional.pad(image, (4, 4, 4, 4))
    windows = [padded[:, top:top + 8, left:left + 8] for top in range(9) for left in range(9)]
    cifar, mnist = PaddedCropTransform(8, 4, flip=True), PaddedCropTransform(8, 2, flip=False)
    flips = 0
    for seed in range(20):
        out = cifar(image, seed)
        plain = any(torch.equal(out, w) for w in windows)
        mirrored = any(torch.equal(out.flip(-1), w) for w in windows)
        assert plain or mirrored
        flips += not plain
        assert any(torch.equal(mnist(image, seed), w) for w in windows)
    assert 0 < flips < 20


def test_validation_is_resize_and_centre_crop_exactly(tmp_path):
    path = save(tmp_path / "p.jpg", photo(75, 100))
    full = decode_image(path)
    expected = v2.CenterCrop(32)(v2.Resize(37, antialias=True)(full))
    source = ImageLoader(3, source_short_side(32))(str(path))  # already shrunk: validation crops it only
    assert source.shape == (3, 37, 49) and torch.equal(EvalTransform(32)(source), expected)
    small = save(tmp_path / "s.png", photo(20, 24))  # smaller than the source size: enlarged for validation
    assert torch.equal(EvalTransform(32)(decode_image(small)), v2.CenterCrop(32)(v2.Resize(37)(decode_image(small))))


def test_a_policy_runs_on_the_crop_under_the_samples_seed():
    """The hook for augmentation policies: policy(uint8 crop, seed), with torch's generator seeded as the crop's."""
    image = torch.from_numpy(photo(60, 80)).permute(2, 0, 1)
    seen = []

    def policy(crop, seed):
        seen.append(seed)
        noise = torch.randint(0, 2, crop.shape, dtype=torch.uint8)  # draws from the seeded global generator
        return crop ^ noise

    plain, with_policy = TrainTransform(32), TrainTransform(32, policy=policy)
    out = with_policy(image, 11)
    assert seen == [11] and out.dtype == torch.uint8 and out.shape == (3, 32, 32)
    assert torch.equal(with_policy(image, 11), out) and not torch.equal(out, plain(image, 11))
    assert ((out ^ plain(image, 11)) <= 1).all()  # the same crop and flip, then the policy
