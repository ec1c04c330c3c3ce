"""Decoding, conversion, augmentation and normalisation of image files."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ignite_app.data.transforms import ImageTransform, PixelStats, UnreadableImage, augment, load_image


def save(path, array):
    Image.fromarray(array).save(path)
    return path


def test_images_are_converted_to_the_channels_and_resized(tmp_path):
    rgb = save(tmp_path / "rgb.png", np.full((10, 20, 3), (255, 0, 0), dtype=np.uint8))
    grey = save(tmp_path / "grey.bmp", np.full((5, 5), 7, dtype=np.uint8))
    assert load_image(rgb, 3, 8).shape == (3, 8, 8) and load_image(rgb, 3, 8)[:, 4, 4].tolist() == [255, 0, 0]
    assert load_image(rgb, 1, 8).shape == (1, 8, 8)
    assert load_image(rgb, 1, 8)[0, 4, 4] == 76  # Pillow's L = 0.299 R + 0.587 G + 0.114 B
    assert load_image(grey, 3, 8)[:, 0, 0].tolist() == [7, 7, 7] and load_image(grey, 3, 8).dtype == torch.uint8


def test_pillows_large_image_warning_is_followed_by_one_that_names_the_file(tmp_path, monkeypatch):
    path = save(tmp_path / "large.png", np.zeros((8, 8), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # 64 pixels: over the limit, under twice it (an error)
    with pytest.warns(Image.DecompressionBombWarning) as caught:
        assert load_image(path, 1, 8).shape == (1, 8, 8)  # a warning only: the image is still decoded
    assert [str(w.message) for w in caught if str(path) in str(w.message)] == [
        f"{path} has 64 pixels, more than Pillow's limit of 40 (the DecompressionBombWarning is about this file); "
        "it is decoded, but above 80 pixels an image is refused: resize it"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_image(path, 1, 8)  # at the limit: no warning


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    assert load_image(path, 1, 4)[0, 0, 0] == 128  # half of the 16-bit range, not clipped to 255


def test_a_palette_image_with_transparency_converts_without_warning(tmp_path, recwarn):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.info["transparency"] = 0
    image.save(tmp_path / "p.gif", transparency=0)
    assert load_image(tmp_path / "p.gif", 3, 4)[:, 0, 0].tolist() == [10, 20, 30]
    assert not [w for w in recwarn if "Palette" in str(w.message)]


@pytest.mark.parametrize("content", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\x00" * 30])
def test_an_undecodable_file_raises_with_its_path(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(UnreadableImage, match=r"broken\.png: ") as info:
        load_image(path, 3, 8)
    assert info.value.path == str(path) and info.value.reason


def test_a_truncated_image_is_unreadable(tmp_path):
    path = save(tmp_path / "full.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(UnreadableImage, match="full.png"):
        load_image(path, 3, 8)


def test_augmentation_is_a_pure_function_of_the_seed():
    image = np.arange(3 * 16 * 16).reshape(3, 16, 16)
    draws = [augment(image, s) for s in range(40)]
    assert all(d.shape == image.shape for d in draws)
    assert np.array_equal(draws[3], augment(image, 3))
    assert len({d.sum() for d in draws}) > 10  # the crops differ, even for neighbouring seeds
    padded = torch.nn.functional.pad(torch.from_numpy(image).double(), (2, 2, 2, 2), mode="reflect").numpy()
    windows = [padded[:, t:t + 16, l:l + 16] for t in range(5) for l in range(5)]  # 16 // 8 = 2 pixels of padding
    kept = [any(np.array_equal(d, w) for w in windows) for d in draws]
    flipped = [any(np.array_equal(d[..., ::-1], w) for w in windows) for d in draws]
    assert all(k or f for k, f in zip(kept, flipped))  # every draw is a window of the padded image, maybe mirrored
    assert any(kept) and any(flipped)


def test_the_transform_keeps_uint8_pixels_and_augments_only_with_a_seed():
    transform = ImageTransform(8, 3, augment=True)
    image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    assert torch.equal(transform(image), image)  # no seed: validation and prediction
    assert transform(image, seed=5).dtype == torch.uint8
    assert torch.equal(transform(image, seed=5), transform(image, seed=5))
    assert not all(torch.equal(transform(image, seed=s), transform(image)) for s in range(10))
    plain = ImageTransform(8, 3)
    assert torch.equal(plain(image, seed=5), plain(image))


def test_pixel_stats_are_exact_and_independent_of_the_order():
    rng = np.random.default_rng(1)
    images = [torch.from_numpy(rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)) for _ in range(6)]
    forward, backward = PixelStats(3), PixelStats(3)
    for image in images:
        forward.add(*PixelStats.of(image))
    for image in reversed(images):
        backward.add(*PixelStats.of(image))
    assert forward.mean_std() == backward.mean_std()  # exact integer sums: bit-identical
    pixels = torch.stack(images).double().div(255)
    mean, std = forward.mean_std()
    np.testing.assert_allclose(mean, pixels.mean(dim=(0, 2, 3)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(dim=(0, 2, 3)).numpy(), rtol=1e-12)
    constant = PixelStats(1)
    constant.add(*PixelStats.of(torch.full((1, 2, 2), 9, dtype=torch.uint8)))
    assert constant.mean_std()[1] == (1.0,)  # a constant channel is left unscaled, not divided by zero


@pytest.mark.parametrize(("size", "crop_pct", "interpolation"), [(16, 0.875, "bilinear"), (20, 0.9, "bicubic")])
def test_a_pretrained_crop_is_torchvisions_resize_and_centre_crop(tmp_path, size, crop_pct, interpolation):
    """--normalization pretrained on files: the short side to floor(size / crop_pct), the centre size x size, with
    the configuration's interpolation: pixel for pixel what torchvision's evaluation transform gives."""
    from torchvision import transforms as T

    rng = np.random.default_rng(0)
    path = tmp_path / "photo.png"
    Image.fromarray(rng.integers(0, 256, (31, 47, 3), dtype=np.uint8)).save(path)  # landscape, odd sides
    mode = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[interpolation]
    reference = T.Compose([T.Resize(int(size / crop_pct), interpolation=mode), T.CenterCrop(size), T.PILToTensor()])
    with Image.open(path) as image:
        expected = reference(image.convert("RGB"))
    ours = ImageTransform(size, 3, crop_pct=crop_pct, interpolation=interpolation).load(path)
    assert ours.shape == (3, size, size) and torch.equal(ours, expected)
