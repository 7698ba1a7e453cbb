"""sim/files.py: exact schemas, round trips, deterministic bytes and every refusal rule."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim import files
from sim.columns import ACCOUNT_DTYPES, TRANSFER_DTYPES, Accounts, Balances, Transfers
from sim.constants import ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, FLAG_LINKED, FLAG_PENDING
from sim.errors import InputRefused


def make_accounts(n: int = 6) -> Accounts:
    return Accounts.from_columns(
        id=np.arange(n, dtype=np.uint64) * 7 + 2**63,  # ids need not be 1..N; use the high range
        ledger=np.arange(n) % 5 + 1,
        flags=np.arange(n) % 2 * ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS,
    )


def make_transfers(n: int = 10) -> Transfers:
    rows = np.arange(n)
    return Transfers.from_columns(
        id=rows + 1,
        epoch=rows // 3,
        sim_time_us=rows * 1000 - 5,
        debit_account=rows + 10,
        credit_account=rows + 20,
        amount=rows * 100 - 50,  # a negative amount is a row error, not a file error
        ledger=np.ones(n),
        code=rows % 16,
        flags=np.where(rows % 4 == 0, FLAG_PENDING, FLAG_LINKED * (rows % 2)),
        pending_id=np.zeros(n),
        timeout_s=rows % 3,
    )


def make_balances(n: int = 6) -> Balances:
    rows = np.arange(n, dtype=np.int64)
    return Balances.from_columns(
        id=rows + 1,
        ledger=np.full(n, 2),
        debits_pending=rows,
        debits_posted=rows * 3,
        credits_pending=-rows,
        credits_posted=np.full(n, 2**62),
    )


def columns_of(obj) -> dict:
    return {n: a.copy() for n, a in obj.columns().items()}


def write_raw(path, columns: dict, types: dict | None = None) -> None:
    """A Parquet file written directly, bypassing sim.files (for bad files)."""
    arrays = {n: pa.array(v, type=(types or {}).get(n)) for n, v in columns.items()}
    pq.write_table(pa.table(arrays), path)


def raw_accounts(**changes) -> dict:
    cols = {n: pa.array(a, type=files.ACCOUNTS_SCHEMA.field(n).type) for n, a in columns_of(make_accounts()).items()}
    cols.update(changes)
    return cols


def raw_transfers(**changes) -> dict:
    cols = {n: pa.array(a, type=files.WORKLOAD_SCHEMA.field(n).type) for n, a in columns_of(make_transfers()).items()}
    cols.update(changes)
    return cols


def refused(reader, path) -> str:
    with pytest.raises(InputRefused) as info:
        reader(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path) + ": ")
    return message


# --- schemas ------------------------------------------------------------------------------


def test_schemas_match_the_spec():
    assert files.ACCOUNTS_SCHEMA.names == list(ACCOUNT_DTYPES)
    assert files.WORKLOAD_SCHEMA.names == list(TRANSFER_DTYPES)
    assert files.RESULTS_SCHEMA.names == ["id", "status", "epoch"]
    assert files.BALANCES_SCHEMA.names == [
        "id", "ledger", "debits_pending", "debits_posted", "credits_pending", "credits_posted",
    ]
    assert str(files.WORKLOAD_SCHEMA.field("sim_time_us").type) == "int64"
    assert str(files.WORKLOAD_SCHEMA.field("timeout_s").type) == "uint32"
    for schema in (files.ACCOUNTS_SCHEMA, files.WORKLOAD_SCHEMA, files.RESULTS_SCHEMA, files.BALANCES_SCHEMA):
        assert not any(field.nullable for field in schema)


# --- round trips and determinism ----------------------------------------------------------


def test_accounts_round_trip(tmp_path):
    accounts = make_accounts()
    files.write_accounts(tmp_path / "a.parquet", accounts)
    back = files.read_accounts(tmp_path / "a.parquet")
    for name, array in accounts.columns().items():
        assert back.columns()[name].dtype == array.dtype
        assert np.array_equal(back.columns()[name], array)


def test_workload_round_trip(tmp_path):
    transfers = make_transfers()
    files.write_workload(tmp_path / "w.parquet", transfers)
    back = files.read_workload(tmp_path / "w.parquet")
    for name, array in transfers.columns().items():
        assert back.columns()[name].dtype == array.dtype
        assert np.array_equal(back.columns()[name], array)


def test_empty_workload_round_trip(tmp_path):
    files.write_workload(tmp_path / "w.parquet", Transfers.empty())
    assert len(files.read_workload(tmp_path / "w.parquet")) == 0


def test_results_round_trip(tmp_path):
    ids = np.array([5, 0, 2**64 - 1], dtype=np.uint64)
    status = np.array([0, 3, 21], dtype=np.uint16)
    epoch = np.array([0, 0, 7], dtype=np.uint64)
    files.write_results(tmp_path / "r.parquet", ids, status, epoch)
    table = files.read_results(tmp_path / "r.parquet")
    assert table.schema == files.RESULTS_SCHEMA
    assert table.column("id").to_pylist() == ids.tolist()
    assert table.column("status").to_pylist() == status.tolist()
    assert table.column("epoch").to_pylist() == epoch.tolist()


def test_balances_round_trip(tmp_path):
    balances = make_balances()
    files.write_balances(tmp_path / "b.parquet", balances)
    assert files.read_balances(tmp_path / "b.parquet").equals(balances)


def test_writers_are_byte_identical(tmp_path):
    for name, write, data in [
        ("a", files.write_accounts, make_accounts),
        ("w", files.write_workload, make_transfers),
        ("b", files.write_balances, make_balances),
    ]:
        write(tmp_path / f"{name}1.parquet", data())
        write(tmp_path / f"{name}2.parquet", data())
        assert (tmp_path / f"{name}1.parquet").read_bytes() == (tmp_path / f"{name}2.parquet").read_bytes()
    args = (np.arange(1, 9, dtype=np.uint64), np.zeros(8, np.uint16), np.zeros(8, np.uint64))
    files.write_results(tmp_path / "r1.parquet", *args)
    files.write_results(tmp_path / "r2.parquet", *args)
    assert (tmp_path / "r1.parquet").read_bytes() == (tmp_path / "r2.parquet").read_bytes()


def test_no_pandas_metadata(tmp_path):
    files.write_accounts(tmp_path / "a.parquet", make_accounts())
    metadata = pq.read_schema(tmp_path / "a.parquet").metadata or {}
    assert b"pandas" not in metadata


def test_other_column_order_many_row_groups_and_optional_fields_accepted(tmp_path):
    cols = raw_transfers()
    reordered = pa.table({n: cols[n] for n in reversed(list(cols))})  # fields nullable here
    pq.write_table(reordered, tmp_path / "w.parquet", row_group_size=3)
    back = files.read_workload(tmp_path / "w.parquet")
    assert list(back.columns()) == list(TRANSFER_DTYPES)
    for name, array in make_transfers().columns().items():
        assert np.array_equal(back.columns()[name], array)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    target = tmp_path / "b.parquet"
    files.write_balances(target, make_balances())
    before = target.read_bytes()

    def broken_write(table, where, **kwargs):
        with open(where, "wb") as out:
            out.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(files.pq, "write_table", broken_write)
    with pytest.raises(OSError):
        files.write_balances(target, make_balances(3))
    assert target.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["b.parquet"]


def test_writer_refuses_values_that_do_not_fit(tmp_path):
    with pytest.raises(pa.ArrowInvalid):
        files.write_results(tmp_path / "r.parquet", np.array([-1]), np.zeros(1, np.uint16), np.zeros(1, np.uint64))
    assert not (tmp_path / "r.parquet").exists()


# --- refusals -----------------------------------------------------------------------------


def stream_workload(path):
    """A workload opened for streaming, 3 rows a batch (refusals cross batch boundaries), and
    read through: opening it checks the file-level rules; a page found corrupt while an epoch
    is read is refused then."""
    reader = files.WorkloadReader(path, batch_rows=3)
    for _ in reader.epochs():
        pass
    return reader


WORKLOAD_READERS = pytest.mark.parametrize("read", [files.read_workload, stream_workload],
                                           ids=["whole", "streamed"])


def test_wrong_type_refused(tmp_path):
    path = tmp_path / "a.parquet"
    write_raw(path, raw_accounts(id=pa.array(np.arange(1, 7), type=pa.int64())))
    message = refused(files.read_accounts, path)
    assert "column id: expected uint64, found int64" in message


@WORKLOAD_READERS
def test_null_refused(tmp_path, read):
    path = tmp_path / "w.parquet"
    write_raw(path, raw_transfers(amount=pa.array([1, 2, 3, None, 5, None, 7, 8, 9, 10], type=pa.int64())))
    message = refused(read, path)
    assert "column amount, row 3: null" in message


def test_null_refused_in_balances(tmp_path):
    path = tmp_path / "b.parquet"
    cols = {n: pa.array(a, type=files.BALANCES_SCHEMA.field(n).type) for n, a in columns_of(make_balances()).items()}
    cols["ledger"] = pa.array([2, 2, 2, 2, 2, None], type=pa.uint32())
    write_raw(path, cols)
    assert "column ledger, row 5: null" in refused(files.read_balances, path)


@WORKLOAD_READERS
def test_missing_column_refused(tmp_path, read):
    path = tmp_path / "w.parquet"
    cols = raw_transfers()
    del cols["pending_id"]
    write_raw(path, cols)
    assert "column pending_id: missing" in refused(read, path)


def test_extra_column_refused(tmp_path):
    path = tmp_path / "a.parquet"
    write_raw(path, raw_accounts(nickname=pa.array(["x"] * 6)))
    assert "column nickname: unknown extra column" in refused(files.read_accounts, path)


def test_extra_column_refused_in_results(tmp_path):
    path = tmp_path / "r.parquet"
    write_raw(path, {"id": [1], "status": [0], "epoch": [0], "note": [1]},
              {"id": pa.uint64(), "status": pa.uint16(), "epoch": pa.uint64()})
    assert "column note: unknown extra column" in refused(files.read_results, path)


@WORKLOAD_READERS
def test_decreasing_epoch_refused(tmp_path, read):
    path = tmp_path / "w.parquet"
    epoch = np.array([0, 0, 1, 1, 2, 1, 3, 3, 3, 3], dtype=np.uint64)
    write_raw(path, raw_transfers(epoch=pa.array(epoch)))
    message = refused(read, path)
    assert "column epoch, row 5: epoch 1 is less than 2 on row 4" in message


@WORKLOAD_READERS
def test_decreasing_sim_time_refused(tmp_path, read):
    path = tmp_path / "w.parquet"
    times = np.array([0, 10, 20, 30, 40, 50, 60, 70, 65, 80], dtype=np.int64)
    write_raw(path, raw_transfers(sim_time_us=pa.array(times)))
    message = refused(read, path)
    assert "column sim_time_us, row 8: sim_time_us 65 is less than 70 on row 7" in message


def test_zero_account_id_refused(tmp_path):
    path = tmp_path / "a.parquet"
    write_raw(path, raw_accounts(id=pa.array([4, 5, 6, 0, 8, 9], type=pa.uint64())))
    assert "column id, row 3: account id must not be zero" in refused(files.read_accounts, path)


def test_duplicate_account_id_refused(tmp_path):
    path = tmp_path / "a.parquet"
    write_raw(path, raw_accounts(id=pa.array([40, 5, 77, 8, 77, 9], type=pa.uint64())))
    assert "column id, rows 2 and 4: duplicate account id 77" in refused(files.read_accounts, path)


def test_unknown_account_flag_bit_refused(tmp_path):
    path = tmp_path / "a.parquet"
    write_raw(path, raw_accounts(flags=pa.array([0, 1, 1, 0, 3, 0], type=pa.uint16())))
    assert "column flags, row 4: unknown account flag bits 0x2" in refused(files.read_accounts, path)


def test_row_errors_are_not_file_errors(tmp_path):
    path = tmp_path / "w.parquet"
    cols = raw_transfers(
        id=pa.array([0] * 10, type=pa.uint64()),
        flags=pa.array([0xFFFF] * 10, type=pa.uint16()),
        amount=pa.array([-(2**63)] * 10, type=pa.int64()),
    )
    write_raw(path, cols)
    assert len(files.read_workload(path)) == 10


@WORKLOAD_READERS
def test_truncated_parquet_refused(tmp_path, read):
    path = tmp_path / "w.parquet"
    files.write_workload(path, make_transfers(200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert "not a readable Parquet file" in refused(read, path)


def test_not_a_parquet_file_refused(tmp_path):
    path = tmp_path / "a.parquet"
    path.write_text("id,ledger,flags\n1,1,0\n")
    assert "not a readable Parquet file" in refused(files.read_accounts, path)


def test_missing_file_refused(tmp_path):
    path = tmp_path / "nowhere.parquet"
    assert refused(files.read_accounts, path) == f"{path}: file not found"


@WORKLOAD_READERS
def test_directory_refused(tmp_path, read):
    assert "not a regular file" in refused(read, tmp_path)


@WORKLOAD_READERS
def test_corrupt_page_refused(tmp_path, read):
    path = tmp_path / "w.parquet"
    files.write_workload(path, make_transfers(2000))
    good = path.read_bytes()
    for offset in range(16, len(good) // 2, max(1, len(good) // 20)):
        bad = bytearray(good)
        bad[offset : offset + 4] = bytes(255 - b for b in bad[offset : offset + 4])
        path.write_bytes(bytes(bad))
        message = refused(read, path)
        assert "Parquet" in message, message
