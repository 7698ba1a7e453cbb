"""The engine's peers for `xpay bench`, run on the same rows and checked against the serial ledger.

Each peer processes the plain-transfer workload (`workloads.plain`: plain transfers, a funds
check on flagged debit accounts, nothing else) one transfer after another, so each is strict
serial and its statuses and posted balances must equal `sim.serial.run_serial(...,
strict_serial=True)` on the same rows. Only the processing is timed (not loading accounts).

- ``bare_kernel``: the memory-bound limit: one numba loop over dense account indices (ids
  mapped before timing), funds check and balance update only: no id look-ups, no
  idempotency, no pending transfers;
- ``python_dict``: a dict of balances, one transfer at a time, in pure Python;
- ``sqlite_per_txn`` / ``sqlite_batched``: SQLite (WAL, synchronous=NORMAL, a file in a
  temporary folder), `UPDATE ... WHERE credits - debits >= amount` per transfer, one
  transaction per transfer or one per epoch;
- ``duckdb_batched``, ``postgres_per_txn``, ``postgres_batched``: listed so that the table
  says why they did not run (not installed here: no pinned driver), never silently absent.

The first `setup_rows` rows (the workload's funding) are applied untimed; the timed part is
the rows after them, for the slow peers only the first `slice_rows` of those (rows/s from that
slice; their note says so). The comparison covers every row a peer applied.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numba
import numpy as np

from sim.columns import Accounts, Transfers
from sim.constants import ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, EXCEEDS_CREDITS, FLAG_PENDING, OK

PEERS = ("bare_kernel", "python_dict", "sqlite_per_txn", "sqlite_batched", "duckdb_batched",
         "postgres_per_txn", "postgres_batched")
SLICED = ("python_dict", "sqlite_per_txn", "sqlite_batched")
SQLITE_PER_TXN_ROWS_MAX = 100_000  # ~15k transactions/s here: the slice is cut to this


@dataclass
class PeerResult:
    name: str
    rows: int
    seconds: float | None  # None: did not run
    semantics: str  # "strict_serial"
    note: str = ""
    status: np.ndarray | None = None
    debits_posted: np.ndarray | None = None  # in account order
    credits_posted: np.ndarray | None = None
    equal: bool | None = None  # against sim.serial on the same rows; None: not run


def check_plain(transfers: Transfers) -> None:
    """The peers implement plain transfers only: refuse anything else, naming the row."""
    bad = np.flatnonzero(transfers.flags != 0)
    if len(bad):
        raise ValueError(f"row {int(bad[0])}: flags {int(transfers.flags[bad[0]])}; the peers run"
                         " plain transfers only (flags 0)")
    assert not (transfers.flags & FLAG_PENDING).any()


def dense(accounts: Accounts, transfers: Transfers) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(debit index, credit index, flagged per account): ids mapped to account positions."""
    order = np.argsort(accounts.id)
    sorted_ids = accounts.id[order]
    def index(ids):  # noqa: E306
        at = np.searchsorted(sorted_ids, ids)
        if (at >= len(sorted_ids)).any() or (sorted_ids[np.minimum(at, len(sorted_ids) - 1)] != ids).any():
            raise ValueError("a transfer names an account that does not exist; the peers need"
                             " every account to exist")
        return order[at].astype(np.int64)
    flagged = (accounts.flags & ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) != 0
    return index(transfers.debit_account), index(transfers.credit_account), flagged


@numba.njit(cache=True)
def bare_transfers(debit, credit, amount, flagged, debits, credits, status):
    """Funds check and update, one transfer after another (strict serial)."""
    for i in range(len(debit)):
        d = debit[i]
        a = amount[i]
        if flagged[d] and credits[d] - debits[d] < a:
            status[i] = EXCEEDS_CREDITS
            continue
        debits[d] += a
        credits[credit[i]] += a
        status[i] = OK


def bare_kernel(accounts: Accounts, transfers: Transfers, setup_rows: int) -> PeerResult:
    debit, credit, flagged = dense(accounts, transfers)
    amount = transfers.amount.astype(np.int64)
    n = len(accounts)
    debits, credits = np.zeros(n, np.int64), np.zeros(n, np.int64)
    status = np.zeros(len(transfers), np.uint16)
    s = setup_rows
    bare_transfers(debit[:s], credit[:s], amount[:s], flagged, debits, credits, status[:s])  # untimed
    started = time.perf_counter()
    bare_transfers(debit[s:], credit[s:], amount[s:], flagged, debits, credits, status[s:])
    seconds = time.perf_counter() - started
    return PeerResult("bare_kernel", len(transfers) - s, seconds, "strict_serial",
                      "dense indices, funds check and update only", status, debits, credits)


def python_dict(accounts: Accounts, transfers: Transfers, setup_rows: int) -> PeerResult:
    ids = accounts.id.tolist()
    flagged = dict(zip(ids, ((accounts.flags & ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) != 0).tolist()))
    debits = dict.fromkeys(ids, 0)
    credits = dict.fromkeys(ids, 0)
    rows = list(zip(transfers.debit_account.tolist(), transfers.credit_account.tolist(),
                    transfers.amount.tolist()))
    status = []

    def apply(part):
        for d, c, a in part:
            if flagged[d] and credits[d] - debits[d] < a:
                status.append(EXCEEDS_CREDITS)
                continue
            debits[d] += a
            credits[c] += a
            status.append(OK)

    apply(rows[:setup_rows])  # untimed
    started = time.perf_counter()
    apply(rows[setup_rows:])
    seconds = time.perf_counter() - started
    return PeerResult("python_dict", len(transfers) - setup_rows, seconds, "strict_serial", "",
                      np.array(status, np.uint16), np.array([debits[i] for i in ids], np.int64),
                      np.array([credits[i] for i in ids], np.int64))


