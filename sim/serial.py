"""A fast single-process ledger: the reference ledger's rules as a few numba kernels.

`run_serial` gives the same statuses, balances and overflow errors as
`sim.reference.run_reference` (the truth; its docstrings record the decisions taken on spec
gaps), in epoch mode and in strict serial mode (LEDGER_SPEC.md "Strict serial order": each
chain commits at its own end). It serves to measure the strict serial divergence of big runs
and as a one-core baseline for the sharded engine.

How it is laid out:
- a prepass maps the sparse uint64 account ids to dense positions (an open-addressing table)
  and runs the checks that depend on the row alone (6..14) for every row at once;
- one kernel then walks the epochs: expiry at the epoch's start (a binary heap), evaluation of
  every row in file order, commit at each chain's end (strict) or at the epoch's end;
- state lives in preallocated row-major int64 tables: one row per account (four balance fields
  plus the reservation of the current epoch or chain), and two linear-probing tables keyed by
  transfer id (sim.hashtable.find_slot; column 0, 0 = empty): the first row of each id within
  the idempotency window, and each committed PENDING transfer still pending or resolved within
  the window. Records point at their row of the workload for every field the rules read; as
  epochs never go down, an id record is within the window exactly when its row is at or after
  the window's first row. Before an epoch could fill a table past half, records past the
  windows are dropped (the id table is purged in place, the small pending table rebuilt) and
  the table resized if need be, so memory follows the window, not the run.

Speed: the hot kernels are inlined and compiled without NRT reference counting, and the
evaluation loop prefetches the id slot and account rows of the row PREFETCH_DISTANCE ahead
(random accesses into tables far bigger than the caches are what costs).

Tentative effects are tagged with a stamp (one per epoch, or one per chain in strict mode): a
reservation or a post/void mark counts only while its stamp is the current one, so nothing
needs clearing between epochs or chains. Epochs are uint64 bit patterns held in int64; their
differences are compared as unsigned.
"""

from __future__ import annotations

from collections import namedtuple

import numba
import numpy as np

from sim.columns import BALANCE_FIELDS, Accounts, Balances, Transfers
from sim.constants import (
    ACCOUNT_COUNT_MAX,
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS,
    CREDIT_ACCOUNT_NOT_FOUND,
    DEBIT_ACCOUNT_NOT_FOUND,
    EXCEEDS_CREDITS,
    EXCEEDS_PENDING_AMOUNT,
    EXISTS,
    EXISTS_WITH_DIFFERENT_FIELDS,
    FLAG_LINKED,
    FLAG_PENDING,
    ID_MUST_NOT_BE_ZERO,
    IDEMPOTENCY_WINDOW_EPOCHS,
    INT64_MAX,
    LEDGER_MISMATCH,
    LINKED_EVENT_CHAIN_OPEN,
    LINKED_EVENT_FAILED,
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
    STATUS_DTYPE,
    TABLE_CAPACITY_MIN,
)
from sim.errors import BalanceOverflowError
from sim.hashtable import (
    PREFETCH_DISTANCE,
    find_slot,
    home_slot,
    pow2_at_least,
    prefetch_row,
)
from sim.reference import ReferenceResult
from sim.rowchecks import (
    KIND_PENDING,
    KIND_PLAIN,
    KIND_POST,
    KIND_VOID,
    local_status,
    transfer_kind,
)
from sim.tables import (
    copy_row,
    delete_slot,
    heap_build,
    heap_move,
    heap_pop,
    heap_push,
    within_window,
)

UINT64_MAX = 2**64 - 1

# Account table [accounts, 8]: the four balance fields in BALANCE_FIELDS order, then the
# reservation, the stamp it belongs to, and the DEBITS_MUST_NOT_EXCEED_CREDITS flag.
A_DEBITS_PENDING, A_DEBITS_POSTED, A_CREDITS_PENDING, A_CREDITS_POSTED = 0, 1, 2, 3
A_RESERVED, A_RESERVED_STAMP, A_GUARDED = 4, 5, 6
ACCOUNT_COLUMNS = 8  # one 64-byte line per account

