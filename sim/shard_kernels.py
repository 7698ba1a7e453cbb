"""Numba kernels over one shard's state: idempotency, pending transfers, funds, commit, expiry.

Pure functions of arrays (no Ray, no Python objects); sim/shard_state.py owns the arrays and
calls these. All keys and epochs are int64 bit patterns of the spec's uint64 values; epoch
differences are compared as unsigned, so any uint64 epoch numbering works.

Tables (row-major int64, column 0 the key, 0 = empty slot):
- id table, one record per transfer id seen within the idempotency window (ID_* columns),
  its fields in the shard's id log (sim.id_log);
- pending table, one record per committed PENDING transfer still pending or recently
  resolved (P_* columns), plus a binary heap (expire_at_us, id) for expiry.
"""

from __future__ import annotations

import numba
import numpy as np

from sim.constants import (
    EXCEEDS_CREDITS,
    EXCEEDS_PENDING_AMOUNT,
    EXISTS,
    EXISTS_WITH_DIFFERENT_FIELDS,
    INT64_MAX,
    MICROSECONDS_PER_SECOND,
    OK,
    PENDING_STATE_EXPIRED,
    PENDING_STATE_PENDING,
    PENDING_STATE_POSTED,
    PENDING_STATE_VOIDED,
    PENDING_TRANSFER_ALREADY_POSTED,
    PENDING_TRANSFER_ALREADY_VOIDED,
    PENDING_TRANSFER_EXPIRED,
    PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS,
    PENDING_TRANSFER_NOT_FOUND,
)
from sim.hashtable import (
    PREFETCH_DISTANCE,
    account_position,
    find_slot,
    home_slot,
    prefetch_row,
)
from sim.tables import (
    copy_row,
    delete_slot,
    heap_build,
    heap_move,
    heap_pop,
    heap_push,
    same_columns,
    within_window,
)
from sim.wire import (
    ACCOUNT_INFO_FLAGGED,
    CHECK_AMOUNT,
    CHECK_CREDIT,
    CHECK_DEBIT,
    CHECK_IS_POST,
    CHECK_LEDGER,
    CHECK_PENDING_ID,
    CREATION_FIELDS,
    CREATION_KEY,
    CREATION_SIM_TIME_US,
    EXPIRED_AMOUNT,
    EXPIRED_COLUMNS,
    EXPIRED_CREDIT,
    EXPIRED_DEBIT,
    FIELD_AMOUNT,
    FIELD_COUNT,
    FIELD_CREDIT,
    FIELD_DEBIT,
    FIELD_LEDGER_CODE_FLAGS,
    FIELD_TIMEOUT,
    FUNDS_AMOUNT,
    FUNDS_POSITION,
    ID_ROW_FIELDS,
    ID_ROW_KEY,
    LEDGER_MASK,
    RESOLUTION_KEY,
    RESOLUTION_STATE,
    SIDE_PENDING_DELTA,
    SIDE_POSITION,
    SIDE_POSTED_DELTA,
)

# The spec's four balances, in its order: the columns of per-ledger sums, of final balances and
# of an overflow's report.
DEBITS_PENDING, DEBITS_POSTED, CREDITS_PENDING, CREDITS_POSTED = 0, 1, 2, 3
SIDE_DEBIT, SIDE_CREDIT = 0, 1

# A shard's accounts (sim.shard_state): posted balances dense, [accounts, 2] int64; one byte
# each for the ledger slot (low 7 bits) and debits_must_not_exceed_credits (the high bit);
# pending balances sparse, in the held table [position + 1, debits pending, credits pending]
# (0 = empty slot), a record only while either is non-zero.
POSTED_DEBITS, POSTED_CREDITS = 0, 1
ACCOUNT_BYTE_FLAGGED = 0x80
ACCOUNT_LEDGER_SLOT_MASK = 0x7F
HELD_KEY, HELD_DEBITS, HELD_CREDITS = 0, 1, 2
HELD_TABLE_COLUMNS = 3

