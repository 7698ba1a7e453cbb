"""One shard's state and its two calls per epoch; hosted by a Ray actor or run in-process.

A shard owns the accounts, transfer ids and pending transfers whose keys hash to it
(sim.hashtable.shard_of_key). Per epoch the coordinator makes two calls (LEDGER_SPEC.md's
"fixed number of partitioned passes"):

1. ``begin_epoch``: commit the previous epoch's effects, expire holds due by this epoch's
   start, check idempotency of this epoch's ids, look up debit and credit accounts;
2. ``evaluate``: drop expired holds from account balances, check pending transfers
   (posts/voids) and funds, in row order.

The previous epoch's commit rides on the next ``begin_epoch`` call (``finish`` commits the
last), so an epoch costs two round trips. ``begin_epoch`` is exactly ``settle`` (the commit)
then ``open_epoch`` (the rest), both through ``begin_epoch_steps``, which sim.durability calls
with its fault point between them. Arguments and answers are the records and column layouts of sim.wire.

Memory per account: 8 (id) + 16 (posted debits and credits) + 1 (ledger slot and flag) + 4 / 8
(directory: accounts are grouped by hash bucket, sim.hashtable.account_layout) = 25.5 bytes;
pending balances live in a sparse table (24 bytes a slot, at most 2/3 full), a record for each
account holding a pending amount, so an account with none costs nothing there. A transfer id
in the idempotency window costs a [key, log position] slot of the id table, 16 bytes, sized
at ID_SLOTS_PER_LIVE_RECORD slots per windowed id (27.2 bytes, x 1.1 for the size hint's
margin); its fields wait on disk in the shard's id log (sim.id_log) for a retry to be
compared with. Pending transfers cost 3 x 96 bytes. Both tables are swept in place, a slice
per epoch, so long runs neither grow nor pause to rebuild.
"""

from __future__ import annotations

import time

from collections import deque
from dataclasses import dataclass

import numpy as np

from sim import shard_kernels as K
from sim.constants import ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, EXISTS, EXISTS_WITH_DIFFERENT_FIELDS
from sim.hashtable import account_bucket_count, account_layout, table_capacity
from sim.id_log import COPY_ROWS, IdLog
from sim.wire import (
    EXPIRED_SIDE_AMOUNT,
    EXPIRED_SIDE_KEY,
    FIELD_COUNT,
    ID_ROW_FIELDS,
    SIDE_GLOBAL_ROW,
    SIDE_PENDING_DELTA,
    SIDE_POSITION,
    BeginAnswer,
    CommitAnswer,
    CommitPayload,
    EvaluateAnswer,
    FinalState,
    Lookups,
    Overflow,
)

LEDGER_SLOTS_MAX = K.ACCOUNT_LEDGER_SLOT_MASK + 1  # a ledger slot is 7 bits of the account byte


# Record tables are swept (records past their window dropped) once their used slots pass
# TABLE_LOAD_MAX of capacity, and sized to TABLE_SLOTS_PER_LIVE_RECORD slots per live record:
# a sweep then leaves the load near 1/3 and the next one comes a window's worth of rows later.
TABLE_LOAD_MAX = 2 / 3
TABLE_SLOTS_PER_LIVE_RECORD = 3
TABLE_SLOTS_MIN = 1024
# The id table's slots are 16 bytes, so it runs fuller: 1.7 slots per windowed id (27.2 bytes),
# swept or grown past 3/4 full.
ID_TABLE_LOAD_MAX = 3 / 4
ID_SLOTS_PER_LIVE_RECORD = 1.7
# Once records leave the window, a table this many times larger than its window needs is
# rebuilt to fit (one pause; sweeps then cost in proportion to the window, not the burst).
ID_TABLE_SHRINK = 4
# Both record tables are swept in place each epoch (sweep_slots): a 1/SWEEP_PASS_EPOCHS slice,
# or, in a table much larger than its inserts need (sized for a burst, or by a generous hint),
# SWEEP_SLOTS_PER_INSERT slots per record inserted (at least SWEEP_SLOTS_MIN): an epoch's
# upkeep then costs in proportion to its rows, not to the table. Stale records left unswept
# then fill at most 1/SWEEP_SLOTS_PER_INSERT of the table.
SWEEP_PASS_EPOCHS = 32
SWEEP_SLOTS_PER_INSERT = 16
SWEEP_SLOTS_MIN = 1024


