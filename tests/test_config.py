import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ignite_app.cli.train import HELP_GROUPS, build_parser, parse_config
from ignite_app.config import ConfigError, TrainConfig, flag_name

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"epochs": 0}, r"--epochs must be >= 1, got 0"),
        ({"batch_size": 2.5}, r"--batch-size must be a finite int, got 2.5"),
        ({"lr": 0.0}, r"--lr must be > 0, got 0.0"),
        ({"lr": float("nan")}, r"--lr must be a finite float, got nan"),
        ({"momentum": 1.5}, r"--momentum must be <= 1, got 1.5"),
        # torch's ReduceLROnPlateau refuses a factor of 1 (it would never lower the lr): refused here, before the
        # run folder exists
        ({"plateau_factor": 1.0}, r"--plateau-factor must be < 1, got 1.0"),
        ({"optimizer": "rmsprop"}, r"--optimizer 'rmsprop' is not a registered optimizer; registered: sgd, adam, "
                                   r"adamw; add your own with ignite_app.register_optimizer\(name\) in a --plugin"),
        ({"model": "cnm"}, r"--model 'cnm' is not a registered model \(did you mean 'cnn'\?\); registered: cnn, mlp"),
        ({"plateau_monitor": "val_f1"}, r"--plateau-monitor must be one of train_loss, val_loss, val_accuracy"),
        ({"epoch_length": 0}, r"--epoch-length must be >= 1, got 0"),
        ({"progress": "yes"}, r"--progress must be a finite bool, got 'yes'"),
        ({"run_name": "../elsewhere"}, r"--run-name '../elsewhere' is not a valid folder name"),
        ({"epochs": None}, r"--epochs needs a value, got None"),
        ({"log_weights": 0}, r"--log-weights must be >= 1, got 0"),
        ({"log_grads": 1.5}, r"--log-grads must be a finite int, got 1.5"),
    ],
)
def test_invalid_values_name_the_flag_and_the_rule(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_config_round_trips_through_a_plain_dict():
    config = TrainConfig(epochs=3, lr=0.01, output_dir="out", run_name="a-run", epoch_length=7)
    data = config.to_dict()
    assert data["output_dir"] == "out" and isinstance(config.output_dir, Path)
    assert TrainConfig.from_dict(data) == config


def test_from_dict_lists_unknown_keys():
    with pytest.raises(ConfigError, match=r"unknown config keys \['colour'\]; known keys: accumulate_steps, amp, "
                                          r"augment, auto_augment, backbone_lr_scale, backend"):
        TrainConfig.from_dict({"colour": "blue"})


def test_cli_parses_every_option_into_the_config():
    config = parse_config(["--epochs", "5", "--optimizer", "sgd", "--lr", "0.1", "--no-progress",
                           "--epoch-length", "4", "--output-dir", "elsewhere", "--run-name", "r1",
                           "--log-weights", "10", "--log-grads", "20"])
    assert config == TrainConfig(epochs=5, optimizer="sgd", lr=0.1, progress=False, epoch_length=4,
                                 output_dir=Path("elsewhere"), run_name="r1", log_weights=10, log_grads=20)


def command_line_fields():
    return [f.name for f in dataclasses.fields(TrainConfig) if f.metadata["cli"]]


def test_help_lists_every_option_with_its_default():
    text = build_parser().format_help()
    for name in command_line_fields():
        assert flag_name(name) in text, name
    assert "(default: 64)" in text and "(default: plateau)" in text
    assert "--python-model" not in text  # set by build(), not an option


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--epochs", "0"], "--epochs must be >= 1, got 0"),
        (["--lr-scheduler", "step"], "argument --lr-scheduler: invalid choice: 'step'"),
        (["--batch-size", "many"], "argument --batch-size: invalid int value: 'many'"),
        (["--log-grads", "0"], "--log-grads must be >= 1, got 0"),
    ],
)
def test_cli_rejects_bad_values_with_exit_code_2(argv, match, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_config(argv)
    assert exit_info.value.code == 2
    assert match in capsys.readouterr().err


@pytest.mark.parametrize("module", ["cli.train", "cli.evaluate", "cli.predict", "cli.export", "cli.find_lr"])
@pytest.mark.parametrize(("argv", "exit_code"), [(["--help"], 0), (["--batch-size", "0"], 2)])
def test_help_and_bad_options_answer_without_importing_torch(module, argv, exit_code):
    # the scripts' entry points, as they run: torch takes seconds to import, --help must not wait for it
    code = (f"import sys\nfrom ignite_app.{module} import main\ntry:\n    main({argv!r})\n"
            "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-2:] == [str(exit_code), "False"]


def test_help_groups_every_option_once():
    grouped = [name for names in HELP_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(command_line_fields())


# --- --config FILE ------------------------------------------------------------------------------------------------


def test_a_yaml_file_goes_through_the_command_lines_types_and_flags_override_it(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text("lr: 1e-3          # PyYAML reads this as a string\n"
                    "epochs: 7\nprogress: no\nmixup-alpha: 0.2\nema_decay: 0.999\nplugin: []\n"
                    "run_name: from-file\nresume: auto\n")  # run control: never taken from a file
    config = parse_config(["--config", str(path), "--epochs", "3"])
    assert config == TrainConfig(lr=1e-3, epochs=3, progress=False, mixup_alpha=0.2, ema_decay=0.999)
    assert parse_config(["--config", str(path), "--run-name", "mine"]).run_name == "mine"


def test_a_runs_config_json_round_trips(tmp_path):
    original = TrainConfig(epochs=4, lr=0.01, run_name="first", label_smoothing=0.1, sampler="balanced",
                           plugins=(), output_dir=tmp_path, accumulate_steps=2)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(original.to_dict()))
    assert parse_config(["--config", str(path)]) == dataclasses.replace(original, run_name=None)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("lrr: 0.1\n", r"--config {path}: unknown key 'lrr'; the closest option is 'lr' \(options: accumulate_steps, "),
        ("dataset: on\n", r"--config {path}: dataset: expected a str, got the boolean True \(YAML reads unquoted yes, "
                          r"no, on and off as booleans: quote the value\)"),
        ("epochs: 2.5\n", r"--config {path}: epochs: expected an int, got 2.5"),
        ("amp: 'yes'\n", r"--config {path}: amp: expected true or false, got 'yes'"),
        ("epochs: 0\n", r"--epochs must be >= 1, got 0 \(from --config {path}\)"),
        ("[1, 2]\n", r"--config {path}: expected a mapping of option names to values, got a list"),
        ("lr: [\n", r"--config {path}: not valid YAML"),
        ("python_model: true\n", r"--config {path}: python_model is True, which no command line can reproduce"),
    ],
)
def test_a_bad_config_file_exits_2_naming_the_key(tmp_path, capsys, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--config", str(path)])
    assert exit_info.value.code == 2
    assert re.search(match.format(path=re.escape(str(path))), capsys.readouterr().err)


def test_a_missing_config_file_is_named(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parse_config(["--config", str(tmp_path / "nope.json")])
    assert f"--config {tmp_path / 'nope.json'}: cannot be read (No such file or directory)" in capsys.readouterr().err


def test_the_config_files_plugins_are_imported_before_its_names_are_checked(tmp_path):
    plugin = str(ROOT / "examples" / "registry_plugin.py")
    path = tmp_path / "plugin.yaml"
    path.write_text(f"plugins: [{plugin}]\nmodel: tiny\n")
    code = ("import sys\nfrom ignite_app.cli.options import preload_plugins\nfrom ignite_app.cli.train import "
            f"parse_config\nargv = ['--config', {str(path)!r}]\npreload_plugins(argv, 'train.py')\n"
            "config = parse_config(argv)\nprint(config.model, config.plugins)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"tiny ('{plugin}',)"