# The transfer fields (FIELD_*) and every payload's columns are the wire format: sim.wire.
# id table: [key, position]: 16 bytes. The position is the row's place in the shard's id log
# (sim.id_log: its fields, read back only when a retry must be compared); positions grow with
# epochs, so a record is within the window when its position is at or after the window's floor.
ID_KEY, ID_POSITION = 0, 1
ID_TABLE_COLUMNS = 2
# pending table: [key, state, resolved_epoch, mark_epoch, mark, sim_time_us, 6 fields]
P_KEY, P_STATE, P_RESOLVED_EPOCH, P_MARK_EPOCH, P_MARK, P_SIM_TIME = 0, 1, 2, 3, 4, 5
P_FIELDS = 6
PENDING_TABLE_COLUMNS = P_FIELDS + FIELD_COUNT

MARK_NONE, MARK_POST, MARK_VOID = 0, 1, 2

# (epoch column, state column) that decide when a record is past its window (see _stale):
# ids by their position (id_window_arguments); pending transfers by their resolution epoch, and
# only once resolved.
ID_WINDOW_COLUMNS = (ID_POSITION, -1)
PENDING_WINDOW_COLUMNS = (P_RESOLVED_EPOCH, P_STATE)


def id_window_arguments(floor):
    """(epoch_now, window) that make _stale, sweep_step and rebuild_table treat an id record
    as within the window exactly when its position is at or after floor."""
    return np.int64(INT64_MAX), np.int64(INT64_MAX - floor)


@numba.njit(cache=True)
def check_ids(id_table, pending_table, rows, base, floor):
    """Idempotency checks 4/5 in row order; row i's id is recorded at log position base + i.

    A record before the window's floor counts as absent, unless a still-pending transfer holds
    the id. A retry of an id recorded in this epoch is compared with its row here; one recorded
    in an earlier epoch cannot be (its fields are in the log): its row and position come back
    as deferred, for the caller to compare (status EXISTS or EXISTS_WITH_DIFFERENT_FIELDS
    either way, and the id is not recorded again, so nothing later depends on which).
    Returns (status, ids recorded, slots newly used, deferred rows, their positions).
    """
    n = len(rows)
    status = np.zeros(n, np.uint8)
    deferred_row = np.empty(n, np.int64)
    deferred_position = np.empty(n, np.int64)
    deferred = 0
    added = recorded = 0
    for i in range(n):
        if i + PREFETCH_DISTANCE < n:
            ahead = rows[i + PREFETCH_DISTANCE, ID_ROW_KEY]
            prefetch_row(id_table, home_slot(ahead, id_table.shape[0]))
        key = rows[i, ID_ROW_KEY]
        slot = find_slot(id_table, key)
        if id_table[slot, ID_KEY] == key and id_table[slot, ID_POSITION] >= floor:
            position = id_table[slot, ID_POSITION]
            if position >= base:
                same = same_columns(rows, position - base, ID_ROW_FIELDS, rows, i, ID_ROW_FIELDS, FIELD_COUNT)
                status[i] = EXISTS if same else EXISTS_WITH_DIFFERENT_FIELDS
            else:
                deferred_row[deferred] = i
                deferred_position[deferred] = position
                deferred += 1
            continue
        pslot = find_slot(pending_table, key)
        if pending_table[pslot, P_KEY] == key and pending_table[pslot, P_STATE] == PENDING_STATE_PENDING:
            same = same_columns(pending_table, pslot, P_FIELDS, rows, i, ID_ROW_FIELDS, FIELD_COUNT)
            status[i] = EXISTS if same else EXISTS_WITH_DIFFERENT_FIELDS
            continue
        if id_table[slot, ID_KEY] == 0:
            added += 1
        id_table[slot, ID_KEY] = key
        id_table[slot, ID_POSITION] = base + i
        recorded += 1
    return status, recorded, added, deferred_row[:deferred], deferred_position[:deferred]


@numba.njit(cache=True)
def sweep_step(table, cursor, count, epoch_now, window, epoch_column, state_column):
    """Delete the records past the window among `count` slots from `cursor`, in place.

    A record is past the window when epoch_now - table[slot, epoch_column] > window; with
    state_column >= 0 (pending table) only records no longer pending can be (ids: -1).

    Linear probing's backward-shift deletion (Knuth 6.4, Algorithm R) keeps every other key
    reachable, so no tombstones and no new table: a full pass over SWEEP_PASS_EPOCHS epochs
    keeps the table's load flat instead of stopping the world to rebuild it. Returns (next
    cursor, records removed).
    """
    capacity = table.shape[0]
    removed = 0
    slot = cursor % capacity
    for _ in range(min(count, capacity)):
        while _stale(table, slot, epoch_now, window, epoch_column, state_column):
            delete_slot(table, slot)  # a later record may move into `slot`: look again
            removed += 1
        slot += 1
        if slot == capacity:
            slot = 0
    return slot, removed


