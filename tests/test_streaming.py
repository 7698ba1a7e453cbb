"""Streaming runs: workloads read epoch by epoch, results written as they are final."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sim import files
from sim.columns import Transfers
from sim.engine import split_epochs
from tests.adversarial import adversarial_workload
from workloads.describe import HourlyRows, hourly_rows
from workloads.registry import build_workload
from workloads.base import materialize


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    folder = tmp_path_factory.mktemp("streaming")
    accounts, transfers = adversarial_workload(11, 3000, 40)
    files.write_accounts(folder / "accounts.parquet", accounts)
    files.write_workload(folder / "workload.parquet", transfers)
    return folder, accounts, transfers


@pytest.mark.parametrize("batch_rows", [1, 7, 64, 1 << 20])
def test_reader_yields_the_files_epochs_and_facts(workload, batch_rows):
    folder, _, transfers = workload
    reader = files.WorkloadReader(folder / "workload.parquet", batch_rows=batch_rows)
    assert reader.facts == files.WorkloadFacts.of(transfers)
    streamed = list(reader.epochs())
    whole = list(split_epochs(transfers))
    assert len(streamed) == len(whole) == reader.facts.epoch_count > 10
    for got, want in zip(streamed, whole):
        for name, column in want.columns().items():
            assert np.array_equal(getattr(got, name), column), name
    assert len(list(reader.epochs())) == len(whole)  # a second pass starts again


def test_a_reader_left_early_stops_its_thread(workload):
    import threading

    folder, _, _ = workload
    epochs = files.WorkloadReader(folder / "workload.parquet", batch_rows=5).epochs()
    next(epochs)
    epochs.close()
    assert not any(t.name == "workload-reader" for t in threading.enumerate())


def test_a_streamed_read_holds_a_bounded_part_of_the_file(tmp_path, monkeypatch):
    """The reader's memory must not grow with the file: pyarrow's pre-buffering kept every row
    group's bytes read so far (9 GB held by the end of a 500M-row replay). 120 row groups of
    2,000 rows: the Arrow memory held while reading stays a small part of the file."""
    import pyarrow as pa
    from workloads.plain import PlainP2P

    monkeypatch.setattr(files, "ROW_GROUP_SIZE", 2000)
    source = PlainP2P(500, 240_000 - 500, 2000, 1.1, np.random.default_rng(3))
    with files.WorkloadWriter(tmp_path / "workload.parquet") as writer:
        for epoch in source.epochs():
            writer.write(epoch)
    file_bytes = (tmp_path / "workload.parquet").stat().st_size
    held = [pa.total_allocated_bytes() for _ in
            files.WorkloadReader(tmp_path / "workload.parquet", batch_rows=2000).epochs()]
    assert len(held) == 121  # one funding epoch, then 120 P2P epochs
    assert max(held) < file_bytes / 4, (max(held), file_bytes)


def test_streamed_results_equal_the_whole_write(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "ROW_GROUP_SIZE", 700)
    _, transfers = adversarial_workload(5, 3000, 9)
    status = (np.arange(len(transfers)) % 7).astype(np.uint16)
    files.write_results(tmp_path / "whole.parquet", transfers.id, status, transfers.epoch)
    with files.ResultsWriter(tmp_path / "streamed.parquet") as writer:
        for start, stop in transfers.epoch_bounds():
            writer.write(transfers.id[start:stop], status[start:stop], transfers.epoch[start:stop])
    assert (tmp_path / "whole.parquet").read_bytes() == (tmp_path / "streamed.parquet").read_bytes()


def test_hourly_rows_counted_epoch_by_epoch_equal_the_whole_count():
    source = build_workload("quick", 3, None)
    _, transfers = materialize(source)
    hourly = HourlyRows(source.model_seconds_per_sim_second, source.funding_epoch_count)
    for rows in split_epochs(transfers):
        hourly.add(rows)
    whole = hourly_rows(transfers, source.model_seconds_per_sim_second, source.funding_epoch_count)
    assert hourly.rows_per_hour() == whole and sum(whole) > 0


def test_the_engine_hands_every_epoch_to_its_sink_in_order(workload):
    from sim.engine import Engine, local_hosts, table_hint

    _, accounts, transfers = workload
    hosts = local_hosts(accounts, 3, hint=table_hint(transfers, 100, 3))
    seen: list[tuple[Transfers, np.ndarray]] = []
    streamed = Engine(accounts, hosts).run(split_epochs(transfers), keep_status=False,
                                           sink=lambda rows, status: seen.append((rows, status.copy())))
    kept = Engine(accounts, local_hosts(accounts, 3, hint=table_hint(transfers, 100, 3))).run(
        split_epochs(transfers))
    assert len(streamed.status) == 0
    assert np.array_equal(np.concatenate([rows.id for rows, _ in seen]), transfers.id)
    assert np.array_equal(np.concatenate([status for _, status in seen]), kept.status)


def test_a_streamed_replay_equals_an_in_memory_one(workload, tmp_path):
    from xpay.runner import RunOptions, replay

    folder, accounts, transfers = workload
    options = RunOptions(shards=3, in_process=True, progress=False)
    whole = replay(accounts, transfers, tmp_path / "whole", options)
    reader = files.WorkloadReader(folder / "workload.parquet", batch_rows=500)
    streamed = replay(accounts, reader, tmp_path / "streamed", options)
    assert streamed["result_sha256"] == whole["result_sha256"]
    assert streamed["strict_serial_divergence"] == whole["strict_serial_divergence"] is not None
    for name in ("results.parquet", "balances.parquet"):
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "streamed" / name).read_bytes()
    memory = json.loads((tmp_path / "streamed" / "summary.json").read_text())["memory"]
    assert memory["driver_peak_rss_bytes"] > 10 * 2**20 and memory["peak_all_processes_bytes"] > 0
    assert not list(tmp_path.glob(".*partial*"))  # the staging folders are gone


def test_the_strict_serial_measurement_is_skipped_and_said_when_it_cannot_fit(workload, tmp_path,
                                                                             monkeypatch):
    import xpay.runner as runner

    folder, accounts, _ = workload
    monkeypatch.setattr(runner, "available_memory_bytes", lambda: 1024)
    summary = runner.replay(accounts, files.WorkloadReader(folder / "workload.parquet"), tmp_path / "out",
                            runner.RunOptions(shards=2, in_process=True, progress=False))
    assert summary["strict_serial_divergence"] is None
    assert "GiB available" in summary["strict_serial_skipped"]
