"""Streaming a workload epoch by epoch writes the same bytes as writing it whole."""

from __future__ import annotations

from sim import files
from tests.adversarial import adversarial_workload


def test_streamed_workload_file_equals_the_whole_write(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "ROW_GROUP_SIZE", 700)  # several row groups, split mid-epoch
    _, transfers = adversarial_workload(3, 5000, 5)
    files.write_workload(tmp_path / "whole.parquet", transfers)
    with files.WorkloadWriter(tmp_path / "streamed.parquet") as writer:
        for start, stop in transfers.epoch_bounds():
            writer.write(transfers.slice(start, stop))
    assert writer.rows == len(transfers)
    assert (tmp_path / "whole.parquet").read_bytes() == (tmp_path / "streamed.parquet").read_bytes()


def test_a_failed_stream_leaves_no_file(tmp_path):
    _, transfers = adversarial_workload(4, 50, 5)
    try:
        with files.WorkloadWriter(tmp_path / "w.parquet") as writer:
            writer.write(transfers)
            raise RuntimeError("generator broke")
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []
