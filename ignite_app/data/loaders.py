"""The data loaders of a run: training batches from :class:`EpochBatchSampler`, validation from
:class:`ShardSampler`.

Batches are uint8 images: on CUDA they are collated into pinned memory and copied to the device without blocking
(:func:`ignite_app.engines.prepare_batch`), where the model's preprocessing converts and normalises them. Workers are
persistent, and ``--num-workers`` defaults to what the machine has (:attr:`TrainConfig.loader_workers`): augmentation
draws from per-sample seeds, so the results do not depend on it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ignite_app.config import TrainConfig
from ignite_app.data.samplers import BalancedBatchSampler, EpochBatchSampler, ShardSampler
from ignite_app.data.spec import DataBundle, dataset_labels


def _loader_kwargs(dataset: Dataset, num_workers: int, pin_memory: bool, seed: int,
                   prefetch: int | None = None) -> dict[str, Any]:
    return {
        "num_workers": num_workers,
        "persistent_workers": num_workers > 0,
        "prefetch_factor": prefetch if num_workers > 0 else None,
        "pin_memory": pin_memory,
        "collate_fn": getattr(dataset, "collate_fn", None),
        # The loader draws its workers' base seed from this generator, not from the global RNG, so creating an
        # iterator (an evaluation, say) does not shift the dropout masks of the training that follows.
        "generator": torch.Generator().manual_seed(seed),
    }


def build_loaders(data: DataBundle, config: TrainConfig, rank: int = 0, world_size: int = 1,
                  pin_memory: bool = False) -> tuple[DataLoader, DataLoader]:
    """The training loader (an :class:`EpochBatchSampler`, or a :class:`BalancedBatchSampler` with ``--sampler
    balanced``) and the validation loader (a :class:`ShardSampler`)."""
    common = {"batch_size": config.batch_size, "seed": config.seed, "rank": rank, "world_size": world_size,
              "num_batches": config.epoch_length, "with_seeds": getattr(data.train, "takes_sample_seeds", False)}
    if config.sampler == "balanced":
        batches: EpochBatchSampler = BalancedBatchSampler(dataset_labels(data.train), len(data.classes), **common)
    else:
        batches = EpochBatchSampler(len(data.train), **common)
    workers = config.loader_workers
    train = DataLoader(data.train, batch_sampler=batches,
                       **_loader_kwargs(data.train, workers, pin_memory, config.seed, config.prefetch))
    val = DataLoader(data.val, batch_size=config.batch_size, sampler=ShardSampler(len(data.val), rank, world_size),
                     **_loader_kwargs(data.val, workers, pin_memory, config.seed, config.prefetch))
    return train, val
