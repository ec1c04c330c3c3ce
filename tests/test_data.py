import numpy as np
import pytest
import torch

from ignite_app.config import TrainConfig
from ignite_app.data import EpochBatchSampler, ShardSampler, build_loaders
from ignite_app.data.builtin import TensorImageDataset, load_digits_data


def flat(batches):
    return [i for batch in batches for i in batch]


def test_each_epoch_is_a_fresh_permutation_reproducible_from_the_seed():
    sampler = EpochBatchSampler(100, 8, seed=3)
    orders = {}
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        orders[epoch] = flat(sampler)
        assert sorted(orders[epoch]) == list(range(100))
    assert orders[1] != orders[2]
    again = EpochBatchSampler(100, 8, seed=3)
    again.set_epoch(2)
    assert flat(again) == orders[2]
    other_seed = EpochBatchSampler(100, 8, seed=4)
    other_seed.set_epoch(2)
    assert flat(other_seed) != orders[2]


def test_start_skips_batches_for_one_iterator_only():
    sampler = EpochBatchSampler(50, 4, seed=0)
    sampler.set_epoch(5)
    full = list(sampler)
    sampler.set_epoch(5, start=7)
    assert list(sampler) == full[7:]
    assert list(sampler) == full  # the next iterator starts at the beginning again


@pytest.mark.parametrize("world_size", [2, 3])
def test_ranks_split_every_epoch_into_equal_disjoint_shares(world_size):
    size = 101
    shards = []
    for rank in range(world_size):
        sampler = EpochBatchSampler(size, 4, seed=1, rank=rank, world_size=world_size)
        sampler.set_epoch(2)
        shards.append(flat(sampler))
    assert len({len(EpochBatchSampler(size, 4, 1, r, world_size)) for r in range(world_size)}) == 1
    everything = flat(shards)
    assert set(everything) == set(range(size))
    assert len(everything) - size == -size % world_size  # only the wrap-around padding repeats


def test_num_batches_sets_the_epoch_length_and_cycles_through_passes():
    sampler = EpochBatchSampler(10, 4, seed=0, num_batches=7)  # 3 batches per pass
    sampler.set_epoch(1)
    batches = list(sampler)
    assert len(sampler) == 7 and len(batches) == 7
    assert sorted(flat(batches[0:3])) == list(range(10)) and sorted(flat(batches[3:6])) == list(range(10))
    assert flat(batches[0:3]) != flat(batches[3:6])


def test_a_last_batch_of_one_sample_is_dropped():
    sampler = EpochBatchSampler(9, 4, seed=0)
    sampler.set_epoch(1)
    assert [len(b) for b in sampler] == [4, 4]
    assert [len(b) for b in EpochBatchSampler(10, 4, seed=0)] == [4, 4, 2]


def test_validation_shards_cover_every_sample_exactly_once():
    shards = [list(ShardSampler(11, rank, 3)) for rank in range(3)]
    assert sorted(flat(shards)) == list(range(11))
    assert [len(ShardSampler(11, rank, 3)) for rank in range(3)] == [4, 4, 3]


def test_digits_split_is_fixed_stratified_with_training_statistics():
    data = load_digits_data()
    assert (len(data.train), len(data.val)) == (1438, 359)
    assert data.classes == tuple(str(d) for d in range(10)) and data.input_shape == (1, 8, 8)
    train_y, val_y = data.train.labels.numpy(), data.val.labels.numpy()
    np.testing.assert_allclose(np.bincount(val_y) / len(val_y), np.bincount(train_y) / len(train_y), atol=0.01)
    train = data.train.images.float() / 255  # uint8 pixels; the model's preprocessing normalises them
    assert data.mean == pytest.approx((float(train.mean()),)) and data.std == pytest.approx((float(train.std()),))
    assert torch.equal(load_digits_data().val.images, data.val.images)  # same split every time


def test_digits_are_scikit_learns_images_and_labels():
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    data = load_digits_data()
    pixels = torch.cat([data.train.images, data.val.images]).float() * 16 / 255  # back to the 0..16 ink levels
    ours = zip(map(tuple, pixels.view(-1, 64).round().int().tolist()),
               torch.cat([data.train.labels, data.val.labels]).tolist())
    assert sorted(ours) == sorted(zip(map(tuple, images.astype(int).tolist()), labels.tolist()))


