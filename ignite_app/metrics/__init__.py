"""Metrics: the exact confusion matrix, the per-class report computed from it, and label-map files.

- :mod:`~ignite_app.metrics.confusion`: :class:`ConfusionMatrixMetric`, an ignite ``Metric`` exact across processes;
- :mod:`~ignite_app.metrics.report`: :class:`ClassificationReport`, the scores equal to scikit-learn's;
- :mod:`~ignite_app.metrics.labelmap`: the tutorial's label-map files;
- :mod:`~ignite_app.metrics.loss`: :class:`ValidationLoss`, ignite's ``Loss`` that passes over an empty batch.
"""

from ignite_app.metrics.confusion import REPORT, ConfusionMatrixMetric
from ignite_app.metrics.labelmap import read_label_map, write_label_map
from ignite_app.metrics.loss import ValidationLoss
from ignite_app.metrics.report import (
    ACCURACY,
    F1_MACRO,
    MACRO_ROW,
    MAX_PRINTED_MATRIX,
    PRECISION_MACRO,
    RECALL_MACRO,
    SCORE_COLUMNS,
    VAL_LOSS,
    WEIGHTED_ROW,
    ClassificationReport,
    markdown_table,
)

__all__ = ["ACCURACY", "F1_MACRO", "MACRO_ROW", "MAX_PRINTED_MATRIX", "PRECISION_MACRO", "RECALL_MACRO", "REPORT",
           "SCORE_COLUMNS", "VAL_LOSS", "WEIGHTED_ROW", "ClassificationReport", "ConfusionMatrixMetric",
           "ValidationLoss", "markdown_table", "read_label_map", "write_label_map"]