# Account index [capacity, 2]: account id, entry = dense position | ledger << 32.
X_KEY, X_ENTRY = 0, 1
NOT_FOUND = -1  # no entry is -1: positions are below 2**31
# Id table [capacity, 2]: transfer id, the first row with it (its epoch and fields).
I_KEY, I_ROW = 0, 1
ID_COLUMNS = 2
# Pending table [capacity, 8]: transfer id, state, epoch it was resolved, row that created it,
# sequence number (matches its heap entry), stamp and value of a tentative post/void mark.
P_KEY, P_STATE, P_RESOLVED_EPOCH, P_ROW, P_SEQUENCE, P_MARK_STAMP, P_MARK = 0, 1, 2, 3, 4, 5, 6
PENDING_COLUMNS = 8
# Expiry heap: a tuple of three int64 columns (sim.tables' heap), ordered by (expires_at_us,
# sequence).
H_EXPIRES_AT_US, H_SEQUENCE, H_KEY = 0, 1, 2
# Counters of one run (an int64 array the kernels share).
C_IDS_USED, C_PENDING_USED, C_HEAP_SIZE, C_SEQUENCE, C_STAMP = 0, 1, 2, 3, 4
C_STILL_PENDING = 5  # committed PENDING transfers not yet resolved
C_WINDOW_ROW = 6  # first row whose epoch is within the window of the current epoch
COUNTER_COUNT = 7
# Overflow report [3]: global row (-1 when none), account position, balance column.
E_ROW, E_ACCOUNT, E_FIELD = 0, 1, 2

# Kernels that allocate nothing are compiled without NRT reference counting (numba's `_nrt`
# flag; numba is pinned): they only borrow arrays their caller owns, and refcounting every array
# handed down the per-row call chain cost several times the ledger work itself.
_NO_REFCOUNTS = dict(cache=True, _nrt=False)

# The workload as the kernels read it: uint64 columns viewed as int64, plus the prepass.
Rows = namedtuple(
    "Rows",
    "id epoch sim_time_us debit credit amount ledger code flags pending_id timeout_s"
    " debit_position credit_position static_status",
)


# --- the entry point -----------------------------------------------------------------------------


def run_serial(
    accounts: Accounts,
    transfers: Transfers,
    *,
    strict_serial: bool = True,
    window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS,
) -> ReferenceResult:
    """Run a whole workload through one process; statuses and balances as run_reference's.

    Raises BalanceOverflowError with the reference's (epoch, row, account, field) when a
    balance field would pass 2**63-1, and ValueError for what the reference refuses: a
    negative window, a zero or repeated account id, or epochs that go down.
    """
    if window_epochs < 0:
        raise ValueError(f"window_epochs(={window_epochs}) must be >= 0.")
    if len(accounts) > ACCOUNT_COUNT_MAX:
        raise ValueError(f"account count(={len(accounts)}) must be <= {ACCOUNT_COUNT_MAX}.")
    index = _account_index(accounts)
    rows = _rows_of(transfers, index, accounts)
    starts = _epoch_starts(transfers)
    table = np.zeros((len(accounts), ACCOUNT_COLUMNS), np.int64)
    table[:, A_GUARDED] = accounts.flags & ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS
    status = np.zeros(len(transfers), STATUS_DTYPE)
    error = np.full(3, -1, np.int64)
    window = np.uint64(min(int(window_epochs), UINT64_MAX))
    _run(rows, starts, table, status, error, bool(strict_serial), window)
    if error[E_ROW] >= 0:
        row, position, column = (int(v) for v in error)
        raise BalanceOverflowError(int(transfers.epoch[row]), row, int(transfers.id[row]),
                                   int(accounts.id[position]), BALANCE_FIELDS[column])
    balances = Balances.from_columns(
        id=accounts.id,
        ledger=accounts.ledger,
        **{name: table[:, k] for k, name in enumerate(BALANCE_FIELDS)},
    )
    return ReferenceResult(status=status, balances=balances)


def _account_index(accounts: Accounts) -> np.ndarray:
    keys = np.ascontiguousarray(accounts.id).view(np.int64)
    index = np.zeros((pow2_at_least(2 * len(keys) + 1), 2), np.int64)
    bad = _fill_account_index(index, keys, accounts.ledger)
    if bad >= 0:
        raise ValueError(f"account id {int(accounts.id[bad])} is zero or not unique.")
    return index