@numba.njit(inline="always", cache=True)
def _stale(table, slot, epoch_now, window, epoch_column, state_column):
    if table[slot, 0] == 0:
        return False
    if state_column >= 0 and table[slot, state_column] == PENDING_STATE_PENDING:
        return False
    return not within_window(epoch_now, table[slot, epoch_column], window)


@numba.njit(cache=True)
def rebuild_table(table, new_capacity, epoch_now, window, epoch_column, state_column):
    """Copy of the records not past their window (see _stale) into a table of new_capacity
    slots; returns (table, live records)."""
    out = np.zeros((new_capacity, table.shape[1]), np.int64)
    live = 0
    for slot in range(table.shape[0]):
        if table[slot, 0] == 0 or _stale(table, slot, epoch_now, window, epoch_column, state_column):
            continue
        target = find_slot(out, table[slot, 0])
        out[target, :] = table[slot, :]
        live += 1
    return out, live


@numba.njit(cache=True)
def check_pending(pending_table, rows, epoch_now, window):
    """Checks 15..20 for POST/VOID rows in row order; passing rows mark the pending transfer.

    Returns (status, pending amount of each passing row).
    """
    n = len(rows)
    status = np.zeros(n, np.uint8)
    pending_amount = np.zeros(n, np.int64)
    for i in range(n):
        key = rows[i, CHECK_PENDING_ID]
        slot = find_slot(pending_table, key)
        s = _pending_status(pending_table, slot, key, rows, i, epoch_now, window)
        status[i] = s
        if s == OK:
            pending_table[slot, P_MARK_EPOCH] = epoch_now
            pending_table[slot, P_MARK] = MARK_POST if rows[i, CHECK_IS_POST] != 0 else MARK_VOID
            pending_amount[i] = pending_table[slot, P_FIELDS + FIELD_AMOUNT]
    return status, pending_amount


@numba.njit(inline="always", cache=True)
def _pending_status(table, slot, key, rows, i, epoch_now, window):
    if table[slot, P_KEY] != key:
        return PENDING_TRANSFER_NOT_FOUND
    state = table[slot, P_STATE]
    if state != PENDING_STATE_PENDING and not within_window(epoch_now, table[slot, P_RESOLVED_EPOCH], window):
        return PENDING_TRANSFER_NOT_FOUND
    if (rows[i, CHECK_DEBIT] != table[slot, P_FIELDS + FIELD_DEBIT]
            or rows[i, CHECK_CREDIT] != table[slot, P_FIELDS + FIELD_CREDIT]
            or rows[i, CHECK_LEDGER]
            != (table[slot, P_FIELDS + FIELD_LEDGER_CODE_FLAGS] & LEDGER_MASK)):
        return PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
    mark = table[slot, P_MARK] if table[slot, P_MARK_EPOCH] == epoch_now else MARK_NONE
    if state == PENDING_STATE_POSTED or mark == MARK_POST:
        return PENDING_TRANSFER_ALREADY_POSTED
    if state == PENDING_STATE_VOIDED or mark == MARK_VOID:
        return PENDING_TRANSFER_ALREADY_VOIDED
    if state == PENDING_STATE_EXPIRED:
        return PENDING_TRANSFER_EXPIRED
    if rows[i, CHECK_IS_POST] != 0 and rows[i, CHECK_AMOUNT] > table[slot, P_FIELDS + FIELD_AMOUNT]:
        return EXCEEDS_PENDING_AMOUNT
    return OK


@numba.njit(inline="always", cache=True)
def held_amount(held, position, column):
    """An account's pending balance (HELD_DEBITS or HELD_CREDITS): 0 when it holds none."""
    return held[find_slot(held, position + 1), column]


@numba.njit(inline="always", cache=True)
def _add_held(held, position, column, delta):
    """Add delta to an account's pending balance; returns the change in occupied slots (+1 a
    new record, -1 a record back to zero on both sides and deleted, else 0). The caller
    keeps room for every insert (reserve_held)."""
    if delta == 0:
        return 0
    slot = find_slot(held, position + 1)
    added = 0
    if held[slot, HELD_KEY] == 0:
        held[slot, HELD_KEY] = position + 1
        added = 1
    held[slot, column] += delta
    if held[slot, HELD_DEBITS] == 0 and held[slot, HELD_CREDITS] == 0:
        delete_slot(held, slot)
        return added - 1
    return added


