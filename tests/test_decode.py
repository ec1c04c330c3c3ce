"""Each decode path gives Pillow's pixels (or stays within its stated tolerance), in the right orientation."""

import warnings

import numpy as np
import pytest
import torch
from image_files import exif_orientation, photo, save
from PIL import Image, ImageOps, JpegImagePlugin
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

from ignite_app.data import decode
from ignite_app.data.decode import DRAFT_MARGIN, DRAFT_TOLERANCE, JPEG_TOLERANCE, UnreadableImage, decode_image, luma


def pillow(path, mode="RGB"):
    """Pillow's full decode, EXIF orientation applied, as a (C, H, W) tensor: the reference."""
    with Image.open(path) as image:
        array = np.array(ImageOps.exif_transpose(image).convert(mode))
    return torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1)).permute(2, 0, 1)


def max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.int() - b.int()).abs().max().item()


@pytest.fixture
def spy_draft(monkeypatch):
    """The sizes :meth:`Image.draft` was asked for."""
    calls = []
    real = JpegImagePlugin.JpegImageFile.draft  # JPEG files have their own draft

    def draft(self, mode, size):
        calls.append(size)
        return real(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", draft)
    return calls


@pytest.mark.parametrize("options", [{"subsampling": 0}, {"subsampling": 1}, {"subsampling": 2, "quality": 75},
                                     {"progressive": True}])
def test_jpeg_through_torchvision_gives_pillows_pixels(tmp_path, options, spy_draft):
    path = save(tmp_path / "photo.jpg", photo(48, 64), **options)
    pixels = decode_image(path)
    assert pixels.dtype == torch.uint8 and pixels.shape == (3, 48, 64)
    assert max_diff(pixels, pillow(path)) <= JPEG_TOLERANCE  # measured 0 with this torchvision and Pillow
    assert not spy_draft  # the torchvision path, not Pillow's


def test_the_pillow_fallback_gives_the_same_jpeg_pixels(tmp_path, monkeypatch):
    path = save(tmp_path / "photo.jpg", photo(48, 64))
    fast = decode_image(path)
    monkeypatch.setattr(decode, "_JPEG_DECODER", [None])  # as if torchvision had no image extension
    assert max_diff(decode_image(path), fast) <= JPEG_TOLERANCE
    assert torch.equal(decode_image(path), pillow(path))


def test_grey_is_pillows_luma_not_torchvisions_grey_mode(tmp_path):
    path = save(tmp_path / "photo.jpg", photo(96, 128, seed=3))
    grey = decode_image(path, channels=1)
    assert grey.shape == (1, 96, 128) and torch.equal(grey, pillow(path, "L"))
    torchvision_grey = decode_jpeg(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8),
                                   mode=ImageReadMode.GRAY)
    assert max_diff(torchvision_grey, grey) >= 3  # measured 6 on this crop, 12 to 27 on 500x375 ones
    rgb = torch.randint(0, 256, (3, 50, 50), dtype=torch.uint8)
    expected = np.array(Image.fromarray(rgb.permute(1, 2, 0).numpy()).convert("L"))
    assert torch.equal(luma(rgb)[0], torch.from_numpy(expected))  # bit-exact on every colour tried


def test_a_grey_jpeg_is_decoded_as_grey_or_repeated(tmp_path):
    path = save(tmp_path / "grey.jpg", np.asarray(Image.fromarray(photo(40, 30)).convert("L")))
    assert torch.equal(decode_image(path, 1), pillow(path, "L"))
    assert torch.equal(decode_image(path, 3), pillow(path, "L").expand(3, -1, -1))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_honoured_on_every_path(tmp_path, orientation, spy_draft):
    small = save(tmp_path / "small.jpg", photo(40, 60), exif=exif_orientation(orientation))
    expected = pillow(small)
    assert expected.shape[1:] == ((40, 60) if orientation == 3 else (60, 40))
    assert max_diff(decode_image(small), expected) <= JPEG_TOLERANCE
    large = save(tmp_path / "large.jpg", photo(160, 240), exif=exif_orientation(orientation))
    drafted = decode_image(large, short_side=20)  # 160 >= 4 x 20: a reduced decode
    assert spy_draft and drafted.shape == decode_image(large, short_side=20).shape
    full = v2.Resize(20, antialias=True)(pillow(large))
    assert drafted.shape == full.shape
    assert (drafted.float() - full.float()).abs().mean() < 3  # the image is turned, not just resized


@pytest.mark.parametrize(("name", "short_side", "scale"), [("flower.jpg", 64, 2), ("china.jpg", 100, 2),
                                                          ("flower.jpg", 32, 4)])
