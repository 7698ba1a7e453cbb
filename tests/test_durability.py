"""Write-ahead log, snapshots and recovery of a shard (sim.durability), in-process.

Crashes are simulated at every fault point (received, logged, committed, applied) of random
calls; the recovered engine must give the reference ledger's statuses and balances, apply no
call twice, and leave files from which a fresh shard rebuilds the same state.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from sim.durability import (
    Durability,
    DurableShard,
    batch_values,
    items_batch,
    read_log,
    snapshot_paths,
    truncate_after,
    wal_segments,
)
from sim.engine import Engine, check_shard_count, split_epochs, table_hint
from sim.hashtable import shard_of
from sim.hosts import DurableLocalHosts, SimulatedCrash
from sim.reference import run_reference
from sim.routing import as_bits
from sim.shard_state import ShardState
from sim.wire import DUPLICATE, STALE, CommitPayload
from tests.adversarial import adversarial_workload

WINDOW = 3
POINTS = ("received", "logged", "committed", "applied")


def state_factory(accounts, shard_count, hint):
    check_shard_count(shard_count)
    ledger_values = np.unique(accounts.ledger)
    shard = shard_of(as_bits(accounts.id), shard_count)

    def make(s):
        mine = shard == s
        return ShardState(s, shard_count, accounts.id[mine], accounts.ledger[mine], accounts.flags[mine],
                          ledger_values, WINDOW, hint)
    return make


class Faults:
    """Crash once at each planned (shard, seq, point)."""

    def __init__(self, plan):
        self.plan = set(plan)
        self.fired = []

    def __call__(self, shard_index):
        def fault(point, seq, method):
            key = (shard_index, seq, point)
            if key in self.plan:
                self.plan.discard(key)
                self.fired.append(key)
                raise SimulatedCrash(key)
        return fault


def run_durable(accounts, transfers, shards, folder, snapshot_every=4, plan=(), fsync="off"):
    hint = table_hint(transfers, WINDOW, shards)
    make = state_factory(accounts, shards, hint)
    faults = Faults(plan)
    hosts = DurableLocalHosts(make, shards, Durability(str(folder), fsync, snapshot_every), None)
    for s, d in enumerate(hosts.shards):
        d.fault = faults(s)
    original = hosts._make
    hosts._make = lambda s: _with_fault(original(s), faults(s))
    result = Engine(accounts, hosts, WINDOW).run(split_epochs(transfers))
    return result, hosts, faults


def _with_fault(durable, fault):
    durable.fault = fault
    return durable


def state_arrays(state: ShardState) -> dict:
    out = {}
    for name, value in state.snapshot():
        out[name] = value
    return out


def assert_same_state(a: ShardState, b: ShardState) -> None:
    sa, sb = state_arrays(a), state_arrays(b)
    assert sa.keys() == sb.keys()
    for name in sa:
        if isinstance(sa[name], np.ndarray):
            np.testing.assert_array_equal(sa[name], sb[name], err_msg=name)
        else:
            assert sa[name] == sb[name], name


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 60), shards=st.sampled_from([1, 3, 4]),
       crash_seed=st.integers(0, 2**32 - 1), crashes=st.integers(0, 6))
def test_crashes_at_any_point_change_nothing(tmp_path_factory, seed, rows, shards, crash_seed, crashes):
    accounts, transfers = adversarial_workload(seed, rows, 6)
    epochs = len(transfers.epoch_bounds())
    calls = 2 * epochs + 1
    rng = np.random.default_rng(crash_seed)
    plan = {(int(rng.integers(shards)), int(rng.integers(1, calls + 1)), POINTS[int(rng.integers(4))])
            for _ in range(crashes)}
    folder = tmp_path_factory.mktemp("data")
    expected = run_reference(accounts, transfers, window_epochs=WINDOW)
    result, hosts, faults = run_durable(accounts, transfers, shards, folder, plan=plan)
    np.testing.assert_array_equal(result.status, expected.status)
    assert result.balances.equals(expected.balances)
    assert set(faults.fired) <= plan
    assert hosts.crashes == len(faults.fired)
    for d in hosts.shards:  # every shard saw every call; the balances above show none twice
        assert d.seq == hosts.seq
    # a fresh shard rebuilt from the files has the same state as the live one
    make = state_factory(accounts, shards, table_hint(transfers, WINDOW, shards))
    live_shards = list(hosts.shards)
    hosts.close()  # releases the folders' locks (one process, or object, per folder)
    for s, live in enumerate(live_shards):
        rebuilt = DurableShard(make(s), Durability(str(folder), "off", 4))
        assert rebuilt.seq == live.seq
        assert_same_state(rebuilt.state, live.state)
        rebuilt.close()


def test_pruning_keeps_the_log_after_the_older_snapshot_across_rollbacks(tmp_path):
    """Segments that start at the same call (a rollback's rewrite and the next incarnation's,
    or a torn one and its successor) must not make pruning drop records still needed."""
    accounts, transfers = adversarial_workload(9, 60, 6)
    _, hosts, _ = run_durable(accounts, transfers, 1, tmp_path, snapshot_every=4)
    total = hosts.seq
    hosts.close()
    folder = tmp_path / "shard-000"
    oldest = int(snapshot_paths(folder)[0].name.split("-")[1].split(".")[0])
    calls = list(read_log(folder, oldest))
    make = state_factory(accounts, 1, table_hint(transfers, WINDOW, 1))
    for attempt in range(4):  # segment names carry a random tag: their order varies
        back_to = int(snapshot_paths(folder)[0].name.split("-")[1].split(".")[0])
        truncate_after(folder, back_to)  # leaves an empty segment starting at back_to + 1
        shard = DurableShard(make(0), Durability(str(tmp_path), "off", 4))
        for seq, method, values in calls:  # the next one starts at back_to + 1 too
            if seq > back_to:
                shard.apply(seq, method, tuple(values))  # snapshots and pruning run again
        shard.close()
        floor = int(snapshot_paths(folder)[0].name.split("-")[1].split(".")[0])
        assert [seq for seq, _, _ in read_log(folder, floor)] == list(range(floor + 1, total + 1))


def test_snapshots_and_segments_are_pruned(tmp_path):
    accounts, transfers = adversarial_workload(7, 60, 6)
    result, hosts, _ = run_durable(accounts, transfers, 2, tmp_path, snapshot_every=4)
    folder = tmp_path / "shard-000"
    assert hosts.seq > 8
    assert 1 <= len(snapshot_paths(folder)) <= 2
    oldest = int(snapshot_paths(folder)[0].name.split("-")[1].split(".")[0])
    seqs = [seq for seq, _, _ in read_log(folder, oldest)]
    assert seqs == list(range(oldest + 1, hosts.seq + 1))
    assert len(wal_segments(folder)) <= 3
    hosts.close()


def test_duplicate_answered_from_cache_and_old_call_refused(tmp_path):
    accounts, transfers = adversarial_workload(3, 40, 6)
    result, hosts, _ = run_durable(accounts, transfers, 1, tmp_path)
    shard = hosts.shards[0]
    before = shard.state.balances()
    outcome, cached = shard.apply(shard.seq, "finish", (None,))
    assert outcome == DUPLICATE and cached is shard.last_result
    outcome, nothing = shard.apply(shard.seq - 1, "evaluate", ())
    assert outcome == STALE and nothing is None
    np.testing.assert_array_equal(shard.state.balances(), before)
    assert shard.stats.duplicates_answered == 1 and shard.stats.stale_refused == 1
    with pytest.raises(Exception, match="missing"):
        shard.apply(shard.seq + 2, "finish", (None,))
    hosts.close()


def test_torn_log_tail_is_ignored(tmp_path):
    accounts, transfers = adversarial_workload(11, 60, 6)
    result, hosts, _ = run_durable(accounts, transfers, 1, tmp_path, snapshot_every=64)
    last = wal_segments(tmp_path / "shard-000")[-1]
    hosts.close()
    size = last.stat().st_size
    with open(last, "r+b") as f:
        f.truncate(size - 40)  # the end-of-stream marker and the last record cut short
    make = state_factory(accounts, 1, table_hint(transfers, WINDOW, 1))
    rebuilt = DurableShard(make(0), Durability(str(tmp_path), "off", 64))
    assert rebuilt.seq == hosts.seq - 1  # the torn call is missing: the coordinator re-sends it


def test_truncate_after_rolls_back(tmp_path):
    accounts, transfers = adversarial_workload(5, 60, 6)
    _, hosts, _ = run_durable(accounts, transfers, 1, tmp_path, snapshot_every=4)
    target = hosts.seq - 2
    hosts.close()
    truncate_after(tmp_path / "shard-000", target)
    make = state_factory(accounts, 1, table_hint(transfers, WINDOW, 1))
    rebuilt = DurableShard(make(0), Durability(str(tmp_path), "off", 4))
    assert rebuilt.seq == target
    with pytest.raises(Exception, match="in use by"):  # the live shard holds the folder
        from sim.durability import FolderLock
        FolderLock(tmp_path / "shard-000", wait_s=0.2)
    rebuilt.close()
    with pytest.raises(Exception, match="ends at call"):
        truncate_after(tmp_path / "shard-000", target + 1)


def test_call_records_round_trip():
    commit = CommitPayload(-5, np.arange(8, dtype=np.int64).reshape(2, 4), np.zeros((0, 4), np.int64),
                           np.ones((1, 8), np.int64), np.zeros((0, 2), np.int64))
    args = [("0", commit), ("1", 2**40), ("2", None), ("3", np.arange(5, dtype=np.uint16))]
    seq, method, back = batch_values(items_batch(9, "begin_epoch", args))
    assert (seq, method) == (9, "begin_epoch")
    assert back[0][1].epoch == -5
    np.testing.assert_array_equal(back[0][1].debit_rows, commit.debit_rows)
    assert back[0][1].credit_rows.shape == (0, 4)
    assert back[1][1] == 2**40 and back[2][1] is None
    assert back[3][1].dtype == np.uint16 and back[3][1].flags.writeable


def test_fsync_call_policy_gives_the_same_results_and_files(tmp_path):
    accounts, transfers = adversarial_workload(13, 60, 6)
    expected = run_reference(accounts, transfers, window_epochs=WINDOW)
    plan = {(0, 5, "logged"), (1, 8, "applied")}
    result, hosts, faults = run_durable(accounts, transfers, 2, tmp_path, plan=plan, fsync="call")
    np.testing.assert_array_equal(result.status, expected.status)
    assert result.balances.equals(expected.balances) and len(faults.fired) == 2
    hosts.close()


def test_driver_journal_round_trip(tmp_path):
    from sim.journal import DriverJournal, load

    commit = [CommitPayload(7, np.ones((2, 4), np.int64), np.zeros((0, 4), np.int64),
                            np.zeros((0, 8), np.int64), np.zeros((0, 2), np.int64)) for _ in range(2)]
    audit = [{"epoch": 3, "ledger": 1, "debits_pending": 2**70, "debits_posted": 5, "credits_pending": 2**70,
              "credits_posted": 5, "double_entry": True, "overdraft": True}]
    journal = DriverJournal(tmp_path, fsync="call")
    with pytest.raises(Exception, match="in use by another xpay run"):
        DriverJournal(tmp_path)  # one driver per data dir
    journal.start(None)
    journal.record(0, 0, np.array([0, 21], np.uint16), commit, audit, 1)
    journal.record(1, 2, np.array([0], np.uint16), commit, audit, 2)
    journal.close()
    resumed = load(tmp_path, 2)
    assert resumed.last_index == 1 and resumed.row_offset == 3 and resumed.committed == 2
    assert [s.tolist() for s in resumed.status] == [[0, 21], [0]]
    assert resumed.audit == audit  # exact, even past int64
    assert resumed.commit[1].epoch == 7 and resumed.commit[1].debit_rows.shape == (2, 4)
    again = DriverJournal(tmp_path)
    again.start(resumed)  # a resumed run appends to a new segment
    again.record(2, 3, np.array([5], np.uint16), commit, audit, 3)
    again.close()
    assert load(tmp_path, 2).last_index == 2
    with pytest.raises(Exception, match="commit for 2 shards"):
        load(tmp_path, 3)


def test_durable_shards_report_the_cpu_time_of_their_calls(tmp_path):
    """The sequencing layer runs begin_epoch as its two steps itself: it must measure their CPU
    time too (it once reported only evaluate's, and the capacity model took the rest for time
    spent off the CPU)."""
    accounts, transfers = adversarial_workload(5, 3_000, 8)
    result, hosts, _ = run_durable(accounts, transfers, 2, tmp_path)
    hosts.close()
    table = result.metrics.timeline.table()
    for s in range(2):
        busy, cpu = table[f"shard_busy_s_{s}"].sum(), table[f"shard_cpu_s_{s}"].sum()
        begin = (table[f"shard_commit_s_{s}"] + table[f"shard_open_s_{s}"]).sum()
        assert begin > table[f"shard_evaluate_s_{s}"].sum()  # begin_epoch is most of the work
        assert 0.5 * busy < cpu <= busy * 1.05 + 1e-3
