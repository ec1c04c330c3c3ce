"""The training recipe end to end: every switch together through kill -9 and resume, two processes, the run's
config.json, and the learning-rate finder."""

import csv
import os
import signal

import pytest
import torch
from conftest import ROOT, run_script
from sklearn.metrics import top_k_accuracy_score
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_resume import FINAL, assert_same_run, crash, scalars, train

from ignite_app.data.builtin import load_digits_data
from ignite_app.models import build_classifier
from ignite_app.runstate.checkpoint import load_checkpoint

# mixup and cutmix, label smoothing, EMA with warm-up, groups of 4 batches (epochs of 6: groups of 4 and 2),
# clipping, both remedies for imbalance; --keep-last 10 keeps every epoch's checkpoint for the EMA checks
RECIPE = ["--mixup-alpha", "0.2", "--cutmix-alpha", "1.0", "--label-smoothing", "0.1", "--ema-decay", "0.8",
          "--ema-warmup-steps", "3", "--accumulate-steps", "4", "--clip-grad-norm", "2.0", "--sampler", "balanced",
          "--class-weights", "balanced", "--keep-last", "10"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run with every switch on (test_resume's 3 epochs of 6 iterations)."""
    out = tmp_path_factory.mktemp("recipe")
    result = train(out, "--run-name", "run", *RECIPE)
    assert result.returncode == 0, result.stderr
    return out / "run"


def same_tensors(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_kill_9_inside_a_group_then_resume_is_bit_exact(tmp_path, reference):
    # iteration 11 is the first batch of the group (11, 12): the last checkpoint is training_10.pt, at a group's end
    result = crash(tmp_path, "iteration:11", *RECIPE)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("training_*.pt")) == [
        "training_10.pt", "training_4.pt", "training_6.pt"]  # --checkpoint-every 4: the save due at 8 waited for 10
    resumed = train(tmp_path, "--run-name", "run", "--resume", "auto", *RECIPE)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout and "training_10.pt" in resumed.stdout
    assert_same_run(tmp_path / "run", reference)  # weights, best model, report, every TensorBoard point, history
    ours, theirs = (load_checkpoint(d / "checkpoints" / FINAL) for d in (tmp_path / "run", reference))
    assert same_tensors(ours["ema"]["module"], theirs["ema"]["module"]) and ours["ema"]["updates"] == 6


def test_the_ema_weights_are_validated_and_become_the_best_model(reference):
    best = load_checkpoint(reference / "checkpoints" / "best_model.pt")
    at_best = load_checkpoint(reference / "checkpoints" / f"training_{6 * best['epoch']}.pt")
    assert same_tensors(best["state_dict"], at_best["ema"]["module"])  # the EMA of the best epoch, not the raw model
    assert not same_tensors(at_best["ema"]["module"], at_best["model"])
    curves = scalars(reference)
    assert best["best_acc"] == pytest.approx(max(v for _, v in curves["val/accuracy"]))  # the choice reads val/*
    assert [s for s, _ in curves["val_raw/accuracy"]] == [s for s, _ in curves["val_raw/loss"]] == [1, 2, 3]
    assert curves["val_raw/accuracy"] != curves["val/accuracy"]  # the raw weights, validated beside the EMA
    # every --log-every 2 iterations from the first optimizer step on (iteration 4: the end of the first group)
    assert [s for s, _ in curves["train/grad_norm"]] == list(range(4, 19, 2))
    with open(reference / "reports" / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    assert [float(r["top5_accuracy"]) for r in history] == pytest.approx([v for _, v in curves["val/top5_accuracy"]])
    log = (reference / "train.log").read_text()
    assert f"top-5 accuracy {100 * float(history[best['epoch'] - 1]['top5_accuracy']):.2f}%" in log


def test_the_runs_config_json_reproduces_it(reference):
    result = run_script("train.py", "--config", reference / "config.json", "--run-name", "again")
    assert result.returncode == 0, result.stderr
    again = load_checkpoint(reference.parent / "again" / "checkpoints" / FINAL)
    theirs = load_checkpoint(reference / "checkpoints" / FINAL)
    assert same_tensors(again["model"], theirs["model"]) and same_tensors(again["ema"]["module"],
                                                                          theirs["ema"]["module"])


def test_two_gloo_processes_with_every_switch_agree(tmp_path):
    env = {**os.environ, "RANK_STATE_DIR": str(tmp_path)}
    result = run_script("train.py", "--epochs", "1", "--epoch-length", "5", "--no-progress", "--nproc-per-node", "2",
                        "--backend", "gloo", "--output-dir", tmp_path, "--run-name", "run", "--handler",
                        ROOT / "tests" / "rank_state.py:attach", *RECIPE, env=env)
    assert result.returncode == 0, result.stderr
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert same_tensors(rank0["model"], rank1["model"])
    # groups of 4 and 1 batches: 2 optimizer steps
    assert same_tensors(rank0["ema"]["module"], rank1["ema"]["module"]) and rank0["ema"]["updates"] == 2
    assert rank0["val"] == rank1["val"] and rank0["val_raw"] == rank1["val_raw"]
    # exact: the reduced metrics are those of the whole validation set, evaluated here in one process
    data = load_digits_data()
    model = build_classifier("cnn", 10, data.input_shape, data.mean, data.std)
    model.load_state_dict(rank0["ema"]["module"])
    with torch.no_grad():
        logits = model.eval()(data.val.images)
    y = data.val.labels
    assert rank0["val"]["accuracy"] == float((logits.argmax(1) == y).double().mean())
    assert rank0["val"]["top5_accuracy"] == top_k_accuracy_score(y, logits, k=5, labels=range(10))


def test_the_lr_finder_draws_a_curve_and_suggests_an_lr_inside_it(tmp_path, capsys):
    from ignite_app.cli.find_lr import main

    assert main(["--output-dir", str(tmp_path), "--run-name", "lrf", "--num-iter", "80", "--no-progress"]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "lrf"
    with open(folder / "lr_finder.csv", newline="") as f:
        rows = [(float(r["lr"]), float(r["loss"])) for r in csv.DictReader(f)]
    lrs, losses = zip(*rows)
    low = losses.index(min(losses))
    assert 0 < low < len(losses) - 1 and losses[0] > 1.5 * losses[low] and losses[-1] > 1.5 * losses[low]
    assert list(lrs) == sorted(lrs) and lrs[0] < 1e-5
    suggested = float(out.rsplit("suggested lr: ", 1)[1].split()[0])
    assert lrs[0] < suggested < lrs[low]  # on the falling part of the curve
    assert (folder / "lr_finder.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    assert [e.value for e in events.Scalars("lr_finder/loss")] == pytest.approx(losses)
    # a folder that exists is never written into, whatever it holds
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with pytest.raises(SystemExit) as exit_info:
        main(["--output-dir", str(tmp_path), "--run-name", "lrf"])
    assert exit_info.value.code == 2 and f"the run folder {folder} already exists" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
