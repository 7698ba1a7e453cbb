"""The engine on Ray actors equals the reference ledger; `xpay replay` keeps its contract."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sim import files
from xpay.cli import main
from sim.constants import STATUS_NAMES
from sim.engine import Engine, table_hint, split_epochs
from sim.reference import run_reference
from tests.adversarial import adversarial_workload

WINDOW = 3
SUMMARY_KEYS = {"rows", "committed", "status_counts", "shards", "engine_seconds", "rows_per_s",
                "committed_per_s", "epoch_latency_ms", "invariants", "strict_serial_divergence",
                "versions", "hardware"}


def ray_run(pool, accounts, transfers, shards):
    from actors.ray_hosts import RayHosts

    hosts = RayHosts(accounts, shards, WINDOW, table_hint(transfers, WINDOW, shards), reuse=pool)
    try:
        return Engine(accounts, hosts, WINDOW).run(split_epochs(transfers))
    finally:
        hosts.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 80), shards=st.sampled_from([1, 2, 3, 5]))
def test_ray_engine_equals_reference(actor_pool, seed, rows, shards):
    accounts, transfers = adversarial_workload(seed, rows, 6)
    expected = run_reference(accounts, transfers, window_epochs=WINDOW)
    result = ray_run(actor_pool, accounts, transfers, shards)
    np.testing.assert_array_equal(result.status, expected.status)
    assert result.balances.equals(expected.balances)
    assert result.metrics.invariant_violations == []


def write_inputs(tmp_path, seed, rows):
    accounts, transfers = adversarial_workload(seed, rows, 7)
    files.write_accounts(tmp_path / "accounts.parquet", accounts)
    files.write_workload(tmp_path / "workload.parquet", transfers)
    return accounts, transfers


def replay_args(tmp_path, out, shards):
    return ["replay", "--accounts", str(tmp_path / "accounts.parquet"), "--workload",
            str(tmp_path / "workload.parquet"), "--shards", str(shards), "--out", str(out),
            "--window-epochs", str(WINDOW), "--quiet", "--no-progress"]


@pytest.mark.parametrize("shards", [1, 3, 4])
def test_xpay_replay_equals_reference(ray_session, tmp_path, shards):
    for seed in (11, 12, 13):
        accounts, transfers = write_inputs(tmp_path, seed, 300)
        out = tmp_path / f"out-{seed}"
        assert main(replay_args(tmp_path, out, shards)) == 0
        expected = run_reference(accounts, transfers, window_epochs=WINDOW)
        results = pq.read_table(out / "results.parquet")
        assert results.schema.equals(files.RESULTS_SCHEMA)
        np.testing.assert_array_equal(results["status"].to_numpy(), expected.status)
        np.testing.assert_array_equal(results["id"].to_numpy(), transfers.id)
        np.testing.assert_array_equal(results["epoch"].to_numpy(), transfers.epoch)
        assert files.read_balances(out / "balances.parquet").equals(expected.balances)
        summary = json.loads((out / "summary.json").read_text())
        assert SUMMARY_KEYS <= set(summary)
        assert summary["rows"] == len(transfers)
        assert summary["shards"] == shards
        assert set(summary["status_counts"]) == set(STATUS_NAMES)
        assert sum(summary["status_counts"].values()) == len(transfers)
        assert all(summary["invariants"].values())
        assert 0.0 <= summary["strict_serial_divergence"] <= 1.0
        assert set(summary["epoch_latency_ms"]) == {"p50", "p99", "max"}


def test_refused_workload_exits_2_without_results(ray_session, tmp_path, capsys):
    write_inputs(tmp_path, 5, 50)
    out = tmp_path / "out"
    assert main(replay_args(tmp_path, out, 2)) == 0
    assert (out / "results.parquet").exists()
    table = pq.read_table(tmp_path / "workload.parquet")
    epochs = table["epoch"].to_numpy().copy()
    epochs[10] = 0
    epochs[11:] = max(epochs[11:].max(), 1)
    import pyarrow as pa

    bad = table.set_column(table.schema.get_field_index("epoch"), "epoch", pa.array(epochs, pa.uint64()))
    pq.write_table(bad, tmp_path / "workload.parquet")
    capsys.readouterr()
    assert main(replay_args(tmp_path, out, 2)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "row 10" in err[0] and "epoch" in err[0]
    assert not (out / "results.parquet").exists()


def test_balance_overflow_stops_with_exit_1(ray_session, tmp_path, capsys):
    from sim.columns import Accounts, Transfers
    from sim.constants import AMOUNT_MAX

    accounts = Accounts.from_columns(id=[7, 9], ledger=[1, 1], flags=[0, 0])
    n = 1100  # 1024 transfers of 2**53 reach 2**63
    transfers = Transfers.from_columns(
        id=np.arange(1, n + 1), epoch=np.arange(n) // 100, sim_time_us=np.arange(n),
        debit_account=np.full(n, 7), credit_account=np.full(n, 9), amount=np.full(n, AMOUNT_MAX),
        ledger=np.ones(n), code=np.zeros(n), flags=np.zeros(n), pending_id=np.zeros(n), timeout_s=np.zeros(n))
    files.write_accounts(tmp_path / "accounts.parquet", accounts)
    files.write_workload(tmp_path / "workload.parquet", transfers)
    capsys.readouterr()
    assert main(replay_args(tmp_path, tmp_path / "out", 3)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "overflow" in err[0] and "row 1023" in err[0]
    assert not (tmp_path / "out" / "results.parquet").exists()


def test_token_authentication_cannot_be_switched_off():
    import os
    import subprocess
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    code = "from actors.ray_hosts import start_ray; start_ray()"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "keeps Ray's token authentication on" in done.stderr
