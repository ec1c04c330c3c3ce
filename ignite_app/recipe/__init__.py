"""The training recipe (``--label-smoothing``, ``--mixup-alpha``/``--cutmix-alpha``, ``--ema-decay``,
``--accumulate-steps``, ``--clip-grad-norm``, ``--class-weights``), every switch off by default.

- :mod:`~ignite_app.recipe.accumulation`: which batches of an epoch form one optimizer step (:class:`StepGroups`);
- :mod:`~ignite_app.recipe.losses`: the training loss (label smoothing, class weights, soft targets);
- :mod:`~ignite_app.recipe.mixing`: MixUp and CutMix of a batch, a pure function of ``(seed, epoch, iteration,
  rank)``;
- :mod:`~ignite_app.recipe.ema`: the exponential moving average of the weights, checkpointable;
- :mod:`~ignite_app.recipe.wiring`: what :func:`ignite_app.app.build` makes and attaches for them (the level of
  :mod:`ignite_app.handlers`: it imports the engines; the other modules sit below the engines, which use them).

The balanced sampler lives with the other samplers (:mod:`ignite_app.data.samplers`), the augmentation policies
with the image transforms (:mod:`ignite_app.data.policies`), top-5 accuracy with the metrics
(:mod:`ignite_app.metrics.topk`), the learning-rate finder beside the app (:mod:`ignite_app.lr_finder`). Nothing is
imported here: ``--help`` must not wait for torch.
"""