@numba.njit(cache=True)
def check_funds(posted, held, rows):
    """Check 21 in row order for rows whose debit account must not exceed its credits.

    Reservations live in a scratch table for this call (the epoch's funds rows on this shard).
    """
    n = len(rows)
    status = np.zeros(n, np.uint8)
    capacity = 2 * n + 16
    reserved = np.zeros((capacity, 2), np.int64)  # [position + 1, reserved amount]
    held_capacity = held.shape[0]
    for i in range(n):
        if i + PREFETCH_DISTANCE < n:
            ahead = rows[i + PREFETCH_DISTANCE, FUNDS_POSITION]
            prefetch_row(posted, ahead)
            prefetch_row(held, home_slot(ahead + 1, held_capacity))
        position = rows[i, FUNDS_POSITION]
        slot = find_slot(reserved, position + 1)
        reserved[slot, 0] = position + 1
        available = (posted[position, POSTED_CREDITS] - posted[position, POSTED_DEBITS]
                     - held_amount(held, position, HELD_DEBITS) - reserved[slot, 1])
        if rows[i, FUNDS_AMOUNT] > available:
            status[i] = EXCEEDS_CREDITS
        else:
            reserved[slot, 1] += rows[i, FUNDS_AMOUNT]
    return status


@numba.njit(inline="always", cache=True)
def _add_to_sum(sums, ledger_slot, column, delta):
    """Running per-ledger sums in two int64 halves (high, low 32 bits) so they never wrap."""
    sums[ledger_slot, column, 0] += delta >> 32
    sums[ledger_slot, column, 1] += delta & 0xFFFFFFFF


@numba.njit(cache=True)
def normalise_sums(sums):
    for ledger_slot in range(sums.shape[0]):
        for column in range(sums.shape[1]):
            carry = sums[ledger_slot, column, 1] >> 32
            sums[ledger_slot, column, 0] += carry
            sums[ledger_slot, column, 1] -= carry << 32


@numba.njit(inline="always", cache=True)
def _would_overflow(value, delta):
    return delta > 0 and value > INT64_MAX - delta


@numba.njit(cache=True)
def apply_side(posted, held, account_byte, sums, rows, side, check_overdraft):
    """Committed deltas for one side (SIDE_DEBIT or SIDE_CREDIT fields), in row order.

    Returns (first overflowing row index into rows or -1, overflowing balance column
    (DEBITS_PENDING ...), first overdrawn position or -1, change in held records). Stops at
    an overflow: the run ends there.
    """
    held_column = HELD_DEBITS if side == SIDE_DEBIT else HELD_CREDITS
    posted_column = POSTED_DEBITS if side == SIDE_DEBIT else POSTED_CREDITS
    pending_balance = DEBITS_PENDING if side == SIDE_DEBIT else CREDITS_PENDING
    posted_balance = DEBITS_POSTED if side == SIDE_DEBIT else CREDITS_POSTED
    overdrawn = np.int64(-1)
    held_added = 0
    n = len(rows)
    for i in range(n):
        if i + PREFETCH_DISTANCE < n:
            prefetch_row(posted, rows[i + PREFETCH_DISTANCE, SIDE_POSITION])
        position = rows[i, SIDE_POSITION]
        posted_delta = rows[i, SIDE_POSTED_DELTA]
        pending_delta = rows[i, SIDE_PENDING_DELTA]
        if pending_delta != 0:
            if _would_overflow(held_amount(held, position, held_column), pending_delta):
                return i, pending_balance, overdrawn, held_added
            held_added += _add_held(held, position, held_column, pending_delta)
        if _would_overflow(posted[position, posted_column], posted_delta):
            return i, posted_balance, overdrawn, held_added
        posted[position, posted_column] += posted_delta
        slot = account_byte[position] & ACCOUNT_LEDGER_SLOT_MASK
        _add_to_sum(sums, slot, pending_balance, pending_delta)
        _add_to_sum(sums, slot, posted_balance, posted_delta)
        if check_overdraft and overdrawn < 0 and (account_byte[position] & ACCOUNT_BYTE_FLAGGED) != 0:
            if posted[position, POSTED_DEBITS] > (posted[position, POSTED_CREDITS]
                                                  - held_amount(held, position, HELD_DEBITS)):
                overdrawn = position
    return np.int64(-1), np.int64(-1), overdrawn, held_added


