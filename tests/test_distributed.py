"""Several processes on one CPU machine (gloo): spawned, under torchrun, resumed; metrics exact across ranks."""

import subprocess
import sys

import ignite.distributed as idist
import pytest
import torch
from conftest import ROOT, free_port, run_script

from ignite_app.runstate.checkpoint import load_checkpoint
from ignite_app.evaluation import evaluate_checkpoint

VAL_SIZE = 359  # digits validation split
# The model comes from a --plugin file: every spawned process, the resumed run and scripts/evaluate.py (which
# rebuilds the model from the run's config.json) must import it again.
PLUGIN = str(ROOT / "examples" / "registry_plugin.py")
ARGS = ["--epoch-length", "5", "--log-every", "5", "--no-progress", "--checkpoint-every", "3", "--plugin", PLUGIN,
        "--model", "tiny"]


def train_2_processes(output_dir, *extra):
    return run_script("train.py", *ARGS, "--output-dir", output_dir, "--nproc-per-node", "2", "--backend", "gloo",
                      *extra)


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    result = train_2_processes(out, "--epochs", "2", "--run-name", "run")
    assert result.returncode == 0, result.stderr
    return out / "run", result


def test_a_spawned_run_writes_one_set_of_outputs(two_process_run):
    run_dir, result = two_process_run
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("events.")) == [
        ".lock", "checkpoints", "config.json", "label_map.txt", "reports", "train.log", "train.rank1.log"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1  # rank 0 alone writes TensorBoard
    assert sorted(p.name for p in (run_dir / "reports").iterdir()) == [
        "classification_report.csv", "confusion_matrix.csv", "confusion_matrix.png", "history.csv", "reliability.csv"]
    assert [line[:2] for line in (run_dir / "reports" / "history.csv").read_text().splitlines()[1:]] == ["1,", "2,"]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "best_model.pt", "training_10.pt", "training_9.pt"]
    summaries = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(summaries) == 2  # printed once, by rank 0
    assert "batch size: 64 per process x 2 processes = 128 per step" in result.stdout
    assert "epoch 2/2" in (run_dir / "train.rank1.log").read_text()


def test_the_reduced_confusion_matrix_counts_every_validation_image_once(two_process_run):
    run_dir, _ = two_process_run
    best = load_checkpoint(run_dir / "checkpoints" / "training_10.pt")["best_report"]
    assert int(best["counts"].sum()) == VAL_SIZE
    rows = (run_dir / "reports" / "confusion_matrix.csv").read_text().splitlines()[1:]
    assert sum(int(n) for row in rows for n in row.split(",")[1:]) == VAL_SIZE


def _evaluate_on_rank(local_rank, path, out):
    report = evaluate_checkpoint(path)
    if idist.get_rank() == 0:
        torch.save(torch.as_tensor(report.counts), out)


def test_one_and_two_processes_evaluate_a_checkpoint_identically(two_process_run, tmp_path):
    run_dir, _ = two_process_run
    best_model = run_dir / "checkpoints" / "best_model.pt"
    single = torch.tensor(evaluate_checkpoint(best_model).counts)
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_addr="127.0.0.1", master_port=free_port()) as parallel:
        parallel.run(_evaluate_on_rank, best_model, tmp_path / "counts.pt")
    assert torch.equal(torch.load(tmp_path / "counts.pt"), single)
    assert int(single.sum()) == VAL_SIZE
    # ... and both equal what the 2-process training run measured for that epoch
    recorded = load_checkpoint(run_dir / "checkpoints" / "training_10.pt")["best_report"]["counts"]
    assert torch.equal(recorded, single)


def test_a_torchrun_launch_of_the_script_works(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "scripts" / "train.py"), *ARGS, "--epochs", "1", "--backend", "gloo", "--output-dir",
         str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (run_dir,) = tmp_path.iterdir()  # rank 0 named the folder and told rank 1: one folder, not two
    assert (run_dir / "train.rank1.log").is_file() and (run_dir / "checkpoints" / "training_5.pt").is_file()
    assert "batch size: 64 per process x 2 processes = 128 per step" in result.stdout


def test_torchrun_without_backend_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "scripts" / "train.py"), "--output-dir", str(tmp_path)], capture_output=True, text=True,
        timeout=300)
    assert result.returncode != 0
    assert "started as one of 2 processes (torchrun): pass --backend gloo (CPU) or nccl (GPUs)" in result.stderr


def test_a_distributed_run_resumes_exactly(two_process_run, tmp_path):
    run_dir, _ = two_process_run
    resumed_dir = tmp_path / "run"
    subprocess.run(["cp", "-r", str(run_dir), str(resumed_dir)], check=True)
    resumed = train_2_processes(tmp_path, "--epochs", "3", "--run-name", "run", "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from" in resumed.stdout
    reference = train_2_processes(tmp_path, "--epochs", "3", "--run-name", "reference")
    assert reference.returncode == 0, reference.stderr
    ours = load_checkpoint(resumed_dir / "checkpoints" / "training_15.pt")["model"]
    theirs = load_checkpoint(tmp_path / "reference" / "checkpoints" / "training_15.pt")["model"]
    assert all(torch.equal(ours[k], v) for k, v in theirs.items())


def test_resuming_with_another_number_of_processes_is_refused(two_process_run):
    run_dir, _ = two_process_run
    result = run_script("train.py", *ARGS, "--epochs", "3", "--resume", run_dir / "checkpoints" / "training_10.pt")
    assert result.returncode == 2
    assert "was trained by 2 process(es), this run has 1" in result.stderr


def test_the_evaluate_script_reproduces_a_digits_run(two_process_run, tmp_path):
    run_dir, _ = two_process_run
    result = run_script("evaluate.py", "--checkpoint", run_dir / "checkpoints" / "best_model.pt", "--output", tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"data: digits (validation split), {VAL_SIZE} images" in result.stdout
    rows = [line.split(",") for line in (tmp_path / "confusion_matrix.csv").read_text().splitlines()]
    assert rows[0] == ["true\\predicted", *map(str, range(10))]
    recorded = load_checkpoint(run_dir / "checkpoints" / "training_10.pt")["best_report"]["counts"]
    assert torch.equal(torch.tensor([[int(v) for v in row[1:]] for row in rows[1:]]), recorded)


def _stop_flags_agree(local_rank, out):
    from ignite_app.runstate.signals import GracefulStop

    stop = GracefulStop()
    stop.join_processes()
    answers = [stop.requested()]  # nobody was signalled
    if idist.get_rank() == 1:
        stop.signum = 15  # only rank 1 got SIGTERM
    answers.append(stop.requested())
    if idist.get_rank() == 0:
        torch.save({"answers": answers, "signum": stop.signum}, out)


def test_a_signal_on_one_rank_stops_every_rank_at_the_same_check(tmp_path):
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_port=free_port()) as parallel:
        parallel.run(_stop_flags_agree, tmp_path / "rank0.pt")
    assert torch.load(tmp_path / "rank0.pt") == {"answers": [False, True], "signum": 15}
