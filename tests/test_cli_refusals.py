"""Malformed input files are refused whole by `xpay replay`: exit 2, one line, no results."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sim import files
from xpay.cli import main
from tests.adversarial import adversarial_workload


def write_good(folder):
    accounts, transfers = adversarial_workload(21, 40, 5)
    files.write_accounts(folder / "accounts.parquet", accounts)
    files.write_workload(folder / "workload.parquet", transfers)


def edit(path, change):
    table = pq.read_table(path)
    pq.write_table(change(table), path)


def set_value(name, row, value, type_=None):
    def change(table):
        values = table[name].to_pylist()
        values[row] = value
        field = table.schema.field(name).with_nullable(True)
        return table.set_column(table.schema.get_field_index(name), field, pa.array(values, type_ or field.type))
    return change


def cast(name, type_):
    def change(table):
        index = table.schema.get_field_index(name)
        return table.set_column(index, pa.field(name, type_), table[name].cast(type_, safe=False))
    return change


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


CASES = {
    "workload wrong type": ("workload", lambda p: edit(p, cast("amount", pa.int32())), "amount"),
    "workload null": ("workload", lambda p: edit(p, set_value("ledger", 3, None)), "row 3"),
    "workload missing column": ("workload", lambda p: edit(p, lambda t: t.drop_columns(["code"])), "code"),
    "workload epoch decreases": ("workload", lambda p: edit(p, set_value("epoch", 5, 0)), "epoch"),
    "workload sim_time decreases": ("workload", lambda p: edit(p, set_value("sim_time_us", 6, -(2**62))),
                                    "sim_time_us"),
    "workload truncated": ("workload", truncate, "Parquet"),
    "accounts zero id": ("accounts", lambda p: edit(p, set_value("id", 1, 0)), "row 1"),
    "accounts duplicate id": ("accounts", lambda p: edit(p, lambda t: pa.concat_tables([t, t.slice(0, 1)])),
                              "duplicate"),
    "accounts unknown flag bit": ("accounts", lambda p: edit(p, set_value("flags", 2, 4)), "row 2"),
    "accounts truncated": ("accounts", truncate, "Parquet"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_file_is_refused(tmp_path, capsys, case):
    which, damage, named = CASES[case]
    write_good(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.parquet").write_bytes(b"an earlier run's file")
    damage(tmp_path / f"{which}.parquet")
    capsys.readouterr()
    status = main(["replay", "--accounts", str(tmp_path / "accounts.parquet"), "--workload",
                   str(tmp_path / "workload.parquet"), "--out", str(out), "--in-process", "--quiet",
                   "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1, err
    assert named in err[0]
    assert "Traceback" not in err[0]
    assert not (out / "results.parquet").exists()


def test_replay_too_big_for_memory_is_refused_before_reading(tmp_path, capsys, monkeypatch):
    import xpay.app as app

    write_good(tmp_path)
    monkeypatch.setattr(app, "available_memory_bytes", lambda: 64)  # rows stream: accounts decide
    status = main(["replay", "--accounts", str(tmp_path / "accounts.parquet"), "--workload",
                   str(tmp_path / "workload.parquet"), "--out", str(tmp_path / "out"), "--quiet"])
    assert status == 2
    err = capsys.readouterr().err
    assert "need about" in err and "available" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.parquet").exists()
