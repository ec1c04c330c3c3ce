"""Metrics: the exact confusion matrix, the per-class report computed from it, the scores of the probabilities,
and label-map files.

- :mod:`~ignite_app.metrics.confusion`: :class:`ConfusionMatrixMetric`, an ignite ``Metric`` exact across processes;
- :mod:`~ignite_app.metrics.report`: :class:`ClassificationReport`, the scores equal to scikit-learn's;
- :mod:`~ignite_app.metrics.scores`: :class:`ScoreMetric`, average precision, ROC-AUC and calibration
  (:class:`ScoreReport`, in :mod:`~ignite_app.metrics.score_report`; the arithmetic in
  :mod:`~ignite_app.metrics.ranking`);
- :mod:`~ignite_app.metrics.mistakes`: :class:`ConfidentMistakes`, the most confident wrong predictions;
- :mod:`~ignite_app.metrics.labelmap`: the tutorial's label-map files;
- :mod:`~ignite_app.metrics.loss`: :class:`ValidationLoss`, ignite's ``Loss`` that passes over an empty batch.
"""

from ignite_app.metrics.confusion import REPORT, ConfusionMatrixMetric
from ignite_app.metrics.labelmap import read_label_map, write_label_map
from ignite_app.metrics.loss import ValidationLoss
from ignite_app.metrics.mistakes import MISTAKES, ConfidentMistakes, Mistakes
from ignite_app.metrics.report import (
    ACCURACY,
    F1_MACRO,
    MACRO_ROW,
    MAX_PRINTED_MATRIX,
    PRECISION_MACRO,
    RANKING_COLUMNS,
    RECALL_MACRO,
    SCORE_COLUMNS,
    VAL_LOSS,
    WEIGHTED_ROW,
    ClassificationReport,
    markdown_table,
)
from ignite_app.metrics.score_report import AP_MACRO, ECE, ROC_AUC_MACRO, PRCurve, ScoreReport, reliability_png
from ignite_app.metrics.scores import SCORES, ScoreMetric

__all__ = ["ACCURACY", "AP_MACRO", "ECE", "F1_MACRO", "MACRO_ROW", "MAX_PRINTED_MATRIX", "MISTAKES", "PRECISION_MACRO",
           "RANKING_COLUMNS", "RECALL_MACRO", "REPORT", "ROC_AUC_MACRO", "SCORES", "SCORE_COLUMNS", "VAL_LOSS",
           "WEIGHTED_ROW", "ClassificationReport", "ConfidentMistakes", "ConfusionMatrixMetric", "Mistakes",
           "PRCurve", "ScoreMetric", "ScoreReport", "ValidationLoss", "markdown_table", "read_label_map",
           "reliability_png", "write_label_map"]
