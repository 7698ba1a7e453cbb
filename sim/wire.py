"""The driver <-> shard protocol: call names, payload column layouts and typed answers.

Everything that crosses between the coordinator (sim.engine) and a shard (sim.shard_state,
hosted in-process, behind sim.durability or in a Ray actor) is defined here once:

- the shard's call names, which of them are sequenced (logged, applied once) and the
  outcomes of a sequenced call (APPLIED, DUPLICATE, STALE; READ for the others);
- the column layout of every bulk payload: one contiguous int64 block [rows, columns] per
  payload, written by sim.routing and read by the numba kernels of sim.shard_kernels (numba
  reads these module-level ints as compile-time constants);
- the account-info bits a look-up answers with;
- the records: CommitPayload (an argument), BeginAnswer, CommitAnswer, EvaluateAnswer,
  FinalState (answers) and ShardReply (a hosted shard's envelope around an answer).

Records are dataclasses whose bulk fields stay int64 (or narrower) numpy arrays, so the arena
transport (actors.transport) and the write-ahead log (sim.durability) carry them as raw
blocks; only the few scalars are Python values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# --- calls ------------------------------------------------------------------------------------
BEGIN_EPOCH = "begin_epoch"
EVALUATE = "evaluate"
FINISH = "finish"
FINAL_STATE = "final_state"
# The next epoch's account look-ups, made while the driver finishes this one: accounts never
# change during a run, so the answer is a pure function of the keys (not sequenced, not
# logged; begin_epoch uses it when its keys are the same, else looks up itself).
LOOKUP_AHEAD = "lookup_ahead"
SEQUENCED_CALLS = (BEGIN_EPOCH, EVALUATE, FINISH)  # mutate the shard: numbered, logged, once
SHARD_CALLS = frozenset(SEQUENCED_CALLS + (FINAL_STATE, LOOKUP_AHEAD))

# Outcomes of a call to a hosted shard (sim.durability.DurableShard, actors.shard_actor).
APPLIED = "applied"  # the next call in sequence: applied now
DUPLICATE = "duplicate"  # a repeat of the last call: answered from its cached answer
STALE = "stale"  # an older call: refused, no answer
READ = "read"  # a call that changes nothing (FINAL_STATE): not sequenced
ACCEPTED_OUTCOMES = (APPLIED, DUPLICATE)

# --- transfer fields ---------------------------------------------------------------------------
# The eight transfer fields compared for idempotency, as six int64 columns, in this order, in
# id rows, pending creations and both shard tables; ledger (32 bits), code (16) and flags (16)
# share one column.
(FIELD_DEBIT, FIELD_CREDIT, FIELD_AMOUNT, FIELD_PENDING_ID, FIELD_LEDGER_CODE_FLAGS,
 FIELD_TIMEOUT) = range(6)
FIELD_COUNT = 6
LEDGER_MASK = 0xFFFFFFFF  # the ledger's bits of FIELD_LEDGER_CODE_FLAGS
CODE_SHIFT = 32
FLAGS_SHIFT = 48

# --- payload columns (all int64) ---------------------------------------------------------------
# begin_epoch id rows: [key, 6 fields]
ID_ROW_KEY = 0
ID_ROW_FIELDS = 1
ID_ROW_COLUMNS = ID_ROW_FIELDS + FIELD_COUNT

# evaluate pending-check rows (POST/VOID): [pending_id, debit, credit, ledger, amount, is_post]
CHECK_PENDING_ID, CHECK_DEBIT, CHECK_CREDIT, CHECK_LEDGER, CHECK_AMOUNT, CHECK_IS_POST = range(6)
CHECK_COLUMNS = 6

# evaluate funds rows: [debit account position, amount]
FUNDS_POSITION, FUNDS_AMOUNT = 0, 1
FUNDS_COLUMNS = 2

# evaluate expired-hold rows, one block per side: [account key, amount]
EXPIRED_SIDE_KEY, EXPIRED_SIDE_AMOUNT = 0, 1
EXPIRED_SIDE_COLUMNS = 2

# commit side rows (debit or credit): [account position, posted delta, pending delta, global row]
SIDE_POSITION, SIDE_POSTED_DELTA, SIDE_PENDING_DELTA, SIDE_GLOBAL_ROW = range(4)
SIDE_COLUMNS = 4

# commit pending creations: [key, sim_time_us, 6 fields]
CREATION_KEY, CREATION_SIM_TIME_US = 0, 1
CREATION_FIELDS = 2
CREATION_COLUMNS = CREATION_FIELDS + FIELD_COUNT

# commit resolutions: [pending key, new state]
RESOLUTION_KEY, RESOLUTION_STATE = 0, 1
RESOLUTION_COLUMNS = 2

# begin_epoch answer, holds expired by this epoch's start: [debit key, credit key, amount]
EXPIRED_DEBIT, EXPIRED_CREDIT, EXPIRED_AMOUNT = 0, 1, 2
EXPIRED_COLUMNS = 3

# --- account info (uint16 per looked-up account) -------------------------------------------------
# info = (ledger slot + 1) | ACCOUNT_INFO_FLAGGED when flagged; ACCOUNT_INFO_ABSENT when absent
ACCOUNT_INFO_ABSENT = 0
ACCOUNT_INFO_LEDGER_MASK = 0xFF
ACCOUNT_INFO_FLAGGED = 1 << 8  # debits_must_not_exceed_credits


# --- records -----------------------------------------------------------------------------------
@dataclass
class CommitPayload:
    """One shard's share of an epoch's committed effects (int64 blocks, columns above)."""

    epoch: int  # int64 bit pattern of the uint64 epoch
    debit_rows: np.ndarray  # SIDE_* columns
    credit_rows: np.ndarray  # SIDE_* columns
    pending_rows: np.ndarray  # CREATION_* columns: key, sim_time_us and the 6 field columns
    resolve_rows: np.ndarray  # RESOLUTION_* columns


COMMIT_PAYLOAD_ARRAYS = ("debit_rows", "credit_rows", "pending_rows", "resolve_rows")


@dataclass(frozen=True)
class Overflow:
    """The first committed row that would take a balance past int64: the run ends there."""

    row: int  # global row index
    side: str  # "debit" | "credit"
    column: int  # balance column (sim.shard_kernels DEBITS_PENDING ...)
    account: int  # the account key (int64 bits)


@dataclass
class CommitAnswer:
    """A commit applied (or refused by an overflow): what the epoch-boundary audit reads."""

    overflow: Overflow | None
    sums: np.ndarray | None  # [ledger slot, 4 balance columns, (high, low) int64 halves]
    overdrawn: int | None  # key of the first overdrawn flagged account, None when none


@dataclass
class Lookups:
    """begin_epoch's answer for this epoch's rows on one shard."""

    id_status: np.ndarray  # uint8 per id row
    debit_position: np.ndarray  # int32 per debit key, -1 when absent
    debit_info: np.ndarray  # uint16 account info per debit key
    credit_position: np.ndarray
    credit_info: np.ndarray
    expired: np.ndarray  # EXPIRED_* columns


@dataclass
class BeginAnswer:
    """begin_epoch: the previous epoch's commit (None when none rode on the call) and this
    epoch's look-ups (None when that commit overflowed)."""

    commit: CommitAnswer | None
    lookups: Lookups | None
    busy_s: float = 0.0  # the shard's own time in the call (settle and open), perf_counter
    settle_s: float = 0.0  # of which the previous epoch's commit (settle)
    looked_ahead: bool = False  # the account look-ups came from lookup_ahead
    cpu_s: float = 0.0  # the CPU time of the shard's thread in the call (thread_time)


