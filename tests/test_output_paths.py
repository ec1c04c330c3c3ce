"""Output paths that cannot be written are refused by name, with exit code 2, before any data or model is loaded."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import ROOT

from ignite_app.cli.train import output_dir_problem
from ignite_app.config import TrainConfig
from ignite_app.runstate.fileio import output_path_problem
from ignite_app.cli.predict import main as predict_main
from ignite_app.cli.predict import overwritten_input

# module: (the options before the output option, the output option, what the fix says)
CLIS = {
    "cli.train": ([], "--output-dir", "pass a folder you can write to: the run folders are created in it"),
    "cli.evaluate": (["--checkpoint", "missing.pt"], "--output",
                     "pass a folder you can write to: the two CSV files are written into it"),
    "cli.predict": (["--checkpoint", "missing.pt", "photo.png"], "--output",
                    "pass the CSV file to write, in a folder you can write to"),
}


def run_main(module: str, argv: list[str], unprivileged: bool = False) -> tuple[str, str]:
    """Call ``ignite_app.<module>.main(argv)`` in a fresh interpreter; returns ``"<exit code> <torch imported>"``
    (``"2 False"``) and its stderr.

    ``unprivileged``: when the tests run as root, who may write anywhere, become user nobody once the module is
    imported (the interpreter may live where nobody cannot read it, so the modules argparse imports late come first).
    """
    drop = "import locale, shutil\nos.setgid(65534)\nos.setuid(65534)\n" if unprivileged and os.geteuid() == 0 else ""
    code = (f"import os, sys\nfrom ignite_app.{module} import main\n{drop}try:\n    main({argv!r})\n"
            "except SystemExit as e:\n    print(e.code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    return " ".join(out.stdout.split()[-2:]), out.stderr


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


@pytest.fixture
def read_only_dir():
    """A folder nobody but root may write, in /tmp so that an unprivileged user can reach it."""
    path = Path(tempfile.mkdtemp(prefix="read-only-"))
    path.chmod(0o555)
    yield path
    path.chmod(0o755)
    shutil.rmtree(path)


def test_usable_output_paths_pass(tmp_path, a_file):
    assert output_path_problem(tmp_path, folder=True) is None
    assert output_path_problem(tmp_path / "new" / "deeper", folder=True) is None  # created when needed
    assert output_path_problem(a_file, folder=False) is None  # replaced
    assert output_path_problem(tmp_path / "new" / "p.csv", folder=False) is None
    assert output_path_problem(Path("relative-output"), folder=True) is None  # under the working folder


@pytest.mark.parametrize(("output", "folder", "reason"), [
    ("{file}", True, "is a file, not a folder"),
    ("{file}/runs", True, "lies under {file}, which is a file"),
    ("{file}/runs/deeper", True, "lies under {file}, which is a file"),
    ("{file}/p.csv", False, "lies under {file}, which is a file"),
])
def test_an_output_that_is_a_file_or_lies_under_one_gets_a_reason(a_file, output, folder, reason):
    assert output_path_problem(Path(output.format(file=a_file)), folder) == reason.format(file=a_file)


def test_a_folder_output_for_a_file_gets_a_reason(tmp_path):
    assert output_path_problem(tmp_path, folder=False) == "is a folder, not a file"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere; the command-line test below covers it")
def test_an_output_without_write_permission_gets_a_reason(read_only_dir):
    assert output_path_problem(read_only_dir, folder=True) == "is not writable"
    assert output_path_problem(read_only_dir / "a" / "b", folder=True) == \
        f"cannot be created: {read_only_dir} is not writable"


@pytest.mark.parametrize("module", CLIS)
@pytest.mark.parametrize(("output", "reason"), [
    ("{file}", "is a file, not a folder"),
    ("{file}/out", "lies under {file}, which is a file"),
])
def test_an_output_that_is_a_file_or_lies_under_one_exits_2_before_torch_is_imported(a_file, module, output,
                                                                                     reason):
    before, flag, fix = CLIS[module]
    output = output.format(file=a_file)
    if module == "cli.predict" and output == str(a_file):
        output = str(a_file.parent)  # an existing file is a valid --output for predict: the folder is not
        reason, fix = "is a folder, not a file", f"pass the CSV file to write, e.g. {a_file.parent}/predictions.csv"
    outcome, err = run_main(module, [*before, flag, output])
    assert outcome == "2 False", err
    assert re.search(rf"error: {flag} {re.escape(output)} {re.escape(reason.format(file=a_file))}; "
                     rf"{re.escape(fix)}\n", err), err


@pytest.mark.parametrize("module", CLIS)
def test_an_output_without_write_permission_exits_2_before_torch_is_imported(read_only_dir, module):
    before, flag, fix = CLIS[module]
    output = read_only_dir / "out"
    outcome, err = run_main(module, [*before, flag, str(output)], unprivileged=True)
    assert outcome == "2 False", err
    assert f"error: {flag} {output} cannot be created: {read_only_dir} is not writable; {fix}\n" in err


def test_a_resumed_run_checks_the_folder_it_writes(a_file, tmp_path):
    auto = TrainConfig(output_dir=a_file, run_name="r", resume="auto")  # continues in (or creates) a_file/r
    assert output_dir_problem(auto) == (f"--output-dir {a_file} --run-name r: the run folder {a_file / 'r'} lies "
                                        f"under {a_file}, which is a file; pass a folder you can write to: the run "
                                        "folders are created in it")
    # --resume PATH continues in the checkpoint's run folder: --output-dir plays no part
    assert output_dir_problem(TrainConfig(output_dir=a_file, resume=str(tmp_path / "run/checkpoints/x.pt"))) is None


@pytest.mark.parametrize("spelling", ["same", "dotted", "link"])
def test_predict_refuses_an_output_that_is_one_of_its_inputs(tmp_path, spelling):
    photo = tmp_path / "photos" / "photo.png"
    photo.parent.mkdir()
    photo.write_bytes(b"\x89PNG not really")
    output = {"same": photo, "dotted": tmp_path / "photos" / ".." / "photos" / "photo.png",
              "link": tmp_path / "link.png"}[spelling]
    if spelling == "link":
        output.symlink_to(photo)
    outcome, err = run_main("cli.predict", ["--checkpoint", "missing.pt", str(tmp_path), str(photo),
                                            "--output", str(output)])
    assert outcome == "2 False", err
    assert (f"error: --output {output} is the input {photo}: the CSV would replace it; pass another file, e.g. "
            f"{photo.parent / 'predictions.csv'}\n") in err
    assert photo.read_bytes() == b"\x89PNG not really"


def test_predict_refuses_an_output_that_is_an_image_of_an_input_folder(tmp_path, capsys):
    photo = tmp_path / "photos" / "nested" / "photo.png"
    photo.parent.mkdir(parents=True)
    photo.write_bytes(b"\x89PNG not really")
    with pytest.raises(SystemExit) as exit_info:
        predict_main(["--checkpoint", str(tmp_path / "missing.pt"), str(tmp_path / "photos"), "--output", str(photo)])
    assert exit_info.value.code == 2
    assert (f"error: --output {photo} is the input {photo}: the CSV would replace it; pass another file, e.g. "
            f"{photo.parent / 'predictions.csv'}\n") in capsys.readouterr().err
    assert photo.read_bytes() == b"\x89PNG not really"


def test_predict_may_write_its_csv_inside_an_input_folder(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"")
    assert overwritten_input(tmp_path / "predictions.csv", [tmp_path, tmp_path / "photo.png"]) is None
    (tmp_path / "predictions.csv").write_text("path,label,confidence\n")  # a previous run's: replaced
    assert overwritten_input(tmp_path / "predictions.csv", [tmp_path, tmp_path / "missing.png"]) is None
