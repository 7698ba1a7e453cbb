"""The auditor: double entry, overdraft and per-ledger sums, checked one way for every ledger.

LEDGER_SPEC.md's invariants are checked here, and only here:

- at every epoch boundary, from the shards' running per-ledger sums and the overdraft test of
  every debited account (``boundary_audit``, called by sim.engine);
- on the final balances, which must also agree with the running sums (``final_invariants``);
- per-ledger sums, whatever their source (a shard's running sums, a set of balances, the
  reference ledger's accounts), are exact Python ints made from (high, low) int64 halves by
  ``ledger_sums_from_halves``: a ledger's total can pass int64, a Python int cannot wrap.

The audit time series (one row per boundary and ledger) is kept as ``audit_row`` dicts; it is
written to ``audit.parquet`` (``write_audit``) and into the driver's journal as an int64 block
(``audit_to_array`` / ``audit_from_array``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from sim.columns import Accounts, Balances
from sim.constants import ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS, LEDGER_NAMES

# The four balance fields, in the order of a shard's balance columns and of every sum tuple.
SUM_FIELDS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")
HALF_BITS = 32  # running sums: (value >> 32, value & 0xFFFFFFFF), summed separately
HALF_MASK = (1 << HALF_BITS) - 1
DOUBLE_ENTRY, OVERDRAFT = "double_entry", "overdraft"


# --- per-ledger sums -----------------------------------------------------------------------------
def ledger_sums_from_halves(ledger_values: np.ndarray,
                            halves: list[np.ndarray]) -> dict[int, tuple]:
    """ledger -> the four sums as exact Python ints, from [ledger slot, 4, (high, low)] int64
    arrays (one per shard, or one for a set of balances), added together."""
    total = {}
    for slot, ledger in enumerate(np.asarray(ledger_values).tolist()):
        sums = []
        for column in range(len(SUM_FIELDS)):
            sums.append(sum((int(h[slot, column, 0]) << HALF_BITS) + int(h[slot, column, 1])
                            for h in halves))
        total[int(ledger)] = tuple(sums)
    return total


def halves_of_balances(ledger_values: np.ndarray, ledger: np.ndarray,
                       columns: list[np.ndarray]) -> np.ndarray:
    """[ledger slot, 4, (high, low)] halves of the four int64 balance columns, per ledger:
    the form a shard keeps its running sums in (each half sum stays far inside int64)."""
    out = np.zeros((len(ledger_values), len(SUM_FIELDS), 2), np.int64)
    for slot, value in enumerate(np.asarray(ledger_values).tolist()):
        on = ledger == value
        for c, column in enumerate(columns):
            values = np.asarray(column, np.int64)[on]
            out[slot, c, 0] = np.sum(values >> HALF_BITS)
            out[slot, c, 1] = np.sum(values & HALF_MASK)
    return out


def ledger_sums(balances: Balances) -> dict[int, tuple]:
    """Per-ledger sums of a set of balances (every ledger that has an account)."""
    ledger_values = np.unique(balances.ledger)
    columns = [getattr(balances, name) for name in SUM_FIELDS]
    halves = halves_of_balances(ledger_values, balances.ledger, columns)
    return ledger_sums_from_halves(ledger_values, [halves])


def ledger_name(ledger: int) -> str:
    name = LEDGER_NAMES.get(int(ledger))
    return f"{ledger} ({name})" if name else str(ledger)


# --- records -------------------------------------------------------------------------------------
def audit_row(epoch: int, ledger: int, sums: tuple, balanced: bool, overdraft_held: bool) -> dict:
    """One ledger at one epoch boundary: the four sums (exact Python ints) and the verdicts
    (overdraft_held is for the whole boundary: every debited account, all ledgers)."""
    row = {"epoch": int(epoch), "ledger": int(ledger)}
    row.update(zip(SUM_FIELDS, sums))
    row.update({DOUBLE_ENTRY: balanced, OVERDRAFT: overdraft_held})
    return row


def violation(invariant: str, epoch: int | None, message: str) -> dict:
    """One broken invariant at one epoch boundary (epoch None: the final balances)."""
    return {"invariant": invariant, "epoch": epoch, "message": message}


# --- checks --------------------------------------------------------------------------------------
def boundary_audit(epoch: int, sums: dict[int, tuple],
                   overdrawn: list[int]) -> tuple[list[dict], list[dict]]:
    """(audit rows, violations) of one epoch boundary: double entry on every ledger's running
    sums; overdraft from the keys of the overdrawn accounts the shards reported."""
    rows, found = [], []
    for ledger, (dp, dpo, cp, cpo) in sums.items():
        balanced = dpo == cpo and dp == cp
        rows.append(audit_row(epoch, ledger, (dp, dpo, cp, cpo), balanced, not overdrawn))
        if not balanced:
            found.append(violation(
                DOUBLE_ENTRY, epoch,
                f"double entry broken on ledger {ledger_name(ledger)} (debits_posted {dpo} vs"
                f" credits_posted {cpo}, debits_pending {dp} vs credits_pending {cp})"))
    for account in overdrawn:
        found.append(violation(OVERDRAFT, epoch, f"account {account}: debits exceed its credits"))
    return rows, found


def final_invariants(accounts: Accounts, balances: Balances,
                     running_sums: dict[int, tuple]) -> list[dict]:
    """Double entry and overdraft on the final balances, and agreement with the running sums."""
    problems = []
    recomputed = ledger_sums(balances)
    for ledger, (dp, dpo, cp, cpo) in recomputed.items():
        if dpo != cpo or dp != cp:
            message = f"final balances: double entry broken on ledger {ledger_name(ledger)}"
            problems.append(violation(DOUBLE_ENTRY, None, message))
    if recomputed != {int(k): tuple(v) for k, v in running_sums.items()}:
        message = "final balances disagree with the shards' running sums"
        problems.append(violation(DOUBLE_ENTRY, None, message))
    flagged = (accounts.flags & ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS) != 0
    over = flagged & (balances.debits_posted > balances.credits_posted - balances.debits_pending)
    if over.any():
        first = int(np.flatnonzero(over)[0])
        message = (f"final balances: {int(over.sum())} accounts overdrawn,"
                   f" first id {int(accounts.id[first])}")
        problems.append(violation(OVERDRAFT, None, message))
    return problems


# --- audit.parquet -------------------------------------------------------------------------------
AUDIT_SCHEMA = pa.schema([
    ("epoch", pa.uint64()), ("ledger", pa.uint32()),
    *[(name, pa.decimal128(38, 0)) for name in SUM_FIELDS],
    (DOUBLE_ENTRY, pa.bool_()), (OVERDRAFT, pa.bool_()),
])


def write_audit(path: Path, audit: list[dict]) -> None:
    """The invariant time series: per epoch boundary and ledger, exact sums (decimal, since a
    ledger's total can pass int64) and both verdicts."""
    import pyarrow.parquet as pq

    columns = {name: [row[name] for row in audit] for name in AUDIT_SCHEMA.names}
    table = pa.table(columns, schema=AUDIT_SCHEMA)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(table, tmp, compression="zstd")
    tmp.replace(path)


# --- the journal's int64 encoding --------------------------------------------------------------
JOURNAL_SUM_SPLIT = 62  # exact sums (may pass int64) kept as (high, low) int64 halves
AUDIT_EPOCH, AUDIT_LEDGER, AUDIT_SUMS = 0, 1, 2  # then (high, low) per sum field
AUDIT_DOUBLE_ENTRY = AUDIT_SUMS + 2 * len(SUM_FIELDS)
AUDIT_OVERDRAFT = AUDIT_DOUBLE_ENTRY + 1
AUDIT_COLUMNS = AUDIT_OVERDRAFT + 1


def audit_to_array(audit: list[dict]) -> np.ndarray:
    """Audit rows as an int64 block [rows, AUDIT_COLUMNS] (the epoch as its int64 bits)."""
    out = np.zeros((len(audit), AUDIT_COLUMNS), np.int64)
    mask = (1 << JOURNAL_SUM_SPLIT) - 1
    for i, row in enumerate(audit):
        out[i, AUDIT_EPOCH] = np.uint64(row["epoch"]).view(np.int64)
        out[i, AUDIT_LEDGER] = row["ledger"]
        for j, name in enumerate(SUM_FIELDS):
            out[i, AUDIT_SUMS + 2 * j] = row[name] >> JOURNAL_SUM_SPLIT
            out[i, AUDIT_SUMS + 2 * j + 1] = row[name] & mask
        out[i, AUDIT_DOUBLE_ENTRY] = int(row[DOUBLE_ENTRY])
        out[i, AUDIT_OVERDRAFT] = int(row[OVERDRAFT])
    return out


def audit_from_array(array: np.ndarray) -> list[dict]:
    """The audit rows back from audit_to_array's block, exactly."""
    rows = []
    for r in array.tolist():
        sums = [(r[AUDIT_SUMS + 2 * j] << JOURNAL_SUM_SPLIT) + r[AUDIT_SUMS + 2 * j + 1]
                for j in range(len(SUM_FIELDS))]
        epoch = int(np.int64(r[AUDIT_EPOCH]).view(np.uint64))
        rows.append(audit_row(epoch, r[AUDIT_LEDGER], tuple(sums), bool(r[AUDIT_DOUBLE_ENTRY]),
                              bool(r[AUDIT_OVERDRAFT])))
    return rows