def _rows_of(transfers: Transfers, index: np.ndarray, accounts: Accounts) -> Rows:
    """The kernels' view of the workload, with the prepass (positions, checks 6..14)."""
    as_int64 = {
        name: (column.view(np.int64) if column.dtype == np.uint64 else column)
        for name, column in transfers.columns().items()
    }
    n = len(transfers)
    debit_position = np.empty(n, np.int32)
    credit_position = np.empty(n, np.int32)
    static_status = np.empty(n, np.uint8)
    positions = (debit_position, credit_position, static_status)
    _prepass(index, as_int64["debit_account"], as_int64["credit_account"],
             as_int64["amount"], as_int64["ledger"], as_int64["flags"], as_int64["pending_id"],
             as_int64["timeout_s"], positions)
    return Rows(
        as_int64["id"], as_int64["epoch"], as_int64["sim_time_us"], as_int64["debit_account"],
        as_int64["credit_account"], as_int64["amount"], as_int64["ledger"], as_int64["code"],
        as_int64["flags"], as_int64["pending_id"], as_int64["timeout_s"],
        debit_position, credit_position, static_status,
    )


def _epoch_starts(transfers: Transfers) -> np.ndarray:
    """Row index where each epoch starts, then len(transfers)."""
    epoch = transfers.epoch
    if len(epoch) == 0:
        return np.zeros(1, np.int64)
    down = np.flatnonzero(epoch[1:] < epoch[:-1])
    if len(down):
        row = int(down[0]) + 1
        raise ValueError(
            f"row {row}: epoch {int(epoch[row])} must not come after epoch {int(epoch[row - 1])}."
        )
    change = np.flatnonzero(epoch[1:] != epoch[:-1]) + 1
    return np.concatenate(([0], change, [len(epoch)])).astype(np.int64)


# --- prepass: account positions and the checks that read only the row ----------------------------


@numba.njit(**_NO_REFCOUNTS)
def _fill_account_index(index, keys, ledgers):
    """Fill an empty index; the position of the first zero or repeated key, else -1."""
    for i in range(len(keys)):
        if keys[i] == 0:
            return i
        slot = find_slot(index, keys[i])
        if index[slot, X_KEY] != 0:
            return i
        index[slot, X_KEY] = keys[i]
        index[slot, X_ENTRY] = i | (np.int64(ledgers[i]) << 32)
    return -1


@numba.njit(**_NO_REFCOUNTS)
def _account_entry(index, key):
    """position | ledger << 32 of an account id, NOT_FOUND when absent."""
    if key == 0:
        return NOT_FOUND
    slot = find_slot(index, key)
    if index[slot, X_KEY] == 0:
        return NOT_FOUND
    return index[slot, X_ENTRY]


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _slot_of(table, key):
    """The home slot find_slot starts from (tables here keep power-of-two capacities)."""
    return home_slot(key, table.shape[0])


@numba.njit(**_NO_REFCOUNTS)
def _prepass(index, debit, credit, amount, ledger, flags, pending_id, timeout_s, out):
    """Fill out = (debit position, credit position, status of checks 6..14) of every row;
    positions are -1 for an unknown account."""
    debit_position, credit_position, static_status = out
    n = len(debit)
    for i in range(n):
        if i + PREFETCH_DISTANCE < n:
            prefetch_row(index, _slot_of(index, debit[i + PREFETCH_DISTANCE]))
            prefetch_row(index, _slot_of(index, credit[i + PREFETCH_DISTANCE]))
        d = _account_entry(index, debit[i])
        c = _account_entry(index, credit[i])
        debit_position[i] = d & 0xFFFFFFFF if d != NOT_FOUND else -1
        credit_position[i] = c & 0xFFFFFFFF if c != NOT_FOUND else -1
        s = _shape_status(flags[i], pending_id[i], timeout_s[i], debit[i], credit[i], amount[i])
        if s == OK:
            if d == NOT_FOUND:
                s = DEBIT_ACCOUNT_NOT_FOUND
            elif c == NOT_FOUND:
                s = CREDIT_ACCOUNT_NOT_FOUND
            elif ledger[i] != (d >> 32) & 0xFFFFFFFF or ledger[i] != (c >> 32) & 0xFFFFFFFF:
                s = LEDGER_MISMATCH
        static_status[i] = s


