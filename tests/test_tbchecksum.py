"""TensorBoard's event-file checksum, computed in C: the same values as tensorboard's own, still checked on read."""

import os

import pytest
from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow
from tensorboard.summary.writer import record_writer
from torch.utils.tensorboard import SummaryWriter

from ignite_app.tbchecksum import masked_crc32c, use_fast_checksums

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
