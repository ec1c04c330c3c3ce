"""Checkpoint files: what is said about a file that cannot be loaded, and which file a resume takes."""

import json
import pickle

import pytest
import torch

from ignite_app.runstate.checkpoint import (
    CheckpointError,
    TrainingSaver,
    UnsafeCheckpointError,
    load_checkpoint,
    newest_loadable,
)
from ignite_app.runstate.jobs import JobError

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(32)
LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")


class Payload:
    def __reduce__(self):
        return (print, ("never printed",))


@pytest.mark.parametrize(("content", "match"), [
    (b"\xde\xad\xbe\xef\x00\x01" * 100, r"is not a PyTorch checkpoint: it is binary data of an unknown kind"),
    (PNG, r"is not a PyTorch checkpoint: it is a PNG image"),
    (json.dumps({"epochs": 3}).encode(), r"is not a PyTorch checkpoint: it is JSON text"),
    (LFS_POINTER, r"is not a PyTorch checkpoint: it is a git-LFS pointer: the real file was never downloaded"),
    ("cat\ndog\n".encode(), r"is not a PyTorch checkpoint: it is a text file"),  # a label map
    (b"", r"is not a PyTorch checkpoint: it is an empty file"),
    (pickle.dumps([1, 2], protocol=4), r"is not a PyTorch checkpoint: it is a Python pickle that torch.save did not"),
])
def test_a_file_that_is_not_a_checkpoint_is_named_for_what_it_is(tmp_path, content, match):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=match) as caught:
        load_checkpoint(path)
    assert not isinstance(caught.value, UnsafeCheckpointError)


def test_truncated_and_code_carrying_checkpoints_are_told_apart(tmp_path):
    good, evil = tmp_path / "good.pt", tmp_path / "evil.pt"
    torch.save({"model": torch.ones(1000)}, good)
    torch.save({"model": Payload()}, evil)
    good.write_bytes(good.read_bytes()[:700])
    with pytest.raises(CheckpointError, match=r"good.pt is truncated or corrupt \(PytorchStreamReader"):
        load_checkpoint(good)
    with pytest.raises(UnsafeCheckpointError, match=r"evil.pt refused: it carries code \(GLOBAL \S*print:"):
        load_checkpoint(evil)


def test_a_list_is_not_a_checkpoint_of_this_app(tmp_path):
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match=r"is not a checkpoint of this app: it holds a list"):
        load_checkpoint(tmp_path / "list.pt")


def test_resume_auto_passes_over_any_unusable_newer_file_with_its_reason(tmp_path, caplog):
    torch.save({"trainer": {"iteration": 6, "epoch_length": 6}}, tmp_path / "training_6.pt")
    (tmp_path / "training_12.pt").write_bytes(PNG)
    torch.save({"model": Payload()}, tmp_path / "training_10.pt")
    torch.save({"state_dict": {}, "best_acc": 0.5}, tmp_path / "training_8.pt")  # a best model, renamed
    (found, checkpoint), skipped = newest_loadable(tmp_path)
    assert found == tmp_path / "training_6.pt" and checkpoint["trainer"]["iteration"] == 6
    assert [reason.split(": ", 1)[0] for reason in skipped] == [
        f"checkpoint {tmp_path / 'training_12.pt'} is not a PyTorch checkpoint",
        f"checkpoint {tmp_path / 'training_10.pt'} refused",
        f"checkpoint {tmp_path / 'training_8.pt'} holds no trainer state (it is not a training checkpoint)"]
    assert caplog.text.count("falling back to the previous checkpoint") == 3


def test_a_checkpoint_is_written_from_a_snapshot_taken_when_it_was_saved(tmp_path):
    saver = TrainingSaver(tmp_path, keep_last=2)
    weights = torch.zeros(1000)
    saver({"model": {"w": weights}, "trainer": {"iteration": 6, "epoch_length": 6}}, "training_6.pt")
    weights.add_(1)  # the training loop moves on while the file is being written
    saver.close()
    assert torch.equal(load_checkpoint(tmp_path / "training_6.pt")["model"]["w"], torch.zeros(1000))


def test_a_failed_background_write_stops_the_run_at_the_next_save(tmp_path, monkeypatch):
    def disk_full(path, write):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ignite_app.runstate.checkpoint.atomic_write", disk_full)
    saver = TrainingSaver(tmp_path, keep_last=2)
    saver({"trainer": {"iteration": 6}}, "training_6.pt")
    with pytest.raises(JobError, match=r"writing checkpoint .*training_6.pt failed: OSError: \[Errno 28\] No space"):
        saver.wait()
    saver.close()