def test_the_draft_path_is_within_its_tolerance_of_the_full_decode(tmp_path, spy_draft, name, short_side, scale):
    path = save(tmp_path / "big.jpg", photo(427, 640, name=name), quality=90)
    drafted = decode_image(path, short_side=short_side)  # 427 >= 4 x short side: a reduced decode
    assert len(spy_draft) == 1 and min(spy_draft[0]) == DRAFT_MARGIN * short_side
    with Image.open(path) as image:
        image.draft(None, spy_draft[0])
        assert image.size == (640 // scale, -(-427 // scale))  # the DCT scale Pillow chose
    full = v2.Resize(short_side, antialias=True)(pillow(path))
    assert drafted.shape == full.shape  # sized from the full image, not from the reduced one
    diff = (drafted.int() - full.int()).abs().float()
    assert diff.mean() <= DRAFT_TOLERANCE["mean"] and diff.quantile(0.99) <= DRAFT_TOLERANCE["p99"]


def test_a_jpeg_under_four_times_the_target_is_decoded_in_full(tmp_path, spy_draft):
    path = save(tmp_path / "big.jpg", photo(427, 640), quality=90)
    assert decode_image(path, short_side=107).shape == (3, 107, 160) and not spy_draft  # 427 < 4 x 107


def test_the_full_path_shrinks_exactly_as_v2_resize(tmp_path):
    path = save(tmp_path / "photo.jpg", photo(75, 100))
    assert torch.equal(decode_image(path, short_side=50), v2.Resize(50, antialias=True)(pillow(path)))
    assert torch.equal(decode_image(path, short_side=75), pillow(path))  # never enlarged
    assert torch.equal(decode_image(path, short_side=400), pillow(path))


@pytest.mark.parametrize(("name", "mode"), [("rgb.png", "RGB"), ("rgba.png", "RGBA"), ("la.png", "LA"),
                                            ("grey.bmp", "L"), ("rgb.webp", "RGB"), ("rgb.tiff", "RGB"),
                                            ("cmyk.jpg", "CMYK")])
def test_other_formats_through_pillow_give_pillows_pixels(tmp_path, name, mode):
    image = Image.fromarray(photo(20, 30)).convert(mode)
    path = save(tmp_path / name, image, **({"lossless": True} if name.endswith("webp") else {}))
    for channels, target in ((3, "RGB"), (1, "L")):
        assert torch.equal(decode_image(path, channels), pillow(path, target)), (name, channels)


def test_sixteen_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)).save(deep)
    assert Image.open(deep).mode.startswith("I")
    assert decode_image(deep, 1)[0, 0, 0] == 128 and decode_image(deep, 3)[:, 0, 0].tolist() == [128] * 3
    floats = tmp_path / "float.tiff"
    Image.fromarray(np.full((4, 4), 300.0, dtype=np.float32)).save(floats)
    assert decode_image(floats, 1)[0, 0, 0] == 255  # taken as 0..255 and clipped


def test_a_palette_image_with_transparency_converts_without_warning(tmp_path):
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    image.save(tmp_path / "p.gif", transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_image(tmp_path / "p.gif", 3)[:, 0, 0].tolist() == [10, 20, 30]
        assert decode_image(tmp_path / "p.gif", 1)[0, 0, 0] == luma(torch.tensor([[[10]], [[20]], [[30]]],
                                                                                 dtype=torch.uint8))[0, 0, 0]


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("cut.jpg", lambda p: p[: len(p) // 2], "Image is incomplete or truncated"),
    ("cut.png", lambda p: p[:-200], "truncated"),
    ("empty.jpg", lambda p: b"", "cannot identify image file"),
    ("text.png", lambda p: b"not an image", "cannot identify image file"),
])
def test_an_unreadable_file_raises_with_its_path_and_reason(tmp_path, name, content, reason):
    good = save(tmp_path / ("good" + name[-4:]), photo(64, 64))
    path = tmp_path / name
    path.write_bytes(content(good.read_bytes()))
    with pytest.raises(UnreadableImage, match=rf"{name}: .*{reason}") as info:
        decode_image(path)
    assert info.value.path == str(path) and reason in info.value.reason


def test_a_missing_file_says_so_once(tmp_path):
    with pytest.raises(UnreadableImage) as info:
        decode_image(tmp_path / "gone.jpg")
    assert str(info.value) == f"{tmp_path / 'gone.jpg'}: No such file or directory"


def test_pillows_large_image_warning_is_followed_by_one_that_names_the_file(tmp_path, monkeypatch):
    path = save(tmp_path / "large.png", np.zeros((8, 8), dtype=np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 40)  # 64 pixels: over the limit, under twice it (an error)
    with pytest.warns(Image.DecompressionBombWarning) as caught:
        assert decode_image(path, 1).shape == (1, 8, 8)
    assert any(f"{path} has 64 pixels, more than Pillow's limit of 40" in str(w.message) for w in caught)


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="channels must be 1 \\(grey\\) or 3 \\(RGB\\), got 4"):
        decode_image(tmp_path / "x.jpg", 4)
    with pytest.raises(ValueError, match="short_side must be a positive number of pixels or None, got 0"):
        decode_image(tmp_path / "x.jpg", 3, 0)
