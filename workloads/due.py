"""Rows the generator has promised for later: captures, voids, refunds, settles, deposits.

A `DueRows` holds fully built transfer rows (ids included) with the sim time they fall due,
as numpy columns: no per-row objects. Each tick pops the rows due before the tick's end and
emits them with their due time. Rows of one linked chain are stored adjacent with one due
time, and popping keeps the stored order, so chains stay adjacent. `aux` carries one int64 per
row for the model's books (the merchant number of a capture, else -1).
"""

from __future__ import annotations

import numpy as np

from sim.columns import TRANSFER_DTYPES

ROW_COLUMNS = tuple(n for n in TRANSFER_DTYPES if n != "epoch")
BLOCK_COLUMNS = ROW_COLUMNS + ("aux",)
_BLOCK_DTYPES = dict(TRANSFER_DTYPES, aux=np.int64)
_DEFAULTS = {"flags": 0, "pending_id": 0, "timeout_s": 0, "aux": -1}


def make_block(**values) -> dict:
    """Rows of one kind as full columns of the spec's dtypes (scalars broadcast, read-only).

    Keys: every transfer column but epoch; `flags`, `pending_id`, `timeout_s`, `aux` optional.
    """
    count = len(values["id"])
    block = {}
    for name in BLOCK_COLUMNS:
        dtype = _BLOCK_DTYPES[name]
        value = values.get(name, _DEFAULTS.get(name))
        if type(value) is np.ndarray and value.dtype == dtype and value.shape == (count,):
            block[name] = value  # the common case, without numpy's argument handling
            continue
        column = np.asarray(value, dtype)
        if column.shape != (count,):
            column = _constant(column, count) if column.ndim == 0 else np.broadcast_to(
                column, (count,))
        block[name] = column
    return block


def _constant(scalar: np.ndarray, count: int) -> np.ndarray:
    """`count` copies of a 0-d array's value as a read-only zero-stride view (what
    np.broadcast_to gives, in a fraction of its time)."""
    column = np.ndarray((count,), scalar.dtype, buffer=scalar, strides=(0,))
    column.flags.writeable = False
    return column


def concat_blocks(blocks: list[dict]) -> dict:
    return {n: np.concatenate([b[n] for b in blocks]) for n in BLOCK_COLUMNS}


def block_len(block: dict) -> int:
    return len(block["id"])


class DueRows:
    """Promised rows in insertion order; `pop_due` takes those due before a time.

    Added blocks wait in a list and are joined once per pop, so a tick copies the queue once.
    """

    def __init__(self):
        empty = make_block(**{n: np.zeros(0, np.int64) for n in
                              ("id", "sim_time_us", "debit_account", "credit_account",
                               "amount", "ledger", "code")})
        self.columns = {n: np.array(c) for n, c in empty.items()}
        self.added: list[dict] = []

    def __len__(self) -> int:
        return len(self.columns["id"]) + sum(block_len(b) for b in self.added)

    def add(self, block: dict) -> None:
        """Add rows; `sim_time_us` is their due time."""
        if block_len(block):
            self.added.append(block)

    def pop_due(self, before_us: int) -> dict:
        """Remove and return the rows due before `before_us`, in insertion order."""
        if self.added:
            self.columns = concat_blocks([self.columns] + self.added)
            self.added = []
        due = self.columns["sim_time_us"] < before_us
        if not due.any():
            return {n: c[:0] for n, c in self.columns.items()}
        popped = {n: c[due] for n, c in self.columns.items()}
        keep = np.flatnonzero(~due)  # most rows fall due at once: the few kept, by index
        self.columns = {n: c[keep] for n, c in self.columns.items()}
        return popped
