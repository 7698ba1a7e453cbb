"""Compile (or load from numba's cache) every kernel before a timed run starts.

A tiny workload that takes every path of the engine (plain, pending, post, void, expiry,
chains, duplicates) runs through the in-process engine. Shard actors call this in their
constructor so that start-up, not the first epoch, pays for compilation.
"""

from __future__ import annotations

import numpy as np

from sim.columns import Accounts, Transfers
from sim.constants import FLAG_LINKED, FLAG_PENDING, FLAG_POST_PENDING_TRANSFER, FLAG_VOID_PENDING_TRANSFER

# (id, epoch, debit, credit, amount, flags, pending_id, timeout_s)
_ROWS = [
    (1, 1, 10, 20, 100, 0, 0, 0),
    (2, 1, 10, 30, 100, 0, 0, 0),
    (3, 2, 20, 30, 40, FLAG_PENDING, 0, 1),
    (4, 2, 20, 30, 10, FLAG_PENDING, 0, 0),
    (5, 2, 30, 20, 5, FLAG_LINKED, 0, 0),
    (6, 2, 20, 30, 5, 0, 0, 0),
    (7, 3, 20, 30, 8, FLAG_POST_PENDING_TRANSFER, 4, 0),
    (8, 3, 20, 30, 0, FLAG_VOID_PENDING_TRANSFER, 4, 0),
    (1, 3, 10, 20, 100, 0, 0, 0),
    (9, 9, 20, 30, 1, 0, 0, 0),
]


def warm_up(shard_count: int = 2, wrap_hosts=None) -> None:
    """wrap_hosts: turns the in-process hosts into ones that pass arguments the way the real
    transport does (e.g. through shared-memory arenas, whose views numba types as read-only),
    so the signatures compiled here are the ones the run will call."""
    # late imports: the engine imports this module's neighbours
    from sim.engine import Engine, local_hosts, split_epochs, table_hint

    accounts = Accounts.from_columns(id=[10, 20, 30], ledger=[1, 1, 1], flags=[0, 1, 1])
    rows = np.array(_ROWS, dtype=np.int64)
    n = len(rows)
    transfers = Transfers.from_columns(
        id=rows[:, 0], epoch=rows[:, 1], sim_time_us=rows[:, 1] * 10_000_000,
        debit_account=rows[:, 2], credit_account=rows[:, 3], amount=rows[:, 4],
        ledger=np.ones(n), code=np.ones(n), flags=rows[:, 5], pending_id=rows[:, 6],
        timeout_s=rows[:, 7])
    hosts = local_hosts(accounts, shard_count, 3, table_hint(transfers, 3, shard_count))
    Engine(accounts, hosts if wrap_hosts is None else wrap_hosts(hosts), 3).run(split_epochs(transfers))
    _warm_table_upkeep()


def _warm_table_upkeep() -> None:
    """The kernels a short run never reaches: table sweeps and heap compaction."""
    from sim import shard_kernels as K

    epoch, window = np.int64(5), 3
    ids = np.zeros((16, K.ID_TABLE_COLUMNS), np.int64)
    K.rebuild_table(ids, 32, *K.id_window_arguments(7), *K.ID_WINDOW_COLUMNS)
    K.sweep_step(ids, 0, 8, *K.id_window_arguments(7), *K.ID_WINDOW_COLUMNS)
    pending = np.zeros((16, K.PENDING_TABLE_COLUMNS), np.int64)
    K.rebuild_table(pending, 32, epoch, window, *K.PENDING_WINDOW_COLUMNS)
    K.sweep_step(pending, 0, 8, epoch, window, *K.PENDING_WINDOW_COLUMNS)
    K.compact_heap(pending, np.zeros(4, np.int64), np.zeros(4, np.int64), 0)
