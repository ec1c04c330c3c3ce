"""Transfer learning through whole runs: zoo networks on real data, --pretrained, --weights, a frozen backbone,
exact resume across the unfreeze, every rank equal after it, --list-models and the refusals of the command line.

Most runs use timm's tiny test networks on the digits resized to 32x32 on the device; torchvision's ResNet-18 only
where torchvision is the point (its weights file in TORCH_HOME, grayscale repeated to its 3 channels).
"""

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from collections import Counter

import ignite.distributed as idist
import pytest
import timm
import torch
import torchvision
from conftest import ROOT, free_port
from folder_data import write_digit_folders
from safetensors.torch import save_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ignite_app import TrainConfig, build, register_model
from ignite_app.app import unwrap
from ignite_app.cli.train import main
from ignite_app.config import default_image_size
from ignite_app.evaluation import evaluate_checkpoint, evaluation_config, evaluation_data, load_saved_model
from ignite_app.models import ModelSpec
from ignite_app.models.small import cnn
from ignite_app.prediction import collect_inputs, predict
from ignite_app.registry import MODELS
from ignite_app.runstate.checkpoint import load_checkpoint
from ignite_app.transfer import resolve_input_options

RESNET18_FILE = "resnet18-f37072fd.pth"  # the file name of ResNet18_Weights.IMAGENET1K_V1's URL
# timm's smallest ResNet on the digits at 32x32: 2 epochs of 3 steps, the backbone frozen in the first
QUICK = {"model": "timm:test_resnet", "image_size": 32, "epochs": 2, "epoch_length": 3, "batch_size": 16,
         "freeze_epochs": 1, "progress": False, "log_every": 1}


def backbone(state: dict, head=("fc.weight", "fc.bias")) -> dict:
    """The network's tensors outside the head (batch-norm statistics included), by name in the network."""
    return {k[len("network."):]: v for k, v in state.items()
            if k.startswith("network.") and k[len("network."):] not in head}


def exit_code(argv: list[str]) -> int:
    """scripts/train.py's exit code for ``argv``: option errors exit from the parser, a refused start returns 2."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def test_list_models_prints_the_matching_names_and_exits_0(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--list-models", "TEST_RES*"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.split() == ["timm:test_resnet"]
    with pytest.raises(SystemExit):
        main(["--list-models", "resnet18"])
    assert capsys.readouterr().out.split() == ["torchvision:resnet18", "timm:resnet18"]


def test_pretrained_offline_without_a_cached_copy_exits_2_before_anything_is_written(caches, tmp_path, monkeypatch,
                                                                                       capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert exit_code(["--model", "torchvision:resnet18", "--pretrained", "--output-dir", str(tmp_path / "runs")]) == 2
    folder = caches["torch"] / "hub" / "checkpoints"
    assert (f"the pretrained weights of torchvision:resnet18 are not in the cache folder {folder} (looked for "
            f"{folder / RESNET18_FILE}) and offline mode is on (HF_HUB_OFFLINE=1); download them there on a machine "
            "with network access, or pass a local weights file with --weights FILE") in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("argv", "message"), [
    (["--model", "timm:test_vit", "--image-size", "64"],
     "timm:test_vit takes 160x160 images only, got 64x64; set --image-size 160"),
    (["--model", "cnn", "--pretrained"], "--pretrained needs a torchvision:NAME or timm:NAME --model; 'cnn' has no "
                                         "pretrained weights (start it from a file with --weights FILE)"),
    (["--model", "timm:resnt50"], "--model 'timm:resnt50' is not a timm network (did you mean 'timm:resnet50', "),
])
def test_unusable_choices_exit_2_naming_the_flag(argv, message, tmp_path, capsys):
    assert exit_code([*argv, "--output-dir", str(tmp_path / "runs")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("options", "size"), [
    ({}, None),                                                       # the digits keep their 8x8
    ({"dataset": "folder", "data_dir": "d"}, 32),                     # folders have no size of their own
    ({"model": "timm:test_resnet", "image_size": 48, "pretrained": True}, 48),
    ({"model": "timm:test_resnet", "pretrained": True}, 160),         # its pretrained input size
    ({"model": "timm:test_resnet", "pretrained": True, "normalization": "dataset"}, 160),  # pretrained all the same
    ({"model": "timm:test_resnet", "weights": "w.pt"}, 160),          # --normalization pretrained by default
    ({"model": "timm:test_resnet", "weights": "w.pt", "normalization": "dataset"}, None),
    ({"model": "timm:test_resnet"}, None),                            # random weights: the dataset's size
])
def test_the_default_image_size(options, size):
    assert default_image_size(TrainConfig(**options), 160) == size


def test_a_registered_spec_without_an_input_size_keeps_the_datasets_size():
    """--normalization pretrained with a ModelSpec's mean and std: no size of its own, so the images keep theirs."""
    register_model("spec-without-size", ModelSpec(cnn, mean=(0.5,), std=(0.25,)))
    try:
        config = resolve_input_options(TrainConfig(model="spec-without-size", normalization="pretrained"))
    finally:
        del MODELS._entries["spec-without-size"]
    assert (config.image_size, config.crop_fraction, config.interpolation) == (None, None, "bilinear")