def records_capacity(live_records: int, per_record: float = TABLE_SLOTS_PER_LIVE_RECORD) -> int:
    return table_capacity(max(TABLE_SLOTS_MIN, per_record * int(live_records)))


def id_capacity(live_ids: int) -> int:
    return records_capacity(live_ids, ID_SLOTS_PER_LIVE_RECORD)


def sweep_slots(capacity: int, incoming: int) -> int:
    """Slots to sweep this epoch in a table of `capacity` that takes `incoming` records."""
    per_pass = -(-capacity // SWEEP_PASS_EPOCHS)
    return min(per_pass, max(SWEEP_SLOTS_MIN, SWEEP_SLOTS_PER_INSERT * incoming))


def needs_sweep(used: int, incoming: int, capacity: int, load_max: float = TABLE_LOAD_MAX) -> bool:
    return used + incoming > load_max * capacity


def held_capacity(records: int) -> int:
    """Slots of the held (pending balances) table for `records` accounts, at most 2/3 full."""
    return table_capacity(max(TABLE_SLOTS_MIN, 1.5 * int(records)))


@dataclass(frozen=True)
class TableHint:
    """Records one shard expects to hold at once, to size its tables up front (no growth in
    the hot loop); a wrong hint costs a rebuild, never a wrong answer."""

    live_ids: int = 0
    live_pending: int = 0


def table_hint_per_shard(rows_total: int, rows_per_epoch_max: int, pending_rows: int,
                         window_epochs: int, shard_count: int) -> TableHint:
    """Ids: the window's rows (or all rows); pending: every PENDING row; a shard's share + 10%."""
    live = min(rows_total, (window_epochs + 1) * rows_per_epoch_max)
    return TableHint(live_ids=int(live / shard_count * 1.1) + 16,
                     live_pending=int(pending_rows / shard_count * 1.1) + 16)


class ShardState:
    """Arrays and kernels of one shard. No per-account Python objects."""

    def __init__(self, shard_index: int, shard_count: int, account_ids: np.ndarray,
                 account_ledgers: np.ndarray, account_flags: np.ndarray,
                 ledger_values: np.ndarray, window_epochs: int, hint: TableHint = TableHint()):
        assert 0 <= shard_index < shard_count
        assert len(account_ids) < 2**31, "a shard holds at most 2**31-1 accounts (int32 positions)"
        assert len(ledger_values) <= LEDGER_SLOTS_MAX, "too many distinct ledgers"
        self.shard_index = shard_index
        self.window_epochs = int(window_epochs)
        keys = np.ascontiguousarray(account_ids).view(np.int64)
        order, self.directory = account_layout(keys, account_bucket_count(len(keys)))
        self.keys = keys[order]
        flagged = (np.asarray(account_flags)[order] & ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) != 0
        self.account_byte = np.searchsorted(ledger_values, np.asarray(account_ledgers)[order]).astype(np.uint8)
        self.account_byte[flagged] |= K.ACCOUNT_BYTE_FLAGGED
        del order, flagged
        self.posted = np.zeros((len(self.keys), 2), np.int64)
        self.posted.fill(0)  # touch the pages now, not in the hot loop
        # pending balances: an account per side of each live pending transfer at most
        self.held = np.zeros((held_capacity(2 * hint.live_pending), K.HELD_TABLE_COLUMNS), np.int64)
        self.held_used = 0
        self.sums = np.zeros((len(ledger_values), 4, 2), np.int64)
        self.id_table = np.zeros((id_capacity(hint.live_ids), K.ID_TABLE_COLUMNS), np.int64)
        self.id_table.fill(0)  # pre-touched: no page faults in the hot loop
        self.id_used = 0
        self.id_sweep_cursor = 0
        # Every id row checked gets the next position of the id log. (epoch, first position,
        # ids recorded) of each epoch that logged rows, oldest first, while that epoch is within
        # the window: a record is within the window when its position is at or after the first
        # one's (the floor, id_floor), and the ids in the window are the sum of the recorded
        # counts (a record is only ever replaced once out of the window).
        self.id_log = IdLog(2 * hint.live_ids)
        self.id_epochs: deque[tuple[int, int, int]] = deque()
        self.windowed_ids = 0
        self.id_peak = (0, len(self.id_table))  # (most ids in the window, table slots then)
        self.pending_sweep_cursor = 0
        self.pending_table = np.zeros((records_capacity(hint.live_pending), K.PENDING_TABLE_COLUMNS), np.int64)
        self.pending_table.fill(0)
        self.pending_used = 0
        self.heap_time = np.zeros(hint.live_pending + TABLE_SLOTS_MIN, np.int64)
        self.heap_key = np.zeros(hint.live_pending + TABLE_SLOTS_MIN, np.int64)
        self.heap_size = 0
        self.epoch = None
        self.ahead = None  # (epoch, debit keys, credit keys, answers) of lookup_ahead

    def nbytes_per_account(self) -> float:
        """Bytes of the dense per-account arrays (the sparse held table apart), measured."""
        n = max(len(self.keys), 1)
        account_arrays = (self.keys, self.account_byte, self.directory, self.posted)
        return sum(a.nbytes for a in account_arrays) / n

    def _lookup(self, keys: np.ndarray) -> tuple:
        return K.lookup_accounts(self.directory, self.keys, self.account_byte, keys)

    # --- between epochs ----------------------------------------------------------------------
    def lookup_ahead(self, epoch: int, debit_keys: np.ndarray, credit_keys: np.ndarray) -> tuple:
        """Look up the next epoch's accounts now (they never change during a run) and keep
        the answers for its begin_epoch; returns (seconds, CPU seconds) it took."""
        started, cpu = time.perf_counter(), time.thread_time()
        debit, credit = self._lookup(debit_keys), self._lookup(credit_keys)
        self.ahead = (int(epoch), np.array(debit_keys), np.array(credit_keys), debit, credit)
        return time.perf_counter() - started, time.thread_time() - cpu

    def _lookups(self, epoch: int, debit_keys: np.ndarray, credit_keys: np.ndarray) -> tuple:
        """(debit position, info), (credit position, info), and whether lookup_ahead had them."""
        ahead, self.ahead = self.ahead, None
        if (ahead is not None and ahead[0] == int(epoch) and np.array_equal(ahead[1], debit_keys)
                and np.array_equal(ahead[2], credit_keys)):
            return ahead[3], ahead[4], True
        debit, credit = self._lookup(debit_keys), self._lookup(credit_keys)
        return debit, credit, False

    # --- call 1 ---------------------------------------------------------------------------
    def begin_epoch(self, commit: CommitPayload | None, epoch: int, start_us: int,
                    id_rows: np.ndarray, debit_keys: np.ndarray,
                    credit_keys: np.ndarray) -> BeginAnswer:
        """settle(commit) then open_epoch(...) (see begin_epoch_steps)."""
        return begin_epoch_steps(self, (commit, epoch, start_us, id_rows, debit_keys, credit_keys))

    def settle(self, commit: CommitPayload | None) -> CommitAnswer | None:
        """Step 1 of begin_epoch: the previous epoch's commit (None when none rides along)."""
        return None if commit is None else self.commit(commit)

    def open_epoch(self, settled: CommitAnswer | None, epoch: int, start_us: int,
                   id_rows: np.ndarray, debit_keys: np.ndarray,
                   credit_keys: np.ndarray) -> BeginAnswer:
        """Step 2 of begin_epoch, after settle() answered `settled`: expiry, ids, look-ups.
        Nothing is done after an overflowing commit (the run ends there)."""
        if settled is not None and settled.overflow is not None:
            return BeginAnswer(settled, None)
        self.epoch = np.int64(epoch)
        self._advance_id_floor()
        self._sweep_id_table(len(id_rows))
        self._reserve_id_table(len(id_rows))
        expired, self.heap_size = K.expire_pending(
            self.pending_table, self.heap_time, self.heap_key, self.heap_size, np.int64(start_us), self.epoch)
        id_status = self._check_ids(id_rows)
        (debit_position, debit_info), (credit_position, credit_info), ahead = self._lookups(
            epoch, debit_keys, credit_keys)
        return BeginAnswer(settled, Lookups(id_status, debit_position, debit_info, credit_position,
                                            credit_info, expired), looked_ahead=ahead)

    def _check_ids(self, id_rows: np.ndarray) -> np.ndarray:
        """Statuses of the idempotency checks; logs the rows' fields at the next positions."""
        # logged first: a failed write leaves no record pointing at a row never written
        base = self.id_log.append(id_rows[:, ID_ROW_FIELDS:ID_ROW_FIELDS + FIELD_COUNT])
        status, recorded, added, rows, positions = K.check_ids(
            self.id_table, self.pending_table, id_rows, np.int64(base), np.int64(self.id_floor))
        if len(id_rows):
            self.id_epochs.append((int(self.epoch), base, int(recorded)))
        self.id_used += added
        self.windowed_ids += int(recorded)
        if self.windowed_ids > self.id_peak[0]:
            self.id_peak = (self.windowed_ids, len(self.id_table))
        if len(rows):  # retries of ids logged in earlier epochs: compare with the log
            logged = self.id_log.read(positions)
            same = (logged == id_rows[rows, ID_ROW_FIELDS:ID_ROW_FIELDS + FIELD_COUNT]).all(axis=1)
            status[rows] = np.where(same, EXISTS, EXISTS_WITH_DIFFERENT_FIELDS)
        return status

    @property
    def id_floor(self) -> int:
        """The first log position within the window: the log forgets the rows before it. It
        moves past 0 once the first epoch that logged ids has left the window."""
        return self.id_log.start

    def _advance_id_floor(self) -> None:
        """Move the floor past the epochs that left the window."""
        epochs = self.id_epochs
        while epochs and not _within_window(int(self.epoch), epochs[0][0], self.window_epochs):
            self.windowed_ids -= epochs.popleft()[2]
        self.id_log.forget_before(epochs[0][1] if epochs else self.id_log.end)

    # --- call 2 ---------------------------------------------------------------------------
    def evaluate(self, expired_debit: np.ndarray, expired_credit: np.ndarray,
                 pending_rows: np.ndarray, funds_rows: np.ndarray) -> EvaluateAnswer:
        """expired_*: sim.wire EXPIRED_SIDE_* rows; pending_rows: CHECK_* rows; funds_rows:
        FUNDS_* rows."""
        started, cpu = time.perf_counter(), time.thread_time()
        self._reserve_held(len(expired_debit) + len(expired_credit))
        for rows, side in ((expired_debit, K.SIDE_DEBIT), (expired_credit, K.SIDE_CREDIT)):
            self.held_used += K.expire_accounts(
                self.held, self.account_byte, self.sums, self.directory, self.keys,
                rows[:, EXPIRED_SIDE_KEY], rows[:, EXPIRED_SIDE_AMOUNT], side)
        pending_status, pending_amount = K.check_pending(
            self.pending_table, pending_rows, self.epoch, self.window_epochs)
        funds_status = K.check_funds(self.posted, self.held, funds_rows)
        return EvaluateAnswer(pending_status, pending_amount, funds_status,
                              time.perf_counter() - started, time.thread_time() - cpu)

    # --- commit ---------------------------------------------------------------------------
    def commit(self, commit: CommitPayload) -> CommitAnswer:
        """Apply an epoch's committed effects; report overflow, overdraft and ledger sums.

        commit.epoch and every epoch passed here are int64 bit patterns of the uint64 epoch.
        """
        overflow = None
        overdrawn = None
        self._reserve_held(sum(int(np.count_nonzero(rows[:, SIDE_PENDING_DELTA]))
                               for rows in (commit.debit_rows, commit.credit_rows)))
        for side, rows, code in (("debit", commit.debit_rows, K.SIDE_DEBIT),
                                 ("credit", commit.credit_rows, K.SIDE_CREDIT)):
            at, column, overdrawn_at, held_added = K.apply_side(
                self.posted, self.held, self.account_byte, self.sums, rows, code, side == "debit")
            self.held_used += held_added
            if at >= 0 and (overflow is None or rows[at, SIDE_GLOBAL_ROW] < overflow.row):
                overflow = Overflow(int(rows[at, SIDE_GLOBAL_ROW]), side, int(column),
                                    int(self.keys[rows[at, SIDE_POSITION]]))
            if side == "debit" and overdrawn_at >= 0:
                overdrawn = int(self.keys[overdrawn_at])
        if overflow is not None:
            return CommitAnswer(overflow, None, None)
        self._sweep_pending_table(np.int64(commit.epoch), len(commit.pending_rows))
        self._reserve_pending_table(len(commit.pending_rows), np.int64(commit.epoch))
        K.resolve_pending(self.pending_table, commit.resolve_rows, np.int64(commit.epoch))
        added, self.heap_size = K.create_pending(
            self.pending_table, self.heap_time, self.heap_key, self.heap_size, commit.pending_rows)
        self.pending_used += added
        K.normalise_sums(self.sums)
        return CommitAnswer(None, self.sums.copy(), overdrawn)

    def finish(self, commit: CommitPayload | None) -> CommitAnswer:
        if commit is None:
            return CommitAnswer(None, self.sums.copy(), None)
        return self.commit(commit)

    def balances(self) -> np.ndarray:
        """[accounts, 4] int64 in the spec's order (sim.shard_kernels DEBITS_PENDING ...), in the
        shard's account order (self.keys): built on demand, never kept."""
        out = np.empty((len(self.keys), 4), np.int64)
        pending = K.held_balances(self.held, len(self.keys))
        out[:, K.DEBITS_PENDING], out[:, K.CREDITS_PENDING] = pending[:, 0], pending[:, 1]
        out[:, K.DEBITS_POSTED] = self.posted[:, K.POSTED_DEBITS]
        out[:, K.CREDITS_POSTED] = self.posted[:, K.POSTED_CREDITS]
        return out

    def id_peak_bytes(self) -> tuple[int, int]:
        """(the id table's bytes, ids in the window) when the window held the most ids."""
        ids, slots = self.id_peak
        return slots * K.ID_TABLE_COLUMNS * 8, ids

    def close(self) -> None:
        """Give back the id log's file now (garbage collection would, later)."""
        self.id_log.close()

    def final_state(self) -> FinalState:
        return FinalState(self.keys, self.balances(), self.sums.copy(), self.nbytes_per_account(),
                          *self.id_peak_bytes())

    # --- snapshots (sim.durability) -------------------------------------------------------
    def snapshot(self, detached: bool = False) -> list[tuple[str, object]]:
        """The state that calls change, as named arrays and ints: balances, sums, the records
        of both tables (occupied slots only, with their slot numbers, so the layout comes back
        exactly), the expiry heap, cursors and counters. Accounts, their index and flags come
        from the constructor. detached: every array is a copy (written while calls go on)."""
        copy = np.copy if detached else (lambda a: a)
        id_slots, id_rows = K.occupied(self.id_table, self.id_used)
        # the fields of the ids within the window, from the log (the others are never read)
        live = np.flatnonzero(id_rows[:, K.ID_POSITION] >= self.id_floor)
        id_fields = self.id_log.read(id_rows[live, K.ID_POSITION])
        pending_slots, pending_rows = K.occupied(self.pending_table, self.pending_used)
        held_slots, held_rows = K.occupied(self.held, self.held_used)
        return [
            ("epoch", None if self.epoch is None else int(self.epoch)),
            ("posted", copy(self.posted)), ("sums", copy(self.sums)),
            ("held_capacity", len(self.held)), ("held_slots", held_slots), ("held_rows", held_rows),
            ("held_used", self.held_used),
            ("id_capacity", len(self.id_table)), ("id_slots", id_slots), ("id_rows", id_rows),
            ("id_used", self.id_used), ("id_sweep_cursor", self.id_sweep_cursor),
            ("id_live", live), ("id_fields", id_fields), ("id_log_start", self.id_log.start),
            ("id_log_end", self.id_log.end),
            ("id_epochs", np.array(self.id_epochs, np.int64).reshape(-1, 3)),
            ("id_peak_ids", self.id_peak[0]), ("id_peak_slots", self.id_peak[1]),
            ("pending_capacity", len(self.pending_table)), ("pending_slots", pending_slots),
            ("pending_rows", pending_rows), ("pending_used", self.pending_used),
            ("pending_sweep_cursor", self.pending_sweep_cursor),
            ("heap_capacity", len(self.heap_time)), ("heap_size", self.heap_size),
            ("heap_time", copy(self.heap_time[:self.heap_size])),
            ("heap_key", copy(self.heap_key[:self.heap_size])),
        ]

    def restore(self, saved: dict) -> None:
        """Back to a snapshot() of a shard built from the same constructor arguments."""
        if ("posted" not in saved or "id_log_end" not in saved or saved["posted"].shape != self.posted.shape
                or saved["sums"].shape != self.sums.shape):
            raise ValueError(f"shard {self.shard_index}: the snapshot is of another shard layout"
                             " (another account set, or written by a version before compact accounts"
                             " and the id log)")
        self.epoch = None if saved["epoch"] is None else np.int64(saved["epoch"])
        self.ahead = None
        self.id_epochs = deque((int(e), int(p), int(r)) for e, p, r in saved["id_epochs"])
        self.windowed_ids = sum(r for _, _, r in self.id_epochs)
        self.id_peak = (int(saved["id_peak_ids"]), int(saved["id_peak_slots"]))
        self._restore_id_log(saved["id_rows"][saved["id_live"], K.ID_POSITION], saved["id_fields"],
                             int(saved["id_log_start"]), int(saved["id_log_end"]))
        self.posted[:] = saved["posted"]
        self.held = np.zeros((saved["held_capacity"], K.HELD_TABLE_COLUMNS), np.int64)
        self.held[saved["held_slots"]] = saved["held_rows"]
        self.held_used = saved["held_used"]
        self.sums[:] = saved["sums"]
        self.id_table = np.zeros((saved["id_capacity"], K.ID_TABLE_COLUMNS), np.int64)
        self.id_table[saved["id_slots"]] = saved["id_rows"]
        self.id_used = saved["id_used"]
        self.id_sweep_cursor = saved["id_sweep_cursor"]
        self.pending_table = np.zeros((saved["pending_capacity"], K.PENDING_TABLE_COLUMNS), np.int64)
        self.pending_table[saved["pending_slots"]] = saved["pending_rows"]
        self.pending_used = saved["pending_used"]
        self.pending_sweep_cursor = saved["pending_sweep_cursor"]
        self.heap_time = np.zeros(saved["heap_capacity"], np.int64)
        self.heap_key = np.zeros(saved["heap_capacity"], np.int64)
        self.heap_size = saved["heap_size"]
        self.heap_time[:self.heap_size] = saved["heap_time"]
        self.heap_key[:self.heap_size] = saved["heap_key"]

    def _restore_id_log(self, positions: np.ndarray, fields: np.ndarray, floor: int, end: int) -> None:
        """A fresh id log over [floor, end) holding `fields` at `positions` (the windowed ids)."""
        self.id_log.close()
        self.id_log = IdLog(2 * max(end - floor, 1))
        self.id_log.start = self.id_log.end = floor
        order = np.argsort(positions, kind="stable")
        positions, fields = positions[order], fields[order]
        for first in range(floor, end, COPY_ROWS):  # dense chunks: rows no record points at are zeros
            stop = min(first + COPY_ROWS, end)
            chunk = np.zeros((stop - first, FIELD_COUNT), np.int64)
            at = slice(*np.searchsorted(positions, [first, stop]))
            chunk[positions[at] - first] = fields[at]
            self.id_log.write_at(first, chunk)
        self.id_log.end = end

    # --- table upkeep ---------------------------------------------------------------------
    def _reserve_held(self, incoming: int) -> None:
        """Room in the held table for `incoming` more accounts (a rebuild, rarely)."""
        if needs_sweep(self.held_used, incoming, len(self.held)):
            self.held = K.rehash(self.held, held_capacity(2 * (self.held_used + incoming)))

    def _sweep_id_table(self, incoming: int) -> None:
        """Drop a slice of stale ids in place each epoch (a pause-free alternative to rebuilds),
        once any record can be stale; `incoming` ids arrive this epoch (see sweep_slots)."""
        if self.id_floor == 0:
            return
        count = sweep_slots(len(self.id_table), incoming)
        self.id_sweep_cursor, removed = K.sweep_step(
            self.id_table, self.id_sweep_cursor, count, *K.id_window_arguments(self.id_floor),
            *K.ID_WINDOW_COLUMNS)
        self.id_used -= removed

    def _sweep_pending_table(self, epoch: np.int64, incoming: int) -> None:
        """The same for pending transfers resolved longer than the window ago."""
        count = sweep_slots(len(self.pending_table), incoming)
        self.pending_sweep_cursor, removed = K.sweep_step(
            self.pending_table, self.pending_sweep_cursor, count, epoch, self.window_epochs,
            *K.PENDING_WINDOW_COLUMNS)
        self.pending_used -= removed

    def _reserve_id_table(self, incoming: int) -> None:
        """Rebuild the id table (records out of the window dropped) when it is too full for
        `incoming` more, or, once records have left the window, ID_TABLE_SHRINK times larger
        than the window needs (a burst such as the funding epochs left it: sweeps would cost
        every later epoch a slice of the burst's size). The ids in the window are counted, so
        the rebuilt size is known up front: what they need, or the table's own if larger and
        not oversized."""
        fitted = id_capacity(self.windowed_ids + incoming)
        oversized = self.id_floor > 0 and len(self.id_table) > ID_TABLE_SHRINK * fitted
        if not oversized and not needs_sweep(self.id_used, incoming, len(self.id_table), ID_TABLE_LOAD_MAX):
            return
        capacity = fitted if oversized else max(fitted, len(self.id_table))
        self.id_table, self.id_used = K.rebuild_table(
            self.id_table, capacity, *K.id_window_arguments(self.id_floor), *K.ID_WINDOW_COLUMNS)

    def _reserve_pending_table(self, incoming: int, epoch: np.int64) -> None:
        if self.heap_size + incoming > len(self.heap_time):
            if self.heap_size > 2 * self.pending_used + TABLE_SLOTS_MIN:
                self.heap_size = K.compact_heap(self.pending_table, self.heap_time, self.heap_key, self.heap_size)
            capacity = 2 * (self.heap_size + incoming) + TABLE_SLOTS_MIN
            self.heap_time = np.resize(self.heap_time, capacity)
            self.heap_key = np.resize(self.heap_key, capacity)
        if not needs_sweep(self.pending_used, incoming, len(self.pending_table)):
            return
        self.pending_table, self.pending_used = _swept(self.pending_table, K.PENDING_WINDOW_COLUMNS,
                                                       incoming, epoch, self.window_epochs)


def _within_window(epoch_now: int, epoch_then: int, window: int) -> bool:
    """sim.tables.within_window on Python ints: the uint64 difference is at most window."""
    return (epoch_now - epoch_then) % (1 << 64) <= window


def _swept(table: np.ndarray, window_columns: tuple, incoming: int, epoch: np.int64, window: int) -> tuple:
    """The table without records past their window, grown if the live ones need the room."""
    swept, live = K.rebuild_table(table, len(table), epoch, window, *window_columns)
    capacity = records_capacity(live + incoming)
    if capacity > len(swept):
        swept, live = K.rebuild_table(swept, capacity, epoch, window, *window_columns)
    return swept, live


def begin_epoch_steps(state, args: tuple, between=None) -> BeginAnswer:
    """begin_epoch's two steps on `state`, state.settle(commit) then state.open_epoch(...): the
    only composition of the two, and the one place their wall and CPU time are measured.
    between(): called after settle (the sequencing layer's "committed" fault point); its time
    is not the shard's."""
    commit, *rest = args
    started, cpu = time.perf_counter(), time.thread_time()
    settled = state.settle(commit)
    settle_s, settle_cpu = time.perf_counter() - started, time.thread_time() - cpu
    if between is not None:
        between()
    opened, cpu = time.perf_counter(), time.thread_time()
    answer = state.open_epoch(settled, *rest)
    answer.busy_s = settle_s + (time.perf_counter() - opened)
    answer.settle_s = settle_s
    answer.cpu_s = settle_cpu + (time.thread_time() - cpu)
    return answer
