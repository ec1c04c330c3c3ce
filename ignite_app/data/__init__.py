"""Datasets and loaders: what the engines iterate over.

- :mod:`~ignite_app.data.spec`: :class:`DataBundle`, what a dataset gives the app; :func:`build_data`, which builds
  the registered dataset a config names (:func:`ignite_app.register_dataset`);
- :mod:`~ignite_app.data.samplers`: seeded, resumable training batches and exact validation shards;
- :mod:`~ignite_app.data.loaders`: the two data loaders of a run;
- :mod:`~ignite_app.data.builtin`: ``digits``, ``synthetic`` and the standard datasets (``mnist``,
  ``fashion-mnist``, ``cifar10``, ``cifar100``, read by :mod:`~ignite_app.data.standard`), held in memory;
- :mod:`~ignite_app.data.scan`, :mod:`~ignite_app.data.folder`, :mod:`~ignite_app.data.formats`: your own image
  folders (``folder``);
- the image pipeline: :mod:`~ignite_app.data.decode` (files to uint8), :mod:`~ignite_app.data.pipeline` (flat file
  tables, source images, datasets, batches), :mod:`~ignite_app.data.transforms` (seeded uint8 augmentation, the
  validation view), :mod:`~ignite_app.data.cache` (``--cache``), :mod:`~ignite_app.data.stats` (the mean and std of
  a seeded sample), :mod:`~ignite_app.data.badimages` (``--on-bad-image`` at load time),
  :mod:`~ignite_app.data.imagecheck` (``--check-images``).

The names below are imported on first use: the command lines import :mod:`~ignite_app.data.formats` for their
``--help`` without importing torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ignite_app.lazy import lazy_exports

_EXPORTS = {
    "DataBundle": "ignite_app.data.spec",
    "build_data": "ignite_app.data.spec",
    "build_loaders": "ignite_app.data.loaders",
    "EpochBatchSampler": "ignite_app.data.samplers",
    "SampleKey": "ignite_app.data.samplers",
    "ShardSampler": "ignite_app.data.samplers",
    "stratified_split": "ignite_app.data.samplers",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())


if TYPE_CHECKING:
    from ignite_app.data.loaders import build_loaders  # noqa: F401
    from ignite_app.data.samplers import EpochBatchSampler, SampleKey, ShardSampler, stratified_split  # noqa: F401
    from ignite_app.data.spec import DataBundle, build_data  # noqa: F401
