"""In-memory column sets: accounts, transfers and balances as numpy arrays of the spec's dtypes.

Every module passes these, never per-row Python objects. The dtypes are those of the Arrow
schemas in LEDGER_SPEC.md (see sim/files.py for the on-disk side).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from sim.constants import FLAG_PENDING

ACCOUNT_DTYPES = {"id": np.uint64, "ledger": np.uint32, "flags": np.uint16}

TRANSFER_DTYPES = {
    "id": np.uint64,
    "epoch": np.uint64,
    "sim_time_us": np.int64,
    "debit_account": np.uint64,
    "credit_account": np.uint64,
    "amount": np.int64,
    "ledger": np.uint32,
    "code": np.uint16,
    "flags": np.uint16,
    "pending_id": np.uint64,
    "timeout_s": np.uint32,
}

BALANCE_DTYPES = {
    "id": np.uint64,
    "ledger": np.uint32,
    "debits_pending": np.int64,
    "debits_posted": np.int64,
    "credits_pending": np.int64,
    "credits_posted": np.int64,
}

RESULT_DTYPES = {"id": np.uint64, "status": np.uint16, "epoch": np.uint64}


def _coerce(cls, dtypes: dict, values: dict) -> dict:
    """Arrays of exactly the spec's dtypes, all of one length (a programming error otherwise)."""
    out = {}
    length = None
    for name, dtype in dtypes.items():
        array = np.ascontiguousarray(values[name], dtype=dtype)
        assert array.ndim == 1, f"{cls.__name__}.{name} must be one-dimensional"
        if length is None:
            length = len(array)
        assert len(array) == length, f"{cls.__name__}.{name} has {len(array)} rows, not {length}"
        out[name] = array
    return out


@dataclass(frozen=True)
class Accounts:
    id: np.ndarray
    ledger: np.ndarray
    flags: np.ndarray

    @classmethod
    def from_columns(cls, **columns) -> "Accounts":
        return cls(**_coerce(cls, ACCOUNT_DTYPES, columns))

    def __len__(self) -> int:
        return len(self.id)

    def columns(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Transfers:
    id: np.ndarray
    epoch: np.ndarray
    sim_time_us: np.ndarray
    debit_account: np.ndarray
    credit_account: np.ndarray
    amount: np.ndarray
    ledger: np.ndarray
    code: np.ndarray
    flags: np.ndarray
    pending_id: np.ndarray
    timeout_s: np.ndarray

    @classmethod
    def from_columns(cls, **columns) -> "Transfers":
        return cls(**_coerce(cls, TRANSFER_DTYPES, columns))

    @classmethod
    def empty(cls) -> "Transfers":
        return cls.from_columns(**{n: np.zeros(0, d) for n, d in TRANSFER_DTYPES.items()})

    def __len__(self) -> int:
        return len(self.id)

    def columns(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def slice(self, start: int, stop: int) -> "Transfers":
        """Rows [start, stop) as views (no copy)."""
        return Transfers(**{n: a[start:stop] for n, a in self.columns().items()})

    def take(self, index: np.ndarray) -> "Transfers":
        return Transfers(**{n: a[index] for n, a in self.columns().items()})

    @staticmethod
    def concat(parts: list["Transfers"]) -> "Transfers":
        if not parts:
            return Transfers.empty()
        return Transfers(
            **{n: np.concatenate([getattr(p, n) for p in parts]) for n in TRANSFER_DTYPES}
        )

    def epoch_bounds(self) -> list[tuple[int, int]]:
        """[start, stop) row ranges of each epoch, in file order (epochs are non-decreasing)."""
        if len(self) == 0:
            return []
        change = np.flatnonzero(self.epoch[1:] != self.epoch[:-1]) + 1
        starts = np.concatenate(([0], change))
        stops = np.concatenate((change, [len(self)]))
        return list(zip(starts.tolist(), stops.tolist()))


@dataclass(frozen=True)
class Balances:
    id: np.ndarray
    ledger: np.ndarray
    debits_pending: np.ndarray
    debits_posted: np.ndarray
    credits_pending: np.ndarray
    credits_posted: np.ndarray

    @classmethod
    def from_columns(cls, **columns) -> "Balances":
        return cls(**_coerce(cls, BALANCE_DTYPES, columns))

    @classmethod
    def zeros(cls, accounts: Accounts) -> "Balances":
        n = len(accounts)
        zero = {name: np.zeros(n, np.int64) for name in BALANCE_FIELDS}
        return cls.from_columns(id=accounts.id, ledger=accounts.ledger, **zero)

    def __len__(self) -> int:
        return len(self.id)

    def columns(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def equals(self, other: "Balances") -> bool:
        return all(np.array_equal(a, other.columns()[n]) for n, a in self.columns().items())


BALANCE_FIELDS = ("debits_pending", "debits_posted", "credits_pending", "credits_posted")


@dataclass(frozen=True)
class WorkloadFacts:
    """What a run must know of its workload before the first epoch (sim.files.WorkloadReader
    finds it in one pass over three columns of a file)."""

    rows: int
    epoch_count: int
    widest_epoch: int  # rows of the largest epoch
    pending_rows: int  # rows with the PENDING flag
    first_us: int | None  # sim_time_us of the first and last rows (None when empty)
    last_us: int | None

    @classmethod
    def of(cls, transfers: Transfers) -> "WorkloadFacts":
        bounds = transfers.epoch_bounds()
        n = len(transfers)
        return cls(n, len(bounds), max((stop - start for start, stop in bounds), default=0),
                   int(np.count_nonzero(transfers.flags & FLAG_PENDING)),
                   int(transfers.sim_time_us[0]) if n else None, int(transfers.sim_time_us[-1]) if n else None)
