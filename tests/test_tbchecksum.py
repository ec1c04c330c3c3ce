"""TensorBoard's event-file checksum, computed in C: the same values as tensorboard's own, still checked on read."""

import os

import pytest
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
from tensorboard.summary.writer import record_writer
from torch.utils.tensorboard import SummaryWriter

from ignite_app.reporting.tbchecksum import masked_crc32c, use_fast_checksums

TENSORBOARDS_OWN = pywrap_tensorflow.masked_crc32c  # before any test replaced it


@pytest.mark.parametrize("size", [0, 1, 3, 12, 1000, 45_001])
def test_the_checksum_equals_tensorboards_own(size):
    data = os.urandom(size)
    assert masked_crc32c(data) == TENSORBOARDS_OWN(data)
    assert masked_crc32c(bytearray(data)) == TENSORBOARDS_OWN(data)


def test_event_files_are_written_and_read_with_it_and_corruption_is_still_found(tmp_path):
    assert use_fast_checksums()
    assert record_writer.masked_crc32c is masked_crc32c is pywrap_tensorflow.masked_crc32c
    writer = SummaryWriter(str(tmp_path))
    writer.add_scalar("loss", 0.5, 1)
    writer.close()
    [path] = tmp_path.glob("events.out.tfevents.*")

    def records():
        reader = pywrap_tensorflow.PyRecordReader_New(str(path))
        while True:
            try:
                reader.GetNext()
            except errors.OutOfRangeError:
                return
            yield reader.record()

    assert len(list(records())) == 2  # the file version, then the scalar
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # a byte of the scalar's record
    path.write_bytes(bytes(data))
    with pytest.raises(errors.DataLossError, match="crc32"):
        list(records())


def test_a_tensorboard_without_the_replaced_function_keeps_its_own_with_one_warning(monkeypatch, caplog):
    # a tensorboard version that moved the function: the patch must not crash set-up nor silently do nothing
    monkeypatch.setattr(record_writer, "masked_crc32c", TENSORBOARDS_OWN)
    monkeypatch.setattr(pywrap_tensorflow, "masked_crc32c", TENSORBOARDS_OWN)
    monkeypatch.delattr(record_writer, "masked_crc32c")
    assert use_fast_checksums() is False
    assert pywrap_tensorflow.masked_crc32c is TENSORBOARDS_OWN  # nothing half-replaced
    assert caplog.text.count("checksums stay in pure Python") == 1
    assert "tensorboard.summary.writer.record_writer has no masked_crc32c" in caplog.text


def test_importing_tensorboard_logging_does_not_switch_it_on():
    import subprocess
    import sys

    code = ("import ignite_app.reporting.tensorboard, ignite_app.reporting.eventfiles\n"
            "from tensorboard.summary.writer import record_writer\n"
            "print(record_writer.masked_crc32c.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() != "ignite_app.reporting.tbchecksum"  # the app switches it on, explicitly