@numba.njit(**_NO_REFCOUNTS)
def _shape_status(flags, pending_id, timeout_s, debit, credit, amount):
    """Checks 6..11: the engine's own row-local checks (sim.rowchecks)."""
    return local_status(transfer_kind(flags), pending_id, timeout_s, debit, credit, amount)


# --- the run: epochs in order --------------------------------------------------------------------


@numba.njit(cache=True)
def _run(rows, starts, accounts, status, error, strict, window):
    """Every epoch in order; stops at the first balance overflow (reported in error)."""
    counters = np.zeros(COUNTER_COUNT, np.int64)
    id_table = np.zeros((TABLE_CAPACITY_MIN, ID_COLUMNS), np.int64)
    pending_table = np.zeros((TABLE_CAPACITY_MIN, PENDING_COLUMNS), np.int64)
    heap = _empty_heap(TABLE_CAPACITY_MIN)
    for e in range(len(starts) - 1):
        lo = starts[e]
        hi = starts[e + 1]
        epoch = rows.epoch[lo]
        new_pending = _count_pending_rows(rows.flags, lo, hi)
        counters[C_WINDOW_ROW] = _window_row(rows.epoch, counters, epoch, window)
        id_table = _room_for_ids(id_table, counters, hi - lo)
        pending_table = _room_for_pending(pending_table, counters, new_pending, epoch, window)
        heap = _room_in_heap(heap, pending_table, counters, new_pending)
        _expire(rows, accounts, pending_table, heap, counters, rows.sim_time_us[lo], epoch)
        ok = _apply_epoch(rows, lo, hi, accounts, id_table, pending_table, heap, counters,
                          status, error, strict, window)
        if not ok:
            return


@numba.njit(**_NO_REFCOUNTS)
def _apply_epoch(rows, lo, hi, accounts, id_table, pending_table, heap, counters, status,
                 error, strict, window):
    """Rows [lo, hi) of one epoch; False when a commit would overflow a balance."""
    epoch = rows.epoch[lo]
    open_start = hi  # a chain still open at the epoch's last row starts here
    while open_start > lo and rows.flags[open_start - 1] & FLAG_LINKED:
        open_start -= 1
    counters[C_STAMP] += 1
    chain_start = lo
    for i in range(lo, open_start):
        if i + PREFETCH_DISTANCE < open_start:
            _prefetch_ahead(rows, i + PREFETCH_DISTANCE, accounts, id_table)
        status[i] = _evaluate(rows, i, accounts, id_table, pending_table, counters, epoch,
                              window)
        if (rows.flags[i] & FLAG_LINKED) == 0:
            if strict:
                if not _settle_chain(rows, chain_start, i + 1, accounts, pending_table, heap,
                                     counters, status, error, epoch):
                    return False
                counters[C_STAMP] += 1
            chain_start = i + 1
    for i in range(open_start, hi):
        if rows.id[i] != 0:
            _check_id(rows, i, id_table, pending_table, counters, epoch, window)
        status[i] = LINKED_EVENT_CHAIN_OPEN
    if strict:
        return True
    chain_start = lo
    for i in range(lo, open_start):
        if (rows.flags[i] & FLAG_LINKED) == 0:
            if not _settle_chain(rows, chain_start, i + 1, accounts, pending_table, heap,
                                 counters, status, error, epoch):
                return False
            chain_start = i + 1
    return True


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _prefetch_ahead(rows, i, accounts, id_table):
    """Start fetching what row i will read: its id's slot and its accounts' rows."""
    prefetch_row(id_table, _slot_of(id_table, rows.id[i]))
    if rows.static_status[i] == OK:
        prefetch_row(accounts, rows.debit_position[i])
        prefetch_row(accounts, rows.credit_position[i])


