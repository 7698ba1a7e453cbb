"""The bank test at smoke size: shard kills, delayed/duplicated/stale batches, nothing lost."""

from __future__ import annotations

import pyarrow.parquet as pq


def test_bank_smoke(ray_session, tmp_path):
    from benchmarks.bank import SMOKE, run_bank

    report = run_bank(SMOKE, tmp_path, progress=lambda line: None)
    totals = report["totals"]
    assert totals["runs"] == len(SMOKE.seeds) * len(SMOKE.shard_counts)
    assert totals["kills"] == totals["recoveries"] == SMOKE.kills * totals["runs"]
    assert totals["rows_lost_or_changed"] == 0 and totals["accounts_differing"] == 0
    assert totals["duplicates_applied"] == 0 and totals["stale_applied"] == 0
    assert totals["invariant_violations"] == 0 and totals["passed"]
    run = report["runs"][0]
    assert run["duplicates_offered"] == SMOKE.duplicates and run["stale_offered"] == SMOKE.stale
    assert run["boundaries_checked"] == run["epochs"]
    table = pq.read_table(tmp_path / "bank.parquet")
    assert table.num_rows == totals["runs"] and "recovery_p99_s" in table.column_names