def _sqlite(accounts: Accounts, transfers: Transfers, setup_rows: int, per_epoch: bool) -> PeerResult:
    name = "sqlite_batched" if per_epoch else "sqlite_per_txn"
    key = accounts.id.view(np.int64).tolist()  # SQLite integers are signed 64-bit
    with tempfile.TemporaryDirectory(prefix="xpay-sqlite-") as folder:
        db = sqlite3.connect(Path(folder) / "ledger.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, flagged INTEGER NOT NULL,"
                   " debits INTEGER NOT NULL, credits INTEGER NOT NULL)")
        flagged = ((accounts.flags & ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) != 0).astype(int).tolist()
        db.execute("BEGIN")
        db.executemany("INSERT INTO account VALUES (?, ?, 0, 0)", zip(key, flagged))
        db.execute("COMMIT")
        rows = list(zip(transfers.debit_account.view(np.int64).tolist(),
                        transfers.credit_account.view(np.int64).tolist(),
                        transfers.amount.tolist()))
        setup = [(0, setup_rows)] if setup_rows else []  # one untimed transaction
        if per_epoch:
            bounds = [(max(a, setup_rows), b) for a, b in transfers.epoch_bounds() if b > setup_rows]
        else:
            bounds = [(i, i + 1) for i in range(setup_rows, len(rows))]
        debit_sql = ("UPDATE account SET debits = debits + ? WHERE id = ?"
                     " AND (flagged = 0 OR credits - debits >= ?)")
        credit_sql = "UPDATE account SET credits = credits + ? WHERE id = ?"
        status = np.zeros(len(rows), np.uint16)
        cursor = db.cursor()

        def apply(spans):
            for first, stop in spans:
                cursor.execute("BEGIN")
                for i in range(first, stop):
                    d, c, a = rows[i]
                    cursor.execute(debit_sql, (a, d, a))
                    if cursor.rowcount == 1:
                        cursor.execute(credit_sql, (a, c))
                    else:
                        status[i] = EXCEEDS_CREDITS
                cursor.execute("COMMIT")

        apply(setup)
        started = time.perf_counter()
        apply(bounds)
        seconds = time.perf_counter() - started
        balance = dict(((i, (dr, cr)) for i, dr, cr in db.execute("SELECT id, debits, credits FROM account")))
        db.close()
    debits = np.array([balance[i][0] for i in key], np.int64)
    credits = np.array([balance[i][1] for i in key], np.int64)
    note = "WAL, synchronous=NORMAL, " + ("one transaction per epoch" if per_epoch else "one transaction per transfer")
    return PeerResult(name, len(rows) - setup_rows, seconds, "strict_serial", note, status, debits, credits)


def sqlite_per_txn(accounts, transfers, setup_rows):
    return _sqlite(accounts, transfers, setup_rows, per_epoch=False)


def sqlite_batched(accounts, transfers, setup_rows):
    return _sqlite(accounts, transfers, setup_rows, per_epoch=True)


def _not_here(name: str, why: str) -> Callable:
    def run(accounts, transfers, setup_rows) -> PeerResult:
        return PeerResult(name, 0, None, "strict_serial", f"skipped: {why}")
    return run


RUNNERS = {
    "bare_kernel": bare_kernel,
    "python_dict": python_dict,
    "sqlite_per_txn": sqlite_per_txn,
    "sqlite_batched": sqlite_batched,
    "duckdb_batched": _not_here("duckdb_batched", "DuckDB is not a dependency of xpay-sim yet"),
    "postgres_per_txn": _not_here("postgres_per_txn", "no PostgreSQL driver is pinned yet"),
    "postgres_batched": _not_here("postgres_batched", "no PostgreSQL driver is pinned yet"),
}


def run_peers(accounts: Accounts, transfers: Transfers, names, *, setup_rows: int = 0,
              slice_rows: int | None = None,
              progress: Callable[[str], None] | None = None) -> list[PeerResult]:
    """Each named peer on the rows: the first setup_rows untimed, then the rest (the slow
    peers: the next slice_rows), checked against the strict-serial ledger on the same rows."""
    setup_rows = min(int(setup_rows), len(transfers))
    from sim.serial import run_serial

    check_plain(transfers)
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
    references: dict[int, object] = {}
    out = []
    for name in names:
        rows = transfers
        if name in SLICED and slice_rows is not None and setup_rows + slice_rows < len(transfers):
            cut = min(slice_rows, SQLITE_PER_TXN_ROWS_MAX) if name == "sqlite_per_txn" else slice_rows
            rows = transfers.slice(0, setup_rows + cut)
        if progress is not None and name in RUNNERS:
            progress(f"peer {name}: {len(rows) - setup_rows:,} rows timed after {setup_rows:,} set-up rows")
        result = RUNNERS[name](accounts, rows, setup_rows)
        if result.seconds is not None:
            if len(rows) not in references:
                references[len(rows)] = run_serial(accounts, rows, strict_serial=True)
            reference = references[len(rows)]
            result.equal = bool(np.array_equal(result.status, reference.status)
                                and np.array_equal(result.debits_posted, reference.balances.debits_posted)
                                and np.array_equal(result.credits_posted, reference.balances.credits_posted))
            if len(rows) < len(transfers):
                result.note = (result.note + "; " if result.note else "") + \
                    f"a slice of {len(rows) - setup_rows:,} rows (rows/s from it)"
        out.append(result)
    return out