@dataclass
class EvaluateAnswer:
    pending_status: np.ndarray  # uint8 per pending-check row
    pending_amount: np.ndarray  # int64: the pending amount of each passing row
    funds_status: np.ndarray  # uint8 per funds row
    busy_s: float = 0.0  # the shard's own time in the call
    cpu_s: float = 0.0  # the CPU time of the shard's thread in the call (thread_time)


@dataclass
class FinalState:
    keys: np.ndarray  # int64 account keys, in the shard's account order
    balances: np.ndarray  # [accounts, 4] int64
    sums: np.ndarray  # as CommitAnswer.sums
    bytes_per_account: float
    id_table_bytes: int  # the id table's size, and the ids within the window, when the window
    windowed_ids: int  # held the most ids


@dataclass
class ShardReply:
    """A hosted shard's answer to one call: outcome, the call number it is at, its process."""

    outcome: str  # APPLIED | DUPLICATE | STALE | READ
    seq: int | None
    pid: int
    answer: object  # the call's answer record; None when STALE


def check_accepted(shard_index: int, seq: int | None, outcome: str) -> None:
    """A sequenced call must be applied or answered from cache; anything else is a bug."""
    if seq is not None and outcome not in ACCEPTED_OUTCOMES:
        raise RuntimeError(f"shard {shard_index} answered call {seq} with {outcome!r};"
                           f" expected one of {ACCEPTED_OUTCOMES}")
