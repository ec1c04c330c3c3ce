"""The mean and std: exact integer sums over a seeded sample, the same with any number of workers."""

import numpy as np
import torch
from image_files import photo_folder

from ignite_app.data.pipeline import FileTable, ImageDataset, ImageLoader
from ignite_app.data.transforms import EvalTransform
from ignite_app.data.stats import PixelStats, sample_pixel_stats


def test_pixel_stats_of_a_seeded_sample_are_exact_and_list_the_unreadable(tmp_path):
    paths, labels = photo_folder(tmp_path, count=9)
    (tmp_path / "c0" / "00.jpg").write_bytes(b"broken")
    dataset = ImageDataset(FileTable.from_paths(paths, labels), ImageLoader(3, 37), EvalTransform(32))
    sample = sample_pixel_stats(dataset, 3, max_images=6, seed=1)
    chosen = np.sort(np.random.default_rng(1).choice(9, 6, replace=False))
    readable = [i for i in chosen if i != 0]
    pixels = torch.stack([dataset[int(i)][0] for i in readable]).double() / 255
    mean, std = sample.stats.mean_std()
    np.testing.assert_allclose(mean, pixels.mean(dim=(0, 2, 3)).numpy(), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(dim=(0, 2, 3)).numpy(), rtol=1e-12)
    assert sample.images == len(readable)
    assert [b.path for b in sample.unreadable] == ([paths[0]] if 0 in chosen else [])
    with_workers = sample_pixel_stats(dataset, 3, max_images=6, seed=1, num_workers=2)
    assert with_workers.stats == sample.stats
    assert [b.path for b in with_workers.unreadable] == [b.path for b in sample.unreadable]
    everything = sample_pixel_stats(dataset, 3, max_images=100)  # capped at the dataset's 9
    assert everything.images == 8 and [b.path for b in everything.unreadable] == [paths[0]]


def test_pixel_stats_are_exact_and_independent_of_the_order():
    rng = np.random.default_rng(1)
    images = [torch.from_numpy(rng.integers(0, 256, (3, 5, 7), dtype=np.uint8)) for _ in range(6)]
    forward, backward = PixelStats(3), PixelStats(3)
    for image in images:
        forward.add(*PixelStats.of(image))
    for image in reversed(images):
        backward.add(*PixelStats.of(image))
    assert forward.mean_std() == backward.mean_std()


def test_float_images_of_a_registered_dataset_are_summed_on_the_same_scale():
    images = torch.rand(30, 3, 5, 7, generator=torch.Generator().manual_seed(0))  # float in [0, 1]
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(30, dtype=torch.long))
    sample = sample_pixel_stats(dataset, 3, max_images=12, seed=4)
    chosen = torch.from_numpy(np.sort(np.random.default_rng(4).choice(30, 12, replace=False)))
    mean, std = sample.stats.mean_std()
    np.testing.assert_allclose(mean, images[chosen].double().mean(dim=(0, 2, 3)).numpy(), rtol=1e-9)
    np.testing.assert_allclose(std, images[chosen].double().std(dim=(0, 2, 3)).numpy(), rtol=1e-9)
    assert sample.images == 12