def test_files_are_prepared_as_the_pretrained_configuration_says_and_predicted_as_evaluated(tmp_path):
    """--weights of a zoo network on image files: the size, crop and interpolation of its pretrained configuration
    (timm's test_resnet: 160x160, crop 0.95, bilinear) are recorded; with the file gone, evaluate and predict
    rebuild the model from the checkpoint alone and classify every validation image the same way."""
    data = write_digit_folders(tmp_path / "digits", classes=(0, 1), train=8, val=6, rgb=True)
    torch.manual_seed(0)
    weights = tmp_path / "test_resnet.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=1000).state_dict(), str(weights))
    build(TrainConfig(dataset="folder", data_dir=data, model="timm:test_resnet", weights=weights, epochs=1,
                      batch_size=8, output_dir=tmp_path / "runs", run_name="run", progress=False)).run()
    weights.unlink()
    path = tmp_path / "runs" / "run" / "checkpoints" / "best_model.pt"
    best = load_checkpoint(path)
    assert best["input_shape"] == [3, 160, 160] and best["normalization"]["mean"] == [0.5, 0.5, 0.5]
    assert (best["crop_fraction"], best["config"]["crop_fraction"], best["config"]["interpolation"]) == \
        (0.95, 0.95, "bilinear")
    assert best["normalization"]["images"] is None  # no mean-and-std sample of the training images
    assert "from a seeded sample" not in (tmp_path / "runs" / "run" / "train.log").read_text()
    saved = load_saved_model(path)
    predictions, _ = predict(saved, collect_inputs([data / "val"]))
    val, _ = evaluation_data(saved, evaluation_config(saved))
    with torch.no_grad():  # what evaluation feeds the model, file by file
        evaluated = {Path(p).resolve(): saved.model(val[i][0][None]).softmax(dim=1).max().item()
                     for i, p in enumerate(map(val.table.path, range(len(val))))}
    predicted = {Path(p.path).resolve(): p.confidences[0] for p in predictions}
    assert len(evaluated) == 12 and predicted == pytest.approx(evaluated, rel=1e-5)  # batches of 12 against 1
    counts = evaluate_checkpoint(path).counts
    pairs = Counter((Path(p.path).parent.name, p.labels[0]) for p in predictions)
    classes = best["classes"]
    assert pairs == {(classes[i], classes[j]): int(n) for i, row in enumerate(counts) for j, n in enumerate(row) if n}


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A timm test_resnet trained on the synthetic RGB images (classes class_0..class_9): the file to start from."""
    out = tmp_path_factory.mktemp("source")
    build(TrainConfig(dataset="synthetic", model="timm:test_resnet", epochs=1, epoch_length=2, batch_size=16,
                      output_dir=out, run_name="run", progress=False)).run()
    return out / "run" / "checkpoints" / "best_model.pt"


def test_fine_tuning_from_a_checkpoint_freezes_the_backbone_then_trains_it(source_run, tmp_path):
    """--weights of another run: other classes and channels. The frozen epoch trains the head only (batch-norm
    statistics included, the backbone is unchanged); the next one trains everything, at --backbone-lr-scale."""
    weights = tmp_path / "source.pt"
    shutil.copy(source_run, weights)
    options = {**QUICK, "weights": weights, "backbone_lr_scale": 0.1, "output_dir": tmp_path, "run_name": "run",
               "lr_scheduler": "cosine"}
    app = build(TrainConfig(**options))
    start = {k: v.clone() for k, v in unwrap(app.model).state_dict().items()}
    app.run()
    run_dir = tmp_path / "run"
    log = (run_dir / "train.log").read_text()
    source = load_checkpoint(source_run)["state_dict"]
    # the file's tensors were loaded, the head left out (classes class_i -> digits), conv1 summed to 1 channel
    assert (f"--weights: loaded {len(backbone(source))} tensors from {weights}; left out (the classes "
            "differ: freshly initialised): fc.weight, fc.bias; adapted to the input channels: conv1.0.weight") in log
    adapted = "conv1.0.weight"
    assert torch.allclose(start["network." + adapted], source["network." + adapted].sum(dim=1, keepdim=True))
    assert all(torch.equal(start["network." + k], v) for k, v in backbone(source).items() if k != adapted)
    assert (f"model: timm:test_resnet: timm, 1 channel(s) (timm in_chans, first layer adapted), any input size, "
            f"--weights {weights}, head fc.weight, fc.bias") in log
    assert ("fine-tuning: the backbone is frozen for epoch 1 (only fc.weight, fc.bias train), then the whole "
            "network trains, the backbone at 0.1 x --lr") in log
    # epoch 1: only the head moved
    after_frozen = load_checkpoint(run_dir / "checkpoints" / "training_3.pt")["model"]
    assert all(torch.equal(after_frozen["network." + k], v) for k, v in backbone(start).items())
    assert not torch.equal(after_frozen["network.fc.weight"], start["network.fc.weight"])
    # epoch 2: the backbone trains
    final = load_checkpoint(run_dir / "checkpoints" / "training_6.pt")["model"]
    assert not torch.equal(final["network.conv1.0.weight"], start["network.conv1.0.weight"])
    summaries = [line.split(" ", 2)[2] for line in log.splitlines() if " epoch " in line[:30]]
    assert summaries[0].endswith("| backbone frozen") and summaries[1].endswith("| backbone unfrozen")
    # the learning rates: train/lr is the head's, train/lr/backbone 0.1 x it, under the cosine schedule
    events = EventAccumulator(str(run_dir))
    events.Reload()
    head = [e.value for e in events.Scalars("train/lr")]
    assert [e.value for e in events.Scalars("train/lr/backbone")] == pytest.approx([0.1 * v for v in head])
    with open(run_dir / "reports" / "history.csv") as f:
        assert [float(row["lr"]) for row in csv.DictReader(f)] == pytest.approx(head)
    # the normalisation of --weights of a zoo network: the pretrained configuration's, for 1 channel
    best = load_checkpoint(run_dir / "checkpoints" / "best_model.pt")
    assert best["normalization"] == {"mean": [0.5], "std": [0.5], "repeat_channels": None, "size": 32,
                                     "interpolation": "bilinear", "images": None}  # no mean-and-std sample
    assert evaluate_checkpoint(run_dir / "checkpoints" / "best_model.pt").accuracy == best["best_acc"]
    # a resumed run takes its weights from its checkpoint alone: the --weights file is not opened again
    weights.unlink()
    build(TrainConfig(**{**options, "epochs": 3}, resume="auto")).run()
    assert (run_dir / "checkpoints" / "training_9.pt").is_file()
    assert "any input size, the weights of the resumed checkpoint, head" in (run_dir / "train.log").read_text()


def test_a_file_that_does_not_fit_the_network_is_refused(source_run, tmp_path):
    with pytest.raises(Exception, match=r"--weights .*best_model.pt does not fit timm:test_efficientnet: \d+ tensors "
                                        r"outside the classifier head differ: conv_stem.weight: missing from the file"):
        build(TrainConfig(**{**QUICK, "model": "timm:test_efficientnet"}, weights=source_run, output_dir=tmp_path,
                          run_name="run"))
    assert not (tmp_path / "run").exists()


def test_torchvision_resnet18_pretrained_on_grayscale_images(caches, tmp_path, monkeypatch):
    """--pretrained reads TORCH_HOME (a random file under the expected name: the hash is only checked when
    downloading) and never the network; the digits are repeated to 3 channels inside the saved model, which
    evaluate.py rebuilds from the checkpoint alone."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    planted = torchvision.models.resnet18(num_classes=1000).state_dict()
    path = caches["torch"] / "hub" / "checkpoints" / RESNET18_FILE
    path.parent.mkdir(parents=True)
    torch.save(planted, path)
    build(TrainConfig(model="torchvision:resnet18", pretrained=True, image_size=32, epochs=1, epoch_length=2,
                      batch_size=8, output_dir=tmp_path, run_name="run", progress=False)).run()
    run_dir = tmp_path / "run"
    log = (run_dir / "train.log").read_text()
    assert (f"pretrained weights: loaded 120 tensors from ResNet18_Weights.IMAGENET1K_V1 ({path}); left out (the "
            "classes differ: freshly initialised): fc.weight, fc.bias") in log
    assert "repeated to 3 channels, normalised with the mean and std of the network's pretrained configuration, " \
           "resized to 32x32 on the device (bilinear)" in log
    best = load_checkpoint(run_dir / "checkpoints" / "best_model.pt")
    assert best["input_shape"] == [1, 8, 8] and best["normalization"]["repeat_channels"] == 3
    assert best["normalization"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert best["config"]["interpolation"] == "bilinear" and best["normalization"]["images"] is None  # no sample
    path.unlink()  # evaluation rebuilds the architecture only
    assert evaluate_checkpoint(run_dir / "checkpoints" / "best_model.pt").accuracy == best["best_acc"]


def test_a_kill_in_a_frozen_epoch_resumes_to_the_uninterrupted_run(tmp_path):
    """Killed at iteration 2 (epoch 1, backbone frozen), resumed from the checkpoint of iteration 2: the resumed
    run freezes the backbone again, unfreezes it at epoch 2 and ends equal tensor by tensor."""
    options = {**QUICK, "checkpoint_every": 2}
    build(TrainConfig(**options, output_dir=tmp_path / "ref", run_name="run")).run()
    argv = [f"--{k.replace('_', '-')}={v}" for k, v in options.items() if k != "progress"]
    crashed = subprocess.run([sys.executable, str(ROOT / "tests" / "crash_run.py"), *argv, "--no-progress",
                              "--output-dir", str(tmp_path), "--run-name", "run"],
                             env={**os.environ, "CRASH_AT": "iteration:2"}, capture_output=True, text=True, timeout=300)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("training_*.pt")) == ["training_2.pt"]
    build(TrainConfig(**options, output_dir=tmp_path, run_name="run", resume="auto")).run()
    ours = load_checkpoint(tmp_path / "run" / "checkpoints" / "training_6.pt")
    theirs = load_checkpoint(tmp_path / "ref" / "run" / "checkpoints" / "training_6.pt")
    for name, tensor in theirs["model"].items():
        assert torch.equal(ours["model"][name], tensor), name
    assert ours["optimizer"]["state"].keys() == theirs["optimizer"]["state"].keys()
    assert all(torch.equal(ours["optimizer"]["state"][i]["exp_avg"], s["exp_avg"])
               for i, s in theirs["optimizer"]["state"].items())


