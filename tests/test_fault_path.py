"""Fault injection runs the production path: a hook that never fires changes no call.

A planned kill must interrupt the code that runs without faults (issue 10, item 5). Each
shard's state is wrapped in a recorder of every call made on it; the same run with no hook
and with a hook that only watches must make the same calls in the same order, and the
watching hook must see "committed" between the two steps of every begin_epoch.
"""

from __future__ import annotations

import numpy as np

from sim.durability import Durability
from sim.engine import Engine, split_epochs, table_hint
from sim.hosts import DurableLocalHosts
from sim.reference import run_reference
from tests.adversarial import adversarial_workload
from tests.test_durability import WINDOW, state_factory


class RecordingState:
    """A ShardState whose method calls are appended to a shared log as (method name, None)."""

    def __init__(self, state, log: list):
        self._state = state
        self._log = log

    def __getattr__(self, name):
        value = getattr(self._state, name)
        if not callable(value):
            return value

        def recorded(*args, **kwargs):
            self._log.append((name, None))
            return value(*args, **kwargs)
        return recorded


def run_recorded(accounts, transfers, shards, folder, watch: bool):
    """(result, per-shard logs); watch: every shard gets a hook that records its points."""
    make = state_factory(accounts, shards, table_hint(transfers, WINDOW, shards))
    logs = [[] for _ in range(shards)]

    def watcher(s):
        return lambda point, seq, method: logs[s].append((method, point))

    hosts = DurableLocalHosts(lambda s: RecordingState(make(s), logs[s]), shards,
                              Durability(str(folder), "off", 4))
    for s, durable in enumerate(hosts.shards):
        durable.fault = watcher(s) if watch else None
    try:
        result = Engine(accounts, hosts, WINDOW).run(split_epochs(transfers))
    finally:
        hosts.close()
    return result, logs


def test_a_hook_that_never_fires_changes_no_call(tmp_path):
    accounts, transfers = adversarial_workload(11, 80, 6)
    plain, plain_logs = run_recorded(accounts, transfers, 3, tmp_path / "plain", watch=False)
    watched, watched_logs = run_recorded(accounts, transfers, 3, tmp_path / "watched", watch=True)
    for plain_log, watched_log in zip(plain_logs, watched_logs):
        calls = [call for call in watched_log if call[1] is None]
        assert calls == plain_log
        assert ("settle", None) in plain_log
    np.testing.assert_array_equal(plain.status, watched.status)
    assert plain.balances.equals(watched.balances)
    expected = run_reference(accounts, transfers, window_epochs=WINDOW)
    np.testing.assert_array_equal(plain.status, expected.status)


def test_the_committed_point_lies_between_the_two_steps_of_every_begin_epoch(tmp_path):
    accounts, transfers = adversarial_workload(12, 60, 6)
    _, logs = run_recorded(accounts, transfers, 2, tmp_path, watch=True)
    for log in logs:
        begins = 0
        for i, call in enumerate(log):
            if call == ("begin_epoch", "committed"):
                assert log[i - 1] == ("settle", None)
                assert log[i + 1] == ("open_epoch", None)
                begins += 1
        assert begins == sum(1 for call in log if call == ("settle", None)) > 0