def test_batched_fetch_matches_per_sample_fetch():
    dataset = TensorImageDataset(torch.randn(20, 1, 4, 4), torch.arange(20))
    x, y = dataset.__getitems__([3, 7, 1])
    assert torch.equal(x, torch.stack([dataset[i][0] for i in (3, 7, 1)])) and y.tolist() == [3, 7, 1]
    with pytest.raises(ValueError, match=r"expected images \(N, C, H, W\) and labels \(N,\), got \(20, 16\)"):
        TensorImageDataset(torch.randn(20, 16), torch.arange(20))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loaders_yield_the_sampler_batches(num_workers):
    data = load_digits_data()
    train, val = build_loaders(data, TrainConfig(batch_size=100, num_workers=num_workers, epoch_length=3))
    train.batch_sampler.set_epoch(1)
    expected = [data.train.labels[b] for b in train.batch_sampler]
    train.batch_sampler.set_epoch(1)
    got = [y for _, y in train]
    assert len(got) == 3 and all(torch.equal(a, b) for a, b in zip(got, expected))
    assert sum(len(y) for _, y in val) == 359


# --- --sampler balanced -------------------------------------------------------------------------------------------

IMBALANCED = torch.tensor([0] * 200 + [1] * 20 + [2] * 7 + [3] * 73)  # 300 samples; class 4 has none


def balanced(rank=0, world_size=1, **kwargs):
    from ignite_app.data.samplers import BalancedBatchSampler

    return BalancedBatchSampler(IMBALANCED, 5, 16, seed=2, rank=rank, world_size=world_size, **kwargs)


def test_the_balanced_sampler_draws_every_class_equally_each_epoch():
    sampler = balanced()
    assert len(sampler) == 19  # one pass: 300 samples, a last batch of 12 included
    orders = {}
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        orders[epoch] = flat(sampler)
        assert len(orders[epoch]) == 300  # as many samples as the training set
        assert torch.bincount(IMBALANCED[orders[epoch]], minlength=5).tolist() == [75, 75, 75, 75, 0]
    assert orders[1] != orders[2]  # a fresh draw per epoch...
    again = balanced()
    again.set_epoch(1)
    assert flat(again) == orders[1]  # ... reproducible from (seed, epoch)
    rare = [i for i in orders[1] if IMBALANCED[i] == 2]
    assert len(rare) == 75 and set(rare) == set(range(220, 227))  # with replacement: 7 images drawn 75 times


@pytest.mark.parametrize("world_size", [2, 3])
def test_the_balanced_samplers_shards_are_disjoint_and_complete(world_size):
    single = balanced()
    single.set_epoch(3)
    whole = flat(single)  # the pass's drawn order
    shards = []
    for rank in range(world_size):
        sampler = balanced(rank, world_size)
        sampler.set_epoch(3)
        shards.append(flat(sampler))
    per_rank = -(-300 // world_size)
    assert {len(s) for s in shards} == {per_rank}
    # position p of the order (padded by wrapping around) goes to rank p % world_size: interleaving the shards gives
    # the single process's order back, every position exactly once
    interleaved = [shards[p % world_size][p // world_size] for p in range(per_rank * world_size)]
    assert interleaved == whole + whole[:per_rank * world_size - 300]


def test_the_balanced_sampler_resumes_mid_epoch_and_gives_each_position_its_own_seed():
    sampler = balanced(with_seeds=True)
    sampler.set_epoch(4)
    full = list(sampler)
    sampler.set_epoch(4, start=5)
    assert list(sampler) == full[5:]
    seeds = [key.seed for key in flat(full)]
    assert len(set(seeds)) == len(seeds)  # a repeated image is augmented differently at each position


def test_the_loader_uses_the_balanced_sampler_with_the_datasets_labels():
    data = load_digits_data()
    train, _ = build_loaders(data, TrainConfig(batch_size=100, sampler="balanced"))
    train.batch_sampler.set_epoch(1)
    labels = torch.cat([y for _, y in train])
    assert sorted(torch.bincount(labels).tolist()) == [143] * 2 + [144] * 8  # 1438 samples over 10 classes