@numba.njit(cache=True)
def lookup_accounts(directory, keys, account_byte, wanted):
    """(position int32, info uint16) of each wanted account key; position -1 when absent."""
    n = len(wanted)
    position = np.empty(n, np.int32)
    info = np.zeros(n, np.uint16)
    buckets = len(directory) - 1
    near = PREFETCH_DISTANCE // 2
    for i in range(n):
        # two-stage prefetch: the directory entry of row i + D, then (it has arrived by now)
        # the bucket's first keys and account bytes of row i + D/2, so the scan mostly hits cache
        if i + PREFETCH_DISTANCE < n:
            prefetch_row(directory, home_slot(wanted[i + PREFETCH_DISTANCE], buckets))
        if i + near < n:
            first = np.int64(directory[home_slot(wanted[i + near], buckets)])
            if first < len(keys):
                prefetch_row(keys, first)
                prefetch_row(account_byte, first)
        p = account_position(directory, keys, wanted[i])
        position[i] = p
        if p >= 0:
            byte = account_byte[p]
            info[i] = (np.uint16(byte & ACCOUNT_LEDGER_SLOT_MASK) + 1) | (
                ACCOUNT_INFO_FLAGGED if (byte & ACCOUNT_BYTE_FLAGGED) != 0 else 0)
    return position, info


@numba.njit(cache=True)
def expire_accounts(held, account_byte, sums, directory, keys, wanted, amounts, side):
    """Drop one side's pending balance of each wanted account by amount (expired holds);
    returns the change in held records (a record is added only if the engine is wrong and a
    balance goes below zero: the boundary audit reports that, so the caller reserves room)."""
    held_column = HELD_DEBITS if side == SIDE_DEBIT else HELD_CREDITS
    pending_balance = DEBITS_PENDING if side == SIDE_DEBIT else CREDITS_PENDING
    held_added = 0
    for i in range(len(wanted)):
        position = account_position(directory, keys, wanted[i])
        assert position >= 0
        held_added += _add_held(held, position, held_column, -amounts[i])
        _add_to_sum(sums, account_byte[position] & ACCOUNT_LEDGER_SLOT_MASK, pending_balance, -amounts[i])
    return held_added


@numba.njit(cache=True)
def held_balances(held, account_count):
    """[accounts, 2] int64 pending balances (HELD_DEBITS - 1, HELD_CREDITS - 1 columns)."""
    out = np.zeros((account_count, 2), np.int64)
    for slot in range(held.shape[0]):
        if held[slot, HELD_KEY] != 0:
            out[held[slot, HELD_KEY] - 1, 0] = held[slot, HELD_DEBITS]
            out[held[slot, HELD_KEY] - 1, 1] = held[slot, HELD_CREDITS]
    return out


# --- pending creation, resolution and expiry --------------------------------------------------


@numba.njit(cache=True)
def create_pending(pending_table, heap_time, heap_key, heap_size, rows):
    """Record committed PENDING transfers (replacing resolved ones with the same id).

    Returns (slots newly used, heap size). The heap arrays must have room for len(rows) more.
    """
    added = 0
    size = heap_size
    for i in range(len(rows)):
        key = rows[i, CREATION_KEY]
        slot = find_slot(pending_table, key)
        if pending_table[slot, P_KEY] == 0:
            added += 1
        pending_table[slot, :] = 0
        pending_table[slot, P_KEY] = key
        pending_table[slot, P_STATE] = PENDING_STATE_PENDING
        pending_table[slot, P_SIM_TIME] = rows[i, CREATION_SIM_TIME_US]
        for f in range(FIELD_COUNT):
            pending_table[slot, P_FIELDS + f] = rows[i, CREATION_FIELDS + f]
        timeout_s = rows[i, CREATION_FIELDS + FIELD_TIMEOUT]
        expires, expire_at = _expire_at(rows[i, CREATION_SIM_TIME_US], timeout_s)
        if expires:
            size = heap_push((heap_time, heap_key), size, (expire_at, key))
    return added, size


