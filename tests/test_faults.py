"""Shard actors killed at seeded points recover: results and balances stay the reference's.

`xpay replay --kill-shards 8` (plus delayed, duplicated and stale batches) on spec-conforming
adversarial workloads, for 3 and 4 shards, against the reference ledger; every kill is followed
by a recovery, nothing is applied twice, and a stale batch is refused.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from sim import files
from xpay.cli import main
from sim.reference import run_reference
from tests.adversarial import adversarial_workload

WINDOW = 3


def write_inputs(folder, seed, rows):
    accounts, transfers = adversarial_workload(seed, rows, 9)
    files.write_accounts(folder / "accounts.parquet", accounts)
    files.write_workload(folder / "workload.parquet", transfers)
    return accounts, transfers


def replay(folder, out, shards, *extra):
    return main(["replay", "--accounts", str(folder / "accounts.parquet"), "--workload",
                 str(folder / "workload.parquet"), "--shards", str(shards), "--out", str(out),
                 "--window-epochs", str(WINDOW), "--quiet", "--no-progress", "--snapshot-every", "4", *extra])


@pytest.mark.parametrize("shards,seed", [(3, 21), (4, 22)])
def test_kill_shards_8_equals_reference(ray_session, tmp_path, shards, seed):
    accounts, transfers = write_inputs(tmp_path, seed, 160)
    out = tmp_path / "out"
    status = replay(tmp_path, out, shards, "--kill-shards", "8", "--fault-seed", str(seed),
                    "--duplicate-batches", "2", "--delay-batches", "2", "--stale-batches", "2")
    assert status == 0
    expected = run_reference(accounts, transfers, window_epochs=WINDOW)
    results = files.read_results(out / "results.parquet")
    np.testing.assert_array_equal(results.column("status").to_numpy(), expected.status)
    assert files.read_balances(out / "balances.parquet").equals(expected.balances)
    summary = json.loads((out / "summary.json").read_text())
    faults = summary["faults"]
    assert faults["kills"] == 8 and faults["recoveries"] == 8
    assert faults["duplicates_offered"] == 2 and faults["duplicates_applied"] == 0
    assert faults["stale_offered"] == 2 and faults["stale_applied"] == 0
    assert faults["recovery_seconds_p50"] > 0
    assert sum(summary["configuration"]["fault_plan"]["kill_points"].values()) == 8
    assert (out / "data" / "shard-000").is_dir()


def test_fault_plan_is_seeded_and_bounded():
    from actors.faults import FaultPlan

    a = FaultPlan.draw(5, 4, 41, kills=8, delays=2, duplicates=2)
    b = FaultPlan.draw(5, 4, 41, kills=8, delays=2, duplicates=2)
    assert a.kills == b.kills and a.delays == b.delays and a.duplicates == b.duplicates
    assert len(a.kills) == 8
    assert all(1 <= seq < 41 and 0 <= shard < 4 for shard, seq in a.kills)
    assert all(point != "committed" or seq % 2 == 1 for (_, seq), point in a.kills.items())
    with pytest.raises(ValueError, match="only 4"):
        FaultPlan.draw(1, 1, 5, kills=5)


def test_a_killed_shard_without_data_dir_stops_with_a_clear_error(ray_session, tmp_path):
    import ray

    from actors.ray_hosts import RayHosts, ShardLost
    from sim.engine import Engine, split_epochs, table_hint

    accounts, transfers = adversarial_workload(3, 40, 6)
    hosts = RayHosts(accounts, 2, WINDOW, table_hint(transfers, WINDOW, 2))
    try:
        ray.kill(hosts.actors[1], no_restart=False)
        with pytest.raises(ray.exceptions.RayActorError):  # the kill has landed (it is asynchronous)
            for _ in range(200):
                ray.get(hosts.actors[1].ready.remote(), timeout=30)
                time.sleep(0.05)
        with pytest.raises(ShardLost, match="no --data-dir"):
            Engine(accounts, hosts, WINDOW).run(split_epochs(transfers))
    finally:
        hosts.close()