# --- evaluation: the checks in LEDGER_SPEC.md order ----------------------------------------------


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _evaluate(rows, i, accounts, id_table, pending_table, counters, epoch, window):
    """The row's status; a passing row takes its tentative effect (reservation or mark)."""
    if rows.id[i] == 0:
        return ID_MUST_NOT_BE_ZERO
    s = _check_id(rows, i, id_table, pending_table, counters, epoch, window)
    if s != OK:
        return s
    s = rows.static_status[i]
    if s != OK:
        return s
    kind = transfer_kind(rows.flags[i])
    if kind == KIND_POST or kind == KIND_VOID:
        return _check_pending(rows, i, kind, pending_table, counters[C_STAMP], epoch, window)
    return _check_funds(rows, i, accounts, counters[C_STAMP])


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _same_fields(rows, a, b):
    """The eight fields `exists` compares (flags include the LINKED bit)."""
    return (
        rows.debit[a] == rows.debit[b]
        and rows.credit[a] == rows.credit[b]
        and rows.amount[a] == rows.amount[b]
        and rows.ledger[a] == rows.ledger[b]
        and rows.code[a] == rows.code[b]
        and rows.flags[a] == rows.flags[b]
        and rows.pending_id[a] == rows.pending_id[b]
        and rows.timeout_s[a] == rows.timeout_s[b]
    )


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _check_id(rows, i, id_table, pending_table, counters, epoch, window):
    """exists / exists_with_different_fields, or OK after recording row i as the id's first."""
    key = rows.id[i]
    slot = find_slot(id_table, key)
    seen = -1
    if id_table[slot, I_KEY] == key and id_table[slot, I_ROW] >= counters[C_WINDOW_ROW]:
        seen = id_table[slot, I_ROW]  # epochs never go down: later rows are within the window
    if seen < 0 and counters[C_STILL_PENDING] > 0:
        pslot = find_slot(pending_table, key)
        held = pending_table[pslot, P_STATE] == PENDING_STATE_PENDING
        if pending_table[pslot, P_KEY] == key and held:
            seen = pending_table[pslot, P_ROW]  # a still-pending transfer keeps its id taken
    if seen < 0:
        if id_table[slot, I_KEY] == 0:
            counters[C_IDS_USED] += 1
        id_table[slot, I_KEY] = key
        id_table[slot, I_ROW] = i
        return OK
    return EXISTS if _same_fields(rows, seen, i) else EXISTS_WITH_DIFFERENT_FIELDS


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _check_pending(rows, i, kind, pending_table, stamp, epoch, window):
    """Checks 15..20 of a POST or VOID row; a passing row marks the pending transfer."""
    key = rows.pending_id[i]
    slot = find_slot(pending_table, key)
    if pending_table[slot, P_KEY] != key:
        return PENDING_TRANSFER_NOT_FOUND
    state = pending_table[slot, P_STATE]
    if state != PENDING_STATE_PENDING and not within_window(
        epoch, pending_table[slot, P_RESOLVED_EPOCH], window
    ):
        return PENDING_TRANSFER_NOT_FOUND
    p = pending_table[slot, P_ROW]
    if (rows.debit[i] != rows.debit[p] or rows.credit[i] != rows.credit[p]
            or rows.ledger[i] != rows.ledger[p]):
        return PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS
    mark = pending_table[slot, P_MARK] if pending_table[slot, P_MARK_STAMP] == stamp else 0
    if state == PENDING_STATE_POSTED or mark == PENDING_STATE_POSTED:
        return PENDING_TRANSFER_ALREADY_POSTED
    if state == PENDING_STATE_VOIDED or mark == PENDING_STATE_VOIDED:
        return PENDING_TRANSFER_ALREADY_VOIDED
    if state == PENDING_STATE_EXPIRED:
        return PENDING_TRANSFER_EXPIRED
    if kind == KIND_POST and rows.amount[i] > rows.amount[p]:
        return EXCEEDS_PENDING_AMOUNT
    pending_table[slot, P_MARK_STAMP] = stamp
    pending_table[slot, P_MARK] = (
        PENDING_STATE_POSTED if kind == KIND_POST else PENDING_STATE_VOIDED
    )
    return OK


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _check_funds(rows, i, accounts, stamp):
    """Check 21; a passing row reserves its amount on a guarded debit account (others are
    never checked, so their reservations are not kept)."""
    d = rows.debit_position[i]
    if accounts[d, A_GUARDED] == 0:
        return OK
    reserved = accounts[d, A_RESERVED] if accounts[d, A_RESERVED_STAMP] == stamp else 0
    # debits_posted + debits_pending + reserved <= credits_posted holds, so no term wraps.
    available = (accounts[d, A_CREDITS_POSTED] - accounts[d, A_DEBITS_POSTED]
                 - accounts[d, A_DEBITS_PENDING] - reserved)
    amount = rows.amount[i]
    if amount > available:
        return EXCEEDS_CREDITS
    accounts[d, A_RESERVED] = reserved + amount
    accounts[d, A_RESERVED_STAMP] = stamp
    return OK


