"""Two gloo processes with shards of different sizes give the reports one process gives: the score metric, the
confusion matrix carrying it, and the most confident mistakes."""

import pickle

import ignite.distributed as idist
import numpy as np
import pytest
import torch
from conftest import free_port
from score_data import assert_same, batches, softmax_scores, tied_scores

from ignite_app.metrics import ConfidentMistakes, ConfusionMatrixMetric
from ignite_app.metrics.scores import EXACT, HISTOGRAM, ScoreMetric

C = 6
N = 1200
# Rank 0 scores 800 rows (i % 3 != 0), rank 1 the other 400: shards of different sizes, and gathered in another
# order than one process sees them in.
SHARDS = [torch.arange(N)[torch.arange(N) % 3 != 0], torch.arange(N)[torch.arange(N) % 3 == 0]]
BUDGETS = {
    "exact": 256 * 2**20,
    "histogram from the start": 0,
    "histogram decided at compute": N * C * 4 - 1,  # no rank is over it alone; together they are
}
MODES = {"exact": EXACT, "histogram from the start": HISTOGRAM, "histogram decided at compute": HISTOGRAM,
         "exact, rank 1 sees nothing": EXACT}


def _data():
    probs, y = tied_scores(N, C, seed=11, absent=(5,))  # ties across the shard boundary, a class without samples
    continuous, y2 = softmax_scores(N, C, seed=12)
    return {"tied": (probs, y), "continuous": (continuous, y2)}


def _reports(shard_of, sizes):
    """One report per (data, budget), each computed twice; the metrics see `shard_of(rows)` in batches of `sizes`."""
    out = {}
    for data_name, (probs, y) in _data().items():
        for budget_name, budget in [*BUDGETS.items(), ("exact, rank 1 sees nothing", BUDGETS["exact"])]:
            metric = ScoreMetric(C, memory_budget_bytes=budget)
            rows = shard_of(budget_name)
            for batch in batches(probs[rows], y[rows], sizes):
                metric.update(batch)
            out[data_name, budget_name] = (metric.compute(), metric.compute())
    return out


def _validation(rows, batch_size):
    """The app's validation metrics over the samples ``rows``, in that order: the report with its scores, and the 5
    most confident mistakes (tied probabilities: ties broken by the validation index)."""
    probs, y = tied_scores(N, C, seed=13)
    i = torch.arange(N)
    images = torch.stack([i % 256, i // 256, i % 7, i % 11], dim=1).view(N, 1, 2, 2).to(torch.uint8)  # one per sample
    names = [f"class {k}" for k in range(C)]
    report = ConfusionMatrixMetric(names, scores=ScoreMetric(C, names))
    mistakes = ConfidentMistakes(5, output_transform=lambda out: out)
    for chunk in rows.split(batch_size):
        report.update((probs[chunk], y[chunk]))
        mistakes.update((probs[chunk], y[chunk], images[chunk]))
    return report.compute(), mistakes.compute()


def _on_rank(local_rank: int, path: str) -> None:
    rank = idist.get_rank()

    def shard_of(budget_name):
        if budget_name == "exact, rank 1 sees nothing":
            return torch.arange(N) if rank == 0 else torch.arange(0)
        return SHARDS[rank]

    reports = _reports(shard_of, sizes=(64, 100) if rank == 0 else (37,))
    # the validation split as ShardSampler splits it: rank r gets r, r + 2, ...
    reports["validation"] = _validation(torch.arange(rank, N, 2), 64 if rank == 0 else 37)
    if rank == 1:  # every rank holds the same reports; rank 1's are checked against the single process
        with open(path, "wb") as f:
            pickle.dump(reports, f)


@pytest.fixture(scope="module")
def two_process_reports(tmp_path_factory):
    path = tmp_path_factory.mktemp("gloo") / "reports.pkl"
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_addr="127.0.0.1", master_port=free_port()) as p:
        p.run(_on_rank, str(path))
    with open(path, "rb") as f:
        return pickle.load(f)


@pytest.mark.parametrize("budget_name", list(MODES))
@pytest.mark.parametrize("data_name", ["tied", "continuous"])
def test_two_processes_equal_one(two_process_reports, data_name, budget_name):
    single, again = _reports(lambda _: torch.arange(N), sizes=(128,))[data_name, budget_name]
    two, two_again = two_process_reports[data_name, budget_name]
    for report in (single, again, two, two_again):
        assert report.mode == MODES[budget_name] and report.num_samples == N
    for name in ("ap", "roc_auc", "support", "bin_count", "pr_counts"):
        for report in (two, two_again):
            np.testing.assert_array_equal(getattr(report, name), getattr(single, name), err_msg=name)
    if MODES[budget_name] == EXACT:  # the gathered scores: the same bits, whatever their order
        assert two.ece == single.ece
        np.testing.assert_array_equal(two.bin_confidence, single.bin_confidence)
    else:  # float64 sums of confidences, added in another order
        assert two.ece == pytest.approx(single.ece, abs=1e-12)
        np.testing.assert_allclose(two.bin_confidence, single.bin_confidence, rtol=1e-12)
    assert two_again.ece == two.ece  # computing again did not add the sums of the other rank a second time


def test_the_validation_metrics_of_two_processes_equal_one(two_process_reports):
    report, mistakes = _validation(torch.arange(N), 100)
    two_report, two_mistakes = two_process_reports["validation"]
    assert two_report == report and two_report.scores is not None  # counts and scores, bit for bit
    assert_same(two_report.scores, report.scores)
    assert len(mistakes) == 5 and mistakes.confidence.unique().numel() < 5  # tied confidences among the five
    for name in ("images", "true", "predicted", "confidence", "index"):
        assert torch.equal(getattr(two_mistakes, name), getattr(mistakes, name)), name
