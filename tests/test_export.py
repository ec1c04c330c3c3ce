"""Export for deployment: the round trip of both formats for the app's CNN and a torchvision ResNet-18, prediction
from an exported file alone, the refusals, and the HTTP serving example."""

import csv
import io
import json
import math
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from conftest import ROOT, free_port
from folder_data import write_digit_folders

import ignite_app.export as export_module
from ignite_app.app import build
from ignite_app.artifacts import ArtifactError, load_artifact
from ignite_app.cli import export as export_cli
from ignite_app.cli import predict as predict_cli
from ignite_app.config import TrainConfig
from ignite_app.evaluation import load_saved_model
from ignite_app.export import ExportRefused, export_model, verification_images
from ignite_app.plugins import import_plugins

CLASSES = ["digit0", "digit1", "digit2"]
PLUGIN = '''
from torch import nn
from torchvision.models import resnet18

from ignite_app.registry import register_model


def tv_resnet18(num_classes, input_shape):
    return resnet18(weights=None, num_classes=num_classes)


register_model("tv_resnet18", tv_resnet18, replace=True)
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A few iterations of the CNN and of torchvision's ResNet-18 on 16x16 RGB image folders (3 classes)."""
    pytest.importorskip("torchvision")
    root = tmp_path_factory.mktemp("export")
    data = write_digit_folders(root / "digits", classes=(0, 1, 2), train=16, val=8, rgb=True)
    plugin = root / "tv_plugin.py"
    plugin.write_text(PLUGIN)
    import_plugins([str(plugin)])
    common = dict(dataset="folder", data_dir=data, image_size=16, channels=3, batch_size=16, epochs=1,
                  epoch_length=2, output_dir=root / "runs", progress=False, pr_curves=0)
    for name, model in (("cnn", "cnn"), ("resnet18", "tv_resnet18")):
        build(TrainConfig(model=model, run_name=name, plugins=(str(plugin),), **common)).run()
    return {name: root / "runs" / name / "checkpoints" / "best_model.pt" for name in ("cnn", "resnet18")}, data


def run_cli(main, args, capsys):
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def plain_outputs(path, images):
    """Run an exported file without ignite_app: onnxruntime, or torch.export.load; returns (logits, metadata)."""
    if path.suffix == ".onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        metadata = json.loads(session.get_modelmeta().custom_metadata_map["ignite_app"])
        return session.run(None, {session.get_inputs()[0].name: images.numpy()})[0], metadata
    extra = {"ignite_app.json": ""}
    program = torch.export.load(path, extra_files=extra)
    return program.module()(images).detach().numpy(), json.loads(extra["ignite_app.json"])


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
@pytest.mark.parametrize("model", ["cnn", "resnet18"])
def test_the_exported_model_is_the_checkpoints_at_any_batch_size(runs, tmp_path, capsys, model, fmt):
    checkpoints, _ = runs
    output = tmp_path / f"model.{fmt}"
    code, out, err = run_cli(export_cli.main, ["--checkpoint", checkpoints[model], "--output", output], capsys)
    assert code == 0, err
    assert f"wrote {output} ({fmt}," in out and "3 classes, input uint8 (batch, 3, 16, 16)" in out
    assert "verified on 24 images: max |exported - checkpoint| logit difference" in out
    assert "24 of 24 labels identical" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]  # one file, no temporary left
    saved = load_saved_model(checkpoints[model])
    for batch in (1, 7):
        generator = torch.Generator().manual_seed(batch)
        images = torch.randint(0, 256, (batch, 3, 16, 16), dtype=torch.uint8, generator=generator)
        logits, metadata = plain_outputs(output, images)
        with torch.no_grad():
            expected = saved.model(images).numpy()
        assert logits.shape == (batch, 3)
        np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    assert metadata["classes"] == CLASSES and metadata["input"]["shape"] == ["batch", 3, 16, 16]
    prep = metadata["preprocessing"]
    assert (prep["color"], prep["crop"], prep["crop_fraction"]) == ("RGB", [16, 16], saved.crop_fraction)
    assert prep["resize_short_side"] == math.ceil(16 / saved.crop_fraction)
    assert prep["normalization"]["mean"] == list(saved.mean) and prep["normalization"]["inside_model"]
    assert metadata["versions"]["torch"] == torch.__version__.split("+")[0]


def read_rows(text):
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    checkpoints, data = runs
    saved = load_saved_model(checkpoints["cnn"])
    folder = tmp_path_factory.mktemp("exported")
    images = verification_images(saved)
    return {fmt: export_model(saved, fmt, folder / f"cnn.{fmt}", images).path for fmt in ("onnx", "pt2")}


@pytest.mark.parametrize("fmt", ["onnx", "pt2"])
def test_predict_with_an_exported_file_gives_the_checkpoints_csv(runs, exported, capsys, fmt):
    checkpoints, data = runs
    args = [data / "val", "--probabilities", "--top-k", "2"]
    code, from_checkpoint, err = run_cli(predict_cli.main, ["--checkpoint", checkpoints["cnn"], *args], capsys)
    assert code == 0, err
    code, from_file, err = run_cli(predict_cli.main, ["--model-file", exported[fmt], *args], capsys)
    assert code == 0, err
    ours, theirs = read_rows(from_file), read_rows(from_checkpoint)
    assert len(ours) == 24 and list(ours[0]) == ["path", "label", "confidence", "label_2", "confidence_2",
                                                 *(f"p_{c}" for c in CLASSES)]
    for a, b in zip(ours, theirs):
        assert (a["path"], a["label"], a["label_2"]) == (b["path"], b["label"], b["label_2"])
        assert [float(a[f"p_{c}"]) for c in CLASSES] == pytest.approx([float(b[f"p_{c}"]) for c in CLASSES],
                                                                      abs=2e-6)


def test_corrupt_or_mismatching_files_are_refused_by_name(runs, exported, tmp_path, capsys):
    import onnx

    onnx_bytes, pt2_bytes = exported["onnx"].read_bytes(), exported["pt2"].read_bytes()
    foreign = onnx.load_model_from_string(onnx_bytes)
    del foreign.metadata_props[:]
    mismatched = onnx.load_model_from_string(onnx_bytes)
    metadata = json.loads(mismatched.metadata_props[0].value)
    mismatched.metadata_props[0].value = json.dumps({**metadata, "classes": [*metadata["classes"], "digit9"]})
    cases = {
        "truncated.onnx": (onnx_bytes[: len(onnx_bytes) // 2], "is not a readable ONNX model: truncated, corrupt"),
        "archive.onnx": (pt2_bytes, r"is a torch.export archive \(.pt2\), not an ONNX model: rename it to .pt2"),
        "truncated.pt2": (pt2_bytes[:5000], "is not a readable torch.export archive: truncated or corrupt"),
        "text.pt2": (b"hello", r"is not a torch.export archive \(.pt2 files are zip archives"),
        "foreign.onnx": (foreign.SerializeToString(), "holds no ignite_app metadata: it was not exported by "
                                                      "scripts/export.py"),
        "mismatched.onnx": (mismatched.SerializeToString(), "the model gives 3 scores per image but its metadata "
                                                            "names 4 classes"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ArtifactError, match=message):
            load_artifact(path)
    _, data_dir = runs
    with pytest.raises(SystemExit) as exit_info:  # the command line: exit 2 and the same message
        predict_cli.main(["--model-file", str(tmp_path / "mismatched.onnx"), str(data_dir / "val")])
    assert exit_info.value.code == 2
    assert "mismatched.onnx: the model gives 3 scores per image but its metadata names 4" in capsys.readouterr().err


def test_an_export_that_does_not_reproduce_the_checkpoint_is_not_written(runs, tmp_path, monkeypatch):
    checkpoints, _ = runs
    saved = load_saved_model(checkpoints["cnn"])
    images = verification_images(saved, limit=10)
    real = export_module._pt2_bytes

    def broken_exporter(model, example, metadata):  # as if the exporter mistranslated one layer
        wrong = load_saved_model(checkpoints["cnn"]).model
        with torch.no_grad():
            wrong.network[-1].bias.add_(0.5)
        return real(wrong, example, metadata)

    monkeypatch.setattr(export_module, "_pt2_bytes", broken_exporter)
    output = tmp_path / "model.pt2"
    with pytest.raises(ExportRefused, match=r"differs from the checkpoint's by up to 0.5 in the logits of 10 images, "
                                            r"over the tolerance 0.0001 x 1 \(the largest \|logit\|\); 10 of 10 labels "
                                            r"agree; .*model.pt2 was not written"):
        export_model(saved, "pt2", output, images)
    assert list(tmp_path.iterdir()) == []


def test_an_onnx_model_over_the_protobuf_limit_is_refused_before_exporting(runs, monkeypatch, tmp_path):
    checkpoints, _ = runs
    saved = load_saved_model(checkpoints["resnet18"])
    monkeypatch.setattr(export_module, "PROTOBUF_LIMIT", 10**6)
    with pytest.raises(ArtifactError, match=r"the model's weights take 0.04 GiB, over the 2 GiB protobuf limit of a "
                                            r"single-file ONNX model; export it with --format pt2"):
        export_model(saved, "onnx", tmp_path / "big.onnx", torch.zeros(2, 3, 16, 16, dtype=torch.uint8))


def test_a_missing_export_extra_is_named_with_the_install_command(runs, monkeypatch, tmp_path, capsys):
    import importlib.util

    checkpoints, _ = runs
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(SystemExit) as exit_info:
        export_cli.main(["--checkpoint", str(checkpoints["cnn"]), "--output", str(tmp_path / "m.onnx")])
    assert exit_info.value.code == 2
    assert ("the onnx format needs the packages of the export extra (missing: onnxruntime); install them with: "
            "pip install -e .[export]") in capsys.readouterr().err


@pytest.mark.parametrize(("main", "argv", "message"), [
    (predict_cli.main, ["--checkpoint", "a.pt", "--model-file", "m.onnx", "x.png"],
     "--checkpoint a.pt and --model-file m.onnx are mutually exclusive"),
    (predict_cli.main, ["x.png"], "the model is missing: pass --checkpoint PATH"),
    (export_cli.main, ["--checkpoint", "a.pt", "--output", "model.bin"], "--output model.bin: name the file FILE.onnx"),
    (export_cli.main, ["--checkpoint", "a.pt", "--output", "m.onnx", "--format", "pt2"],
     "--output m.onnx ends in .onnx but --format is pt2; name it m.pt2"),
])
def test_option_errors_exit_2_and_name_the_flags(main, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert export_cli.DEFAULT_TOLERANCE == export_module.DEFAULT_TOLERANCE  # stated twice: the CLI avoids torch


def post(url, data):
    request = urllib.request.Request(url, data=data, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_http_example_serves_the_exported_model(runs, exported, tmp_path, capsys):
    _, data_dir = runs
    port = free_port()
    server = subprocess.Popen([sys.executable, str(ROOT / "examples" / "serve_onnx.py"), str(exported["onnx"]),
                               "--port", str(port), "--top-k", "2"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout.readline().startswith(f"serving {exported['onnx']} (3 classes) on http://127.0.0.1:")
        image = sorted((data_dir / "val" / "digit2").iterdir())[0]
        status, answer = post(f"http://127.0.0.1:{port}/predict", image.read_bytes())
        assert status == 200 and len(answer["labels"]) == 2
        code, out, _ = run_cli(predict_cli.main, ["--model-file", exported["onnx"], "--top-k", "2", image], capsys)
        row = read_rows(out)[0]
        assert answer["labels"] == [row["label"], row["label_2"]]
        assert answer["confidences"] == pytest.approx([float(row["confidence"]), float(row["confidence_2"])],
                                                      abs=1e-5)
        status, answer = post(f"http://127.0.0.1:{port}/predict", b"not an image")
        assert status == 400 and "not an image Pillow can decode" in answer["error"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
            assert json.loads(response.read())["classes"] == CLASSES
    finally:
        server.terminate()
        server.wait(timeout=30)