def _runs_on_two_ranks(local_rank: int, out: Path) -> None:
    """On each of 2 gloo ranks: a run through the unfreeze; a run stopped after its frozen epoch and resumed; the
    first run again with the wrapper's rebuild disabled (the bug it prevents). Each rank saves its final weights."""
    from ignite_app.transfer import RebuildableDDP

    def run(name: str, **changes) -> None:
        options = {**QUICK, "output_dir": out, "run_name": name, **changes}
        app = build(TrainConfig(**options))
        app.run()
        torch.save(unwrap(app.model).state_dict(), out / f"{name}.{changes.get('epochs', 2)}.rank{idist.get_rank()}.pt")

    run("through")
    run("resumed", epochs=1)
    run("resumed", resume="auto")  # from the end of epoch 1: built unfrozen, a plain DistributedDataParallel
    RebuildableDDP.rebuild = lambda self: None
    run("stale")


def test_every_rank_holds_the_same_weights_after_the_unfreeze(tmp_path):
    with idist.Parallel(backend="gloo", nproc_per_node=2, master_addr="127.0.0.1", master_port=free_port()) as p:
        p.run(_runs_on_two_ranks, tmp_path)
    for name in ("through", "resumed"):
        rank0, rank1 = (torch.load(tmp_path / f"{name}.2.rank{k}.pt") for k in (0, 1))
        for key, tensor in rank0.items():
            assert torch.equal(rank1[key], tensor), (name, key)
    through = torch.load(tmp_path / "through.2.rank0.pt")
    resumed = torch.load(tmp_path / "resumed.2.rank0.pt")
    assert all(torch.equal(resumed[k], v) for k, v in through.items())  # and the resume was exact
    # the control: a wrapper built while the backbone was frozen, kept after the unfreeze
    stale0, stale1 = (torch.load(tmp_path / f"stale.2.rank{k}.pt") for k in (0, 1))
    assert torch.equal(stale0["network.fc.weight"], stale1["network.fc.weight"])
    assert not torch.equal(stale0["network.conv1.0.weight"], stale1["network.conv1.0.weight"])

