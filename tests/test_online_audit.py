"""The online audit: a time series per epoch boundary, and a broken invariant stops the run."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow.parquet as pq
import pytest

from xpay.cli import main
from sim.engine import Engine, table_hint, local_hosts, split_epochs
from sim.errors import InvariantViolation
from tests.adversarial import adversarial_workload


def test_audit_series_is_written_per_boundary_and_ledger(tmp_path):
    args = ["run", "--users", "2000", "--epochs", "3", "--in-process",
            "--quiet", "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    audit = pq.read_table(tmp_path / "audit.parquet").to_pylist()
    results = pq.read_table(tmp_path / "results.parquet")
    epochs = len(np.unique(results["epoch"].to_numpy()))
    ledgers = {row["ledger"] for row in audit}
    assert len(audit) == epochs * len(ledgers)
    assert all(row["double_entry"] and row["overdraft"] for row in audit)
    assert all(row["debits_posted"] == row["credits_posted"] for row in audit)


class LosesCredits:
    """A shard host whose commits silently drop the credit side: a bug the audit must catch."""

    def __init__(self, hosts):
        self.hosts = hosts
        self.shard_count = hosts.shard_count
        self.concurrent = hosts.concurrent

    def submit(self, method, args_per_shard):
        if method in ("begin_epoch", "finish"):
            args_per_shard = [self._strip(args) for args in args_per_shard]
        return self.hosts.submit(method, args_per_shard)

    @staticmethod
    def _strip(args):
        commit = args[0]
        if commit is None:
            return args
        return (dataclasses.replace(commit, credit_rows=commit.credit_rows[:0]),) + tuple(args[1:])

    def collect(self, handle):
        return self.hosts.collect(handle)

    def close(self):
        self.hosts.close()


def test_a_broken_invariant_stops_the_run_naming_epoch_and_ledger():
    accounts, transfers = adversarial_workload(4, 60, 6)
    hosts = local_hosts(accounts, 2, 3, table_hint(transfers, 3, 2))
    engine = Engine(accounts, LosesCredits(hosts), 3, stop_on_violation=True)
    with pytest.raises(InvariantViolation, match=r"epoch \d+: double entry broken on ledger 1"):
        engine.run(split_epochs(transfers))


def test_without_stopping_the_violations_are_recorded():
    accounts, transfers = adversarial_workload(4, 60, 6)
    hosts = local_hosts(accounts, 2, 3, table_hint(transfers, 3, 2))
    result = Engine(accounts, LosesCredits(hosts), 3).run(split_epochs(transfers))
    kinds = {v["invariant"] for v in result.metrics.invariant_violations}
    assert "double_entry" in kinds
    assert any(not row["double_entry"] for row in result.metrics.audit)