@numba.njit(inline="always", cache=True)
def _expire_at(sim_time_us, timeout_s):
    """(expires, instant in µs): never for timeout 0, nor past the int64 range (no epoch can
    start that late). sim_time_us may be negative."""
    if timeout_s == 0:
        return False, np.int64(0)
    span = timeout_s * MICROSECONDS_PER_SECOND
    if sim_time_us > INT64_MAX - span:
        return False, np.int64(0)
    return True, sim_time_us + span


@numba.njit(cache=True)
def resolve_pending(pending_table, rows, epoch_now):
    for i in range(len(rows)):
        slot = find_slot(pending_table, rows[i, RESOLUTION_KEY])
        assert pending_table[slot, P_KEY] == rows[i, RESOLUTION_KEY]
        pending_table[slot, P_STATE] = rows[i, RESOLUTION_STATE]
        pending_table[slot, P_RESOLVED_EPOCH] = epoch_now
        pending_table[slot, P_MARK] = MARK_NONE


@numba.njit(cache=True)
def expire_pending(pending_table, heap_time, heap_key, heap_size, start_us, epoch_now):
    """Expire every pending transfer due at or before start_us.

    Returns (count, rows [count, 3] of (debit, credit, amount), heap size).
    """
    out = np.zeros((16, EXPIRED_COLUMNS), np.int64)
    count = 0
    size = heap_size
    while size > 0 and heap_time[0] <= start_us:
        due = heap_time[0]
        key = heap_key[0]
        size = heap_pop((heap_time, heap_key), size)
        slot = find_slot(pending_table, key)
        if pending_table[slot, P_KEY] != key or pending_table[slot, P_STATE] != PENDING_STATE_PENDING:
            continue  # resolved earlier; the heap entry is stale
        expires, expire_at = _expire_at(pending_table[slot, P_SIM_TIME], pending_table[slot, P_FIELDS + FIELD_TIMEOUT])
        if not expires or expire_at != due:
            continue  # a newer pending transfer took this id
        pending_table[slot, P_STATE] = PENDING_STATE_EXPIRED
        pending_table[slot, P_RESOLVED_EPOCH] = epoch_now
        if count == out.shape[0]:
            grown = np.zeros((2 * count, EXPIRED_COLUMNS), np.int64)
            grown[:count] = out
            out = grown
        out[count, EXPIRED_DEBIT] = pending_table[slot, P_FIELDS + FIELD_DEBIT]
        out[count, EXPIRED_CREDIT] = pending_table[slot, P_FIELDS + FIELD_CREDIT]
        out[count, EXPIRED_AMOUNT] = pending_table[slot, P_FIELDS + FIELD_AMOUNT]
        count += 1
    return out[:count].copy(), size


@numba.njit(cache=True)
def compact_heap(pending_table, heap_time, heap_key, heap_size):
    """Heap rebuilt from its live entries (still-pending holds); returns the new size."""
    heap = (heap_time, heap_key)
    size = 0
    for i in range(heap_size):
        slot = find_slot(pending_table, heap_key[i])
        if pending_table[slot, P_KEY] == heap_key[i] and pending_table[slot, P_STATE] == PENDING_STATE_PENDING:
            heap_move(heap, i, size)
            size += 1
    heap_build(heap, size)
    return size


@numba.njit(cache=True)
def rehash(table, capacity):
    """The table's records in a new table of `capacity` slots (linear probing from home)."""
    out = np.zeros((capacity, table.shape[1]), table.dtype)
    for slot in range(table.shape[0]):
        if table[slot, 0] != 0:
            copy_row(table, slot, out, find_slot(out, table[slot, 0]))
    return out


@numba.njit(cache=True)
def occupied(table, count):
    """(slots, rows) of a record table's occupied slots (key != 0) in slot order, in one pass:
    `count` is the number the shard keeps (id_used, pending_used); a mismatch is a bug."""
    slots = np.empty(count, np.int64)
    rows = np.empty((count, table.shape[1]), np.int64)
    j = 0
    for slot in range(table.shape[0]):
        if table[slot, 0] != 0:
            assert j < count, "more occupied slots than the shard counted"
            slots[j] = slot
            rows[j, :] = table[slot, :]
            j += 1
    assert j == count, "fewer occupied slots than the shard counted"
    return slots, rows