# --- commit --------------------------------------------------------------------------------------


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _settle_chain(rows, start, stop, accounts, pending_table, heap, counters, status, error,
                  epoch):
    """Commit rows [start, stop) if all passed, else passed ones get linked_event_failed.

    False when a commit would overflow a balance (error then names it)."""
    passed = True
    for i in range(start, stop):
        if status[i] != OK:
            passed = False
            break
    if not passed:
        for i in range(start, stop):
            if status[i] == OK:
                status[i] = LINKED_EVENT_FAILED
        return True
    for i in range(start, stop):
        if not _commit(rows, i, accounts, pending_table, heap, counters, error, epoch):
            return False
    return True


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _commit(rows, i, accounts, pending_table, heap, counters, error, epoch):
    kind = transfer_kind(rows.flags[i])
    amount = rows.amount[i]
    d = rows.debit_position[i]
    c = rows.credit_position[i]
    if kind == KIND_PLAIN:
        return _add_pair(accounts, error, i, d, A_DEBITS_POSTED, c, A_CREDITS_POSTED, amount)
    if kind == KIND_PENDING:
        if not _add_pair(accounts, error, i, d, A_DEBITS_PENDING, c, A_CREDITS_PENDING, amount):
            return False
        _create_pending(rows, i, pending_table, heap, counters)
        return True
    slot = find_slot(pending_table, rows.pending_id[i])
    assert pending_table[slot, P_KEY] == rows.pending_id[i]
    assert pending_table[slot, P_STATE] == PENDING_STATE_PENDING
    if kind == KIND_POST:
        # The pending transfer has this row's accounts (check 16).
        if not _add_pair(accounts, error, i, d, A_DEBITS_POSTED, c, A_CREDITS_POSTED, amount):
            return False
        _resolve(rows, accounts, pending_table, counters, slot, PENDING_STATE_POSTED, epoch)
    else:
        _resolve(rows, accounts, pending_table, counters, slot, PENDING_STATE_VOIDED, epoch)
    return True


@numba.njit(inline="always", **_NO_REFCOUNTS)
def _add_pair(accounts, error, i, d, d_column, c, c_column, amount):
    """Add amount to two fields, unless one would pass 2**63-1 (the debit side named first)."""
    if accounts[d, d_column] > INT64_MAX - amount:
        error[E_ROW] = i
        error[E_ACCOUNT] = d
        error[E_FIELD] = d_column
        return False
    if accounts[c, c_column] > INT64_MAX - amount:
        error[E_ROW] = i
        error[E_ACCOUNT] = c
        error[E_FIELD] = c_column
        return False
    accounts[d, d_column] += amount
    accounts[c, c_column] += amount
    return True


@numba.njit(**_NO_REFCOUNTS)
def _create_pending(rows, i, pending_table, heap, counters):
    """Row i is now pending; it replaces a resolved pending transfer with the same id."""
    key = rows.id[i]
    slot = find_slot(pending_table, key)
    if pending_table[slot, P_KEY] == 0:
        counters[C_PENDING_USED] += 1
    else:
        assert pending_table[slot, P_STATE] != PENDING_STATE_PENDING
    counters[C_SEQUENCE] += 1
    counters[C_STILL_PENDING] += 1
    sequence = counters[C_SEQUENCE]
    pending_table[slot, :] = 0
    pending_table[slot, P_KEY] = key
    pending_table[slot, P_STATE] = PENDING_STATE_PENDING
    pending_table[slot, P_ROW] = i
    pending_table[slot, P_SEQUENCE] = sequence
    timeout_s = np.int64(rows.timeout_s[i])
    if timeout_s == 0:
        return
    span_us = timeout_s * MICROSECONDS_PER_SECOND
    if rows.sim_time_us[i] > INT64_MAX - span_us:
        return  # due after every int64 instant: never expires
    size = counters[C_HEAP_SIZE]
    assert size < len(heap[H_KEY])
    entry = (rows.sim_time_us[i] + span_us, sequence, key)
    counters[C_HEAP_SIZE] = heap_push(heap, size, entry)


