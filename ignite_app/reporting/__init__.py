"""The run's outputs for people: TensorBoard, the report files, the heatmap.

- :mod:`~ignite_app.reporting.tensorboard`: scalars, heatmaps, report text, hparams, parameter norms;
- :mod:`~ignite_app.reporting.files`: ``reports/`` (the best epoch's files, ``history.csv``) kept in step with the
  checkpoints; :mod:`~ignite_app.reporting.writers`: the CSV and text writers themselves (no matplotlib);
- :mod:`~ignite_app.reporting.heatmap`: the confusion-matrix heatmap;
- :mod:`~ignite_app.runstate.jobs`: the background thread that draws and writes off the training loop;
- :mod:`~ignite_app.reporting.eventfiles`: on resume, drop the points written after the checkpoint;
- :mod:`~ignite_app.reporting.tbchecksum`: event-file checksums in C.
"""
