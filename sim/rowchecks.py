"""Row-local checks, chain structure and chain resolution: the driver's per-epoch kernels.

Everything here reads only the rows of one epoch (no ledger state), so it runs on the driver,
vectorised in numba, while the shards hold the state. See LEDGER_SPEC.md, "Epoch semantics".
"""

from __future__ import annotations

import numba
import numpy as np

from sim.constants import (
    ACCOUNTS_MUST_BE_DIFFERENT,
    AMOUNT_MAX,
    CREDIT_ACCOUNT_NOT_FOUND,
    DEBIT_ACCOUNT_NOT_FOUND,
    FLAG_LINKED,
    FLAG_PENDING,
    FLAG_POST_PENDING_TRANSFER,
    FLAG_VOID_PENDING_TRANSFER,
    FLAGS_ARE_MUTUALLY_EXCLUSIVE,
    ID_MUST_NOT_BE_ZERO,
    INVALID_AMOUNT,
    LEDGER_MISMATCH,
    LINKED_EVENT_CHAIN_OPEN,
    LINKED_EVENT_FAILED,
    OK,
    PENDING_ID_MUST_BE_ZERO,
    PENDING_ID_MUST_NOT_BE_ZERO,
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
    TRANSFER_FLAGS_KNOWN,
)
from sim.wire import ACCOUNT_INFO_ABSENT, ACCOUNT_INFO_LEDGER_MASK

KIND_PLAIN = 0
KIND_PENDING = 1
KIND_POST = 2
KIND_VOID = 3
KIND_INVALID = 4  # flags_are_mutually_exclusive: never evaluated past check 6


@numba.njit(inline="always", cache=True)
def transfer_kind(flags):
    unknown = (flags & ~TRANSFER_FLAGS_KNOWN) != 0
    pending = (flags & FLAG_PENDING) != 0
    post = (flags & FLAG_POST_PENDING_TRANSFER) != 0
    void = (flags & FLAG_VOID_PENDING_TRANSFER) != 0
    if unknown or np.int64(pending) + np.int64(post) + np.int64(void) > 1:
        return KIND_INVALID
    if pending:
        return KIND_PENDING
    if post:
        return KIND_POST
    if void:
        return KIND_VOID
    return KIND_PLAIN


@numba.njit(inline="always", cache=True)
def local_status(kind, pending_id, timeout_s, debit, credit, amount):
    """Checks 6..11, which read only the row itself."""
    if kind == KIND_INVALID:
        return FLAGS_ARE_MUTUALLY_EXCLUSIVE
    resolving = kind == KIND_POST or kind == KIND_VOID
    if not resolving and pending_id != 0:
        return PENDING_ID_MUST_BE_ZERO
    if resolving and pending_id == 0:
        return PENDING_ID_MUST_NOT_BE_ZERO
    if kind != KIND_PENDING and timeout_s != 0:
        return TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if debit == credit:
        return ACCOUNTS_MUST_BE_DIFFERENT
    if kind == KIND_VOID:
        return INVALID_AMOUNT if amount != 0 else OK
    if amount <= 0:
        return INVALID_AMOUNT
    if kind != KIND_POST and amount > AMOUNT_MAX:
        return INVALID_AMOUNT
    return OK


@numba.njit(cache=True)
def row_kinds_and_local_status(flags, pending_id, timeout_s, debit, credit, amount):
    """(kind int8, local status uint8) of every row; local status covers checks 6..11."""
    n = len(flags)
    kind = np.empty(n, np.int8)
    local = np.empty(n, np.uint8)
    for i in range(n):
        k = transfer_kind(flags[i])
        kind[i] = k
        local[i] = local_status(k, pending_id[i], timeout_s[i], debit[i], credit[i], amount[i])
    return kind, local


@numba.njit(cache=True)
def chain_bounds(flags):
    """(chain_end, open): chain_end[i] is the index of the last row of row i's chain.

    A chain left open at the epoch's last row has open[i] = True for every member.
    """
    n = len(flags)
    chain_end = np.empty(n, np.int64)
    is_open = np.zeros(n, np.bool_)
    end = n - 1
    open_tail = n > 0 and (flags[n - 1] & FLAG_LINKED) != 0
    for i in range(n - 1, -1, -1):
        if i < n - 1 and (flags[i] & FLAG_LINKED) == 0:
            end = i
            open_tail = False
        chain_end[i] = end
        is_open[i] = open_tail
    return chain_end, is_open


@numba.njit(cache=True)
def combine_pre_status(ids, id_status, local, debit_info, credit_info, ledger_info, is_open):
    """Status after checks 3..14 (0 = still passing); open-chain members get chain_open.

    *_info: account info from the shards (sim.wire ACCOUNT_INFO_*: (ledger slot + 1) | flagged);
    ledger_info: the row's ledger as (slot + 1), 0 when no account has that ledger.
    """
    n = len(ids)
    out = np.empty(n, np.uint8)
    for i in range(n):
        if is_open[i]:
            s = LINKED_EVENT_CHAIN_OPEN
        elif ids[i] == 0:
            s = ID_MUST_NOT_BE_ZERO
        elif id_status[i] != 0:
            s = id_status[i]
        elif local[i] != 0:
            s = local[i]
        elif debit_info[i] == ACCOUNT_INFO_ABSENT:
            s = DEBIT_ACCOUNT_NOT_FOUND
        elif credit_info[i] == ACCOUNT_INFO_ABSENT:
            s = CREDIT_ACCOUNT_NOT_FOUND
        elif (ledger_info[i] != (debit_info[i] & ACCOUNT_INFO_LEDGER_MASK)
              or ledger_info[i] != (credit_info[i] & ACCOUNT_INFO_LEDGER_MASK)):
            s = LEDGER_MISMATCH
        else:
            s = OK
        out[i] = s
    return out


@numba.njit(cache=True)
def resolve_chains(status, chain_end, is_open):
    """Final statuses: passed members of a failed chain get linked_event_failed.

    Returns (status, committed mask). Open chains were already marked and never commit.
    """
    n = len(status)
    committed = np.zeros(n, np.bool_)
    i = 0
    while i < n:
        end = chain_end[i]
        if is_open[i]:
            i = end + 1
            continue
        all_ok = True
        for j in range(i, end + 1):
            if status[j] != OK:
                all_ok = False
                break
        for j in range(i, end + 1):
            if all_ok:
                committed[j] = True
            elif status[j] == OK:
                status[j] = LINKED_EVENT_FAILED
        i = end + 1
    return status, committed


@numba.njit(cache=True)
def ledger_slots(ledger, values):
    """(slot + 1) of each ledger among the sorted values, 0 when absent; the last hit is
    remembered (rows of an epoch mostly share a few ledgers)."""
    out = np.zeros(len(ledger), np.uint16)
    if len(values) == 0:
        return out
    last_ledger, last_info = values[0], np.uint16(1)
    for i in range(len(ledger)):
        v = ledger[i]
        if v != last_ledger:
            j = np.searchsorted(values, v)
            last_ledger = v
            last_info = np.uint16(j + 1) if j < len(values) and values[j] == v else np.uint16(0)
        out[i] = last_info
    return out
