"""Bytes of the shards' id tables per transfer id in the idempotency window, measured.

A run whose window fills: 300 epochs of 20,000 distinct ids, a window of 100 epochs, 2 shards
in one process. Prints the engine's own measurement (summary.json's
engine_bytes_per_windowed_id: the id tables' bytes over the most ids the window held).

    python -m benchmarks.id_window_bytes
"""

from __future__ import annotations

import numpy as np

from sim.columns import Accounts, Transfers
from sim.engine import Engine, local_hosts, split_epochs, table_hint

ACCOUNTS, EPOCHS, ROWS_PER_EPOCH, WINDOW, SHARDS = 100_000, 300, 20_000, 100, 2


def main() -> None:
    rng = np.random.default_rng(7)
    accounts = Accounts.from_columns(id=np.arange(1, ACCOUNTS + 1), ledger=np.ones(ACCOUNTS),
                                     flags=np.zeros(ACCOUNTS))
    n = EPOCHS * ROWS_PER_EPOCH
    debit = rng.integers(1, ACCOUNTS + 1, n)
    transfers = Transfers.from_columns(
        id=rng.permutation(np.arange(1, 10 * n))[:n], epoch=np.repeat(np.arange(EPOCHS), ROWS_PER_EPOCH),
        sim_time_us=np.arange(n) * 1000, debit_account=debit, credit_account=debit % ACCOUNTS + 1,
        amount=rng.integers(1, 100, n), ledger=np.ones(n), code=np.ones(n), flags=np.zeros(n),
        pending_id=np.zeros(n), timeout_s=np.zeros(n))
    hosts = local_hosts(accounts, SHARDS, WINDOW, table_hint(transfers, WINDOW, SHARDS))
    result = Engine(accounts, hosts, WINDOW).run(split_epochs(transfers))
    held = sum(s.id_peak_bytes()[1] for s in hosts.states)
    print(f"{n:,} rows, a window of {WINDOW} epochs of {ROWS_PER_EPOCH:,} rows, {SHARDS} shards:"
          f" {held:,} ids in the window at most, {result.metrics.bytes_per_windowed_id:.1f} bytes"
          " of id table per windowed id")


if __name__ == "__main__":
    main()
