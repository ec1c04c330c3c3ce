"""The registries: one source of the names of models, datasets and optimizers; plugins that register; composition
from Python."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, run_script
from torch import nn

from ignite_app import build, register_model
from ignite_app.config import ConfigError, TrainConfig
from ignite_app.data.builtin import load_digits_data
from ignite_app.errors import UsageError
from ignite_app.models import Classifier, Preprocess, build_classifier
from ignite_app.registry import MODELS, Registry, UnknownName

EXAMPLE = ROOT / "examples" / "registry_plugin.py"
TINY = ["--epochs", "1", "--epoch-length", "3", "--no-progress", "--log-every", "1"]


def test_a_registry_checks_names_and_lists_what_it_has():
    models = Registry("model", "--model")
    models.register("lazy", "json:dumps")  # imported on first use only
    assert "lazy" in models and models.get("lazy") is json.dumps

    @models.register("tiny")
    def tiny(num_classes, input_shape):
        return nn.Linear(1, num_classes)

    assert models.names() == ["lazy", "tiny"] and models.get("tiny") is tiny
    with pytest.raises(ValueError, match=r"model 'tiny' is registered already; pick another name, or pass "
                                         r"replace=True"):
        models.register("tiny", lambda n, s: nn.Linear(1, n))
    with pytest.raises(UnknownName, match=r"--model 'tinyy' is not a registered model \(did you mean 'tiny'\?\); "
                                          r"registered: lazy, tiny; add your own with ignite_app.register_model"):
        models.get("tinyy")
    with pytest.raises(ValueError, match=r"a model name must be a non-empty string without ':'"):
        models.register("zoo:net", tiny)


def test_a_name_registered_from_python_is_a_valid_option_and_builds(tmp_path):
    @register_model("registry-test-net")
    def net(num_classes, input_shape):
        return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes))

    try:
        app = build(TrainConfig(model="registry-test-net", epochs=1, epoch_length=2, output_dir=tmp_path,
                                run_name="r", progress=False))
        assert isinstance(app.model, Classifier) and isinstance(app.model.network[1], nn.Linear)
        app.close()
    finally:
        del MODELS._entries["registry-test-net"]
    with pytest.raises(ConfigError, match=r"--model 'registry-test-net' is not a registered model"):
        TrainConfig(model="registry-test-net")


def test_the_registry_example_plugin_trains_evaluates_and_is_listed_in_help(tmp_path):
    plugin = tmp_path / "my_plugin.py"
    shutil.copy(EXAMPLE, plugin)
    help_text = run_script("train.py", "--plugin", plugin, "--help").stdout
    assert "registered: cnn, mlp, tiny" in help_text and "digits-inverted" in help_text and "rmsprop" in help_text
    # run as a script, the example trains with its own model, dataset and optimizer (it passes --plugin itself)
    result = subprocess.run([sys.executable, str(plugin), *TINY, "--output-dir", str(tmp_path), "--run-name", "run"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "data: digits-inverted, 1438 training and 359 validation images, 10 classes" in result.stdout
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["plugins"], saved["model"], saved["optimizer"]) == ([str(plugin)], "tiny", "rmsprop")
    best = tmp_path / "run" / "checkpoints" / "best_model.pt"
    evaluated = run_script("evaluate.py", "--checkpoint", best)  # imports the plugin named in the checkpoint
    assert evaluated.returncode == 0, evaluated.stderr
    assert "data: digits-inverted (validation split), 359 images" in evaluated.stdout

    plugin.unlink()  # a command that rebuilds the run needs its plugin, and says so
    missing = run_script("evaluate.py", "--checkpoint", best)
    assert missing.returncode == 2
    assert f"--plugin '{plugin}': file {plugin} does not exist" in missing.stderr


def test_a_plugin_that_fails_to_import_exits_2_naming_it(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import no_such_package_xyz\n")
    result = run_script("train.py", "--plugin", broken, "--output-dir", tmp_path)
    assert result.returncode == 2
    assert (f"--plugin '{broken}': importing {broken} failed: ModuleNotFoundError: No module named "
            "'no_such_package_xyz'") in result.stderr
    assert list(tmp_path.iterdir()) == [broken]


def test_preprocessing_takes_raw_uint8_or_unit_float_pixels_alike():
    preprocess = Preprocess(mean=(0.5, 0.25, 0.0), std=(0.5, 0.25, 1.0))
    pixels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    expected = (pixels.float() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor(
        [0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(preprocess(pixels), expected)
    torch.testing.assert_close(preprocess(pixels.float() / 255), expected)
    model = build_classifier("mlp", 3, (3, 4, 4), (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    assert {"preprocess.mean", "preprocess.std", "network.1.weight"} <= set(model.state_dict())
    with pytest.raises(ValueError, match=r"std must be positive, got \(0.5, 0.0\)"):
        Preprocess((0.1, 0.2), (0.5, 0.0))


def test_a_network_and_data_from_python_are_recorded_and_not_rebuilt_from_the_config(tmp_path):
    digits = load_digits_data()
    network = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    config = TrainConfig(epochs=1, epoch_length=3, output_dir=tmp_path, run_name="py", progress=False)
    result = build(config, model=network, data=(digits.train, digits.val, digits.classes)).run()
    saved = json.loads((tmp_path / "py" / "config.json").read_text())
    assert saved["python_model"] is True and saved["python_data"] is True
    with pytest.raises(UsageError, match=r"was trained on a network given from Python \(build\(config, model=...\)\), "
                                         r"which its config.json cannot rebuild; resume it from Python"):
        build(TrainConfig(epochs=2, output_dir=tmp_path, run_name="py", resume="auto", progress=False))
    evaluated = run_script("evaluate.py", "--checkpoint", result.best_checkpoint)
    assert evaluated.returncode == 2 and "holds a network given from Python" in evaluated.stderr
    # from Python, with the same network and data, it resumes
    app = build(TrainConfig(epochs=2, epoch_length=3, output_dir=tmp_path, run_name="py", resume="auto",
                            progress=False), model=nn.Sequential(nn.Flatten(), nn.Linear(64, 10)),
                data=(digits.train, digits.val, digits.classes))
    assert app.run().epochs == 2


def test_a_dataset_that_breaks_the_contract_is_refused_with_what_it_gave(tmp_path):
    config = TrainConfig(epochs=1, output_dir=tmp_path, progress=False)
    with pytest.raises(TypeError, match=r"build\(config, data=...\) returned a list; expected \(train_dataset, "
                                        r"val_dataset, class_names\) or a DataBundle"):
        build(config, data=[1, 2])
    bad_images = [(torch.zeros(8, 8), 0)] * 4  # (H, W): no channel axis
    with pytest.raises(TypeError, match=r"a training image must be a \(C, H, W\) tensor, got Tensor \(8, 8\)"):
        build(config, data=(bad_images, bad_images, ["a", "b"]))


def test_list_models_into_a_reader_that_stops_early_exits_0_without_a_traceback():
    """``train.py --list-models | head -1``: the pipe closes while ~1,400 names are being written."""
    process = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "train.py"), "--list-models", "timm:*"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline().startswith("timm:")
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=120) == 0 and "Traceback" not in stderr, stderr