@numba.njit(**_NO_REFCOUNTS)
def _resolve(rows, accounts, pending_table, counters, slot, state, epoch):
    """Posted, voided or expired: both accounts' pending fields drop by its amount."""
    p = pending_table[slot, P_ROW]
    amount = rows.amount[p]
    d = rows.debit_position[p]
    c = rows.credit_position[p]
    accounts[d, A_DEBITS_PENDING] -= amount
    accounts[c, A_CREDITS_PENDING] -= amount
    assert accounts[d, A_DEBITS_PENDING] >= 0
    assert accounts[c, A_CREDITS_PENDING] >= 0
    pending_table[slot, P_STATE] = state
    pending_table[slot, P_RESOLVED_EPOCH] = epoch
    counters[C_STILL_PENDING] -= 1
    assert counters[C_STILL_PENDING] >= 0


# --- epoch start: expiry and room in the tables --------------------------------------------------


@numba.njit(**_NO_REFCOUNTS)
def _expire(rows, accounts, pending_table, heap, counters, start_us, epoch):
    """Every still-pending hold due at or before start_us expires (stale entries skipped)."""
    size = counters[C_HEAP_SIZE]
    while size > 0 and heap[H_EXPIRES_AT_US][0] <= start_us:
        key = heap[H_KEY][0]
        sequence = heap[H_SEQUENCE][0]
        size = heap_pop(heap, size)
        slot = find_slot(pending_table, key)
        if (pending_table[slot, P_KEY] == key
                and pending_table[slot, P_SEQUENCE] == sequence
                and pending_table[slot, P_STATE] == PENDING_STATE_PENDING):
            _resolve(rows, accounts, pending_table, counters, slot, PENDING_STATE_EXPIRED,
                     epoch)
    counters[C_HEAP_SIZE] = size


@numba.njit(**_NO_REFCOUNTS)
def _window_row(epochs, counters, epoch, window):
    """The first row whose epoch is within the window of epoch (epochs never go down)."""
    row = counters[C_WINDOW_ROW]
    while not within_window(epoch, epochs[row], window):
        row += 1
    return row


@numba.njit(**_NO_REFCOUNTS)
def _purge_ids(id_table, window_row):
    """Delete, in place, the records of rows before window_row; returns the records left.

    One sweep in slot order from just after an empty slot, so every cluster is met from its
    start and the back-shifts of delete_slot only move records not yet visited."""
    mask = id_table.shape[0] - 1
    assert (mask + 1) & mask == 0  # id tables keep power-of-two capacities
    start = 0
    while id_table[start, I_KEY] != 0:
        start += 1
    live = 0
    k = start
    for _ in range(mask):
        k = (k + 1) & mask
        while id_table[k, I_KEY] != 0 and id_table[k, I_ROW] < window_row:
            delete_slot(id_table, k)
        if id_table[k, I_KEY] != 0:
            live += 1
    return live


@numba.njit(**_NO_REFCOUNTS)
def _count_pending_rows(flags, lo, hi):
    """Rows of [lo, hi) that could create a pending transfer."""
    count = 0
    for i in range(lo, hi):
        if flags[i] & FLAG_PENDING:
            count += 1
    return count


@numba.njit(**_NO_REFCOUNTS)
def _capacity_for(count, factor):
    """A power of two holding count records at most 1/factor full."""
    capacity = TABLE_CAPACITY_MIN
    while capacity < factor * count:
        capacity *= 2
    return capacity


@numba.njit(cache=True)
def _room_for_ids(id_table, counters, incoming):
    """The id table with room for incoming ids at most half full: when needed, records past
    the window are purged in place, and the table is resized unless they leave it between a
    quarter and a 32nd full (so purges, each one sweep, come at most every capacity/4 rows)."""
    capacity = id_table.shape[0]
    if 2 * (counters[C_IDS_USED] + incoming) <= capacity:
        return id_table
    counters[C_IDS_USED] = _purge_ids(id_table, counters[C_WINDOW_ROW])
    needed = counters[C_IDS_USED] + incoming
    if 4 * needed <= capacity and (32 * needed >= capacity or capacity == TABLE_CAPACITY_MIN):
        return id_table
    out = np.zeros((_capacity_for(needed, 4), ID_COLUMNS), np.int64)
    copied = _copy_live_ids(id_table, out, counters[C_WINDOW_ROW])
    assert copied == counters[C_IDS_USED]
    return out


@numba.njit(**_NO_REFCOUNTS)
def _copy_live_ids(id_table, out, window_row):
    """Copy the records within the window (row >= window_row) into out; how many. In slot
    order, so that the writes into out run nearly in order too."""
    live = 0
    for slot in range(id_table.shape[0]):
        key = id_table[slot, I_KEY]
        if key != 0 and id_table[slot, I_ROW] >= window_row:
            live += 1
            copy_row(id_table, slot, out, find_slot(out, key))
    return live


@numba.njit(**_NO_REFCOUNTS)
def _pending_live(pending_table, slot, epoch, window):
    if pending_table[slot, P_KEY] == 0:
        return False
    if pending_table[slot, P_STATE] == PENDING_STATE_PENDING:
        return True
    return within_window(epoch, pending_table[slot, P_RESOLVED_EPOCH], window)


@numba.njit(cache=True)
def _room_for_pending(pending_table, counters, incoming, epoch, window):
    """The pending table, rebuilt without transfers resolved past the window if needed."""
    if 2 * (counters[C_PENDING_USED] + incoming) <= pending_table.shape[0]:
        return pending_table
    live = _copy_live_pending(pending_table, pending_table[:0], epoch, window)
    out = np.zeros((_capacity_for(live + incoming, 3), PENDING_COLUMNS), np.int64)
    counters[C_PENDING_USED] = _copy_live_pending(pending_table, out, epoch, window)
    return out


@numba.njit(**_NO_REFCOUNTS)
def _copy_live_pending(pending_table, out, epoch, window):
    """Count the records still pending or resolved within the window; copy them into out
    unless it is empty."""
    live = 0
    for slot in range(pending_table.shape[0]):
        if _pending_live(pending_table, slot, epoch, window):
            live += 1
            if out.shape[0] > 0:
                copy_row(pending_table, slot, out, find_slot(out, pending_table[slot, P_KEY]))
    return live


@numba.njit(cache=True)
def _empty_heap(capacity):
    """The expiry heap's columns (expires_at_us, sequence, key), capacity entries each."""
    return (np.zeros(capacity, np.int64), np.zeros(capacity, np.int64),
            np.zeros(capacity, np.int64))


@numba.njit(cache=True)
def _room_in_heap(heap, pending_table, counters, incoming):
    """The heap with room for incoming entries: stale entries dropped, grown if needed."""
    if counters[C_HEAP_SIZE] + incoming <= len(heap[H_KEY]):
        return heap
    kept = _compact_heap(heap, counters[C_HEAP_SIZE], pending_table)
    out = _empty_heap(2 * (kept + incoming) + TABLE_CAPACITY_MIN)
    for column in range(len(heap)):
        out[column][:kept] = heap[column][:kept]
    counters[C_HEAP_SIZE] = kept
    return out


@numba.njit(**_NO_REFCOUNTS)
def _compact_heap(heap, size, pending_table):
    """Keep the entries of still-pending transfers, in heap order; returns how many."""
    kept = 0
    for k in range(size):
        key = heap[H_KEY][k]
        slot = find_slot(pending_table, key)
        if (pending_table[slot, P_KEY] == key
                and pending_table[slot, P_SEQUENCE] == heap[H_SEQUENCE][k]
                and pending_table[slot, P_STATE] == PENDING_STATE_PENDING):
            heap_move(heap, k, kept)
            kept += 1
    heap_build(heap, kept)
    return kept
