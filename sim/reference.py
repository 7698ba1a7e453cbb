"""The single-process reference ledger: LEDGER_SPEC.md written out plainly, the truth.

Every other ledger in the project (the sharded engine, its kernels) is checked against this
one, row for row and balance for balance. It is written for clarity, not speed: plain Python
ints and dicts, one short function per rule, no numpy in the rules themselves.

One epoch, as LEDGER_SPEC.md "Epoch semantics" says:

1. expiry at the epoch's start (`start(e)` = sim_time_us of its first row);
2. the rows split into chains (`LINKED` joins a row to the next; a chain still open at the
   epoch's last row gets `linked_event_chain_open` for every member, ids still recorded);
3. every row of a closed chain is evaluated in row order against the state at the epoch's
   start plus the tentative effects (reservations, post/void marks) of earlier rows of the
   epoch; the first failing check names its status;
4. at the epoch's end each chain commits if all its members passed, in row order.

Strict serial mode (`strict_serial=True`) keeps every rule but commits (or drops) each chain
at the chain's end, so tentative effects last one chain, not one epoch. Expiry still happens
at the epoch's start, and open chains are still judged at the epoch's last row.

Balances are Python ints, so nothing wraps: a commit that would take a field past 2**63-1
raises `BalanceOverflowError` for the first such row in row order (debit account's field
before the credit account's), before that row changes anything.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from sim.audit import ledger_sums
from sim.columns import BALANCE_FIELDS, Accounts, Balances, Transfers
from sim.constants import (
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS,
    ACCOUNTS_MUST_BE_DIFFERENT,
    AMOUNT_MAX,
    CREDIT_ACCOUNT_NOT_FOUND,
    DEBIT_ACCOUNT_NOT_FOUND,
    EXCEEDS_CREDITS,
    EXCEEDS_PENDING_AMOUNT,
    EXISTS,
    EXISTS_WITH_DIFFERENT_FIELDS,
    FLAG_LINKED,
    FLAG_PENDING,
    FLAG_POST_PENDING_TRANSFER,
    FLAG_VOID_PENDING_TRANSFER,
    FLAGS_ARE_MUTUALLY_EXCLUSIVE,
    ID_MUST_NOT_BE_ZERO,
    IDEMPOTENCY_WINDOW_EPOCHS,
    INT64_MAX,
    INVALID_AMOUNT,
    LEDGER_MISMATCH,
    LINKED_EVENT_CHAIN_OPEN,
    LINKED_EVENT_FAILED,
    MICROSECONDS_PER_SECOND,
    OK,
    PENDING_ID_MUST_BE_ZERO,
    PENDING_ID_MUST_NOT_BE_ZERO,
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
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
    TRANSFER_FLAGS_KNOWN,
)
from sim.errors import BalanceOverflowError

# What a row does, once its flags are known to be valid (check 6 passed).
KIND_PLAIN = "plain"
KIND_PENDING = "pending"
KIND_POST = "post"
KIND_VOID = "void"

_EXCLUSIVE_FLAGS = FLAG_PENDING | FLAG_POST_PENDING_TRANSFER | FLAG_VOID_PENDING_TRANSFER


class _Row(NamedTuple):
    """One transfer row as Python ints; `position` is its index inside the epoch's batch."""

    position: int
    id: int
    sim_time_us: int
    debit: int
    credit: int
    amount: int
    ledger: int
    code: int
    flags: int
    pending_id: int
    timeout_s: int

    def idempotency_fields(self) -> tuple[int, ...]:
        """The eight fields `exists` compares (flags include the LINKED bit)."""
        return (
            self.debit,
            self.credit,
            self.amount,
            self.ledger,
            self.code,
            self.flags,
            self.pending_id,
            self.timeout_s,
        )

    def kind(self) -> str:
        if self.flags & FLAG_PENDING:
            return KIND_PENDING
        if self.flags & FLAG_POST_PENDING_TRANSFER:
            return KIND_POST
        if self.flags & FLAG_VOID_PENDING_TRANSFER:
            return KIND_VOID
        return KIND_PLAIN


@dataclass(slots=True)
class _Account:
    id: int
    ledger: int
    flags: int
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0

    def must_not_overdraw(self) -> bool:
        return bool(self.flags & ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS)


@dataclass(slots=True)
class _IdRecord:
    """The first row with an id: its eight fields and the epoch it came in."""

    fields: tuple[int, ...]
    epoch_first: int


@dataclass(slots=True, eq=False)
class _PendingTransfer:
    """A committed PENDING transfer; `resolved_epoch` is set once posted, voided or expired."""

    id: int
    debit: int
    credit: int
    amount: int
    ledger: int
    sim_time_us: int
    timeout_s: int
    fields: tuple[int, ...]
    state: int = PENDING_STATE_PENDING
    resolved_epoch: int | None = None

    def expires_at_us(self) -> int | None:
        if self.timeout_s == 0:
            return None
        return self.sim_time_us + self.timeout_s * MICROSECONDS_PER_SECOND


@dataclass
class _Tentative:
    """Effects of passing rows not yet committed: for the epoch, or (strict) for the chain."""

    reserved: dict[int, int] = field(default_factory=dict)  # debit account id -> amount
    marks: dict[int, int] = field(default_factory=dict)  # pending id -> POSTED / VOIDED
    targets: dict[int, _PendingTransfer] = field(default_factory=dict)  # row index -> pending


class ReferenceLedger:
    """The ledger of LEDGER_SPEC.md, applied one epoch at a time."""

    def __init__(
        self,
        accounts: Accounts,
        *,
        window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS,
        strict_serial: bool = False,
    ):
        if window_epochs < 0:
            raise ValueError(f"window_epochs(={window_epochs}) must be >= 0.")
        self.window_epochs = int(window_epochs)
        self.strict_serial = bool(strict_serial)
        self._account_order: list[int] = [int(a) for a in accounts.id.tolist()]
        self._accounts: dict[int, _Account] = {}
        for account_id, ledger, flags in zip(
            self._account_order, accounts.ledger.tolist(), accounts.flags.tolist()
        ):
            if account_id == 0 or account_id in self._accounts:
                raise ValueError(f"account id {account_id} is zero or not unique.")
            self._accounts[account_id] = _Account(account_id, int(ledger), int(flags))
        self._ids: dict[int, _IdRecord] = {}
        self._pending: dict[int, _PendingTransfer] = {}
        self._expiry_heap: list[tuple[int, int, _PendingTransfer]] = []
        self._expiry_sequence = 0
        self._last_epoch: int | None = None
        self._last_sweep_epoch: int | None = None

    # --- one epoch --------------------------------------------------------------------------

    def apply_epoch(self, batch: Transfers, row_offset: int = 0) -> np.ndarray:
        """Apply the rows of ONE epoch (all rows share batch.epoch[0]); return uint16 statuses,
        one per row. row_offset = global index of batch row 0 in the whole workload (used in
        error messages)."""
        if len(batch) == 0:
            return np.zeros(0, STATUS_DTYPE)
        epoch = self._begin_epoch(batch)
        rows = _rows_of(batch)
        status = [OK] * len(rows)
        tentative = _Tentative()
        closed_chains: list[list[_Row]] = []
        for start, stop, is_open in _chain_bounds([row.flags for row in rows]):
            chain = rows[start:stop]
            if is_open:
                self._judge_open_chain(chain, epoch, status)
                continue
            for row in chain:
                status[row.position] = self._evaluate(row, epoch, tentative)
            if self.strict_serial:
                self._settle_chain(chain, status, tentative, epoch, row_offset)
                tentative = _Tentative()
            else:
                closed_chains.append(chain)
        for chain in closed_chains:
            self._settle_chain(chain, status, tentative, epoch, row_offset)
        result = np.asarray(status, dtype=STATUS_DTYPE)
        assert len(result) == len(batch)
        return result

    def _begin_epoch(self, batch: Transfers) -> int:
        """Check the batch is one later epoch, forget what is out of window, expire holds."""
        epoch = int(batch.epoch[0])
        if not np.all(batch.epoch == batch.epoch[0]):
            raise ValueError(f"apply_epoch got rows of several epochs (first is {epoch}).")
        if self._last_epoch is not None and epoch <= self._last_epoch:
            raise ValueError(f"epoch {epoch} must come after epoch {self._last_epoch}.")
        self._last_epoch = epoch
        self._sweep_if_due(epoch)
        self._expire(epoch, int(batch.sim_time_us[0]))
        return epoch

    def _judge_open_chain(self, chain: list[_Row], epoch: int, status: list[int]) -> None:
        """Every member gets chain_open; ids are still recorded, nothing else is evaluated."""
        for row in chain:
            if row.id != 0:
                self._check_idempotency(row, epoch)
            status[row.position] = LINKED_EVENT_CHAIN_OPEN

    # --- evaluation: the checks in LEDGER_SPEC.md order -------------------------------------

    def _evaluate(self, row: _Row, epoch: int, tentative: _Tentative) -> int:
        """The row's status; a passing row takes its tentative effect."""
        if row.id == 0:
            return ID_MUST_NOT_BE_ZERO
        status = self._check_idempotency(row, epoch)
        if status == OK:
            status = _check_shape(row)
        if status == OK:
            status = self._check_accounts(row)
        if status != OK:
            return status
        kind = row.kind()
        if kind in (KIND_POST, KIND_VOID):
            status, pending = self._check_pending(row, kind, epoch, tentative)
            if status == OK:
                tentative.marks[pending.id] = (
                    PENDING_STATE_POSTED if kind == KIND_POST else PENDING_STATE_VOIDED
                )
                tentative.targets[row.position] = pending
            return status
        status = self._check_funds(row, tentative)
        if status == OK:
            tentative.reserved[row.debit] = tentative.reserved.get(row.debit, 0) + row.amount
        return status

    def _check_idempotency(self, row: _Row, epoch: int) -> int:
        """exists / exists_with_different_fields, or OK after recording the row's id."""
        assert row.id != 0
        record = self._ids.get(row.id)
        if record is not None and epoch - record.epoch_first <= self.window_epochs:
            seen = record.fields
        else:
            pending = self._pending.get(row.id)
            if pending is not None and pending.state == PENDING_STATE_PENDING:
                seen = pending.fields  # a still-pending transfer keeps its id taken
            else:
                self._ids[row.id] = _IdRecord(row.idempotency_fields(), epoch)
                return OK
        return EXISTS if seen == row.idempotency_fields() else EXISTS_WITH_DIFFERENT_FIELDS

    def _check_accounts(self, row: _Row) -> int:
        debit = self._accounts.get(row.debit)
        if debit is None:
            return DEBIT_ACCOUNT_NOT_FOUND
        credit = self._accounts.get(row.credit)
        if credit is None:
            return CREDIT_ACCOUNT_NOT_FOUND
        if row.ledger != debit.ledger or row.ledger != credit.ledger:
            return LEDGER_MISMATCH
        return OK

    def _check_pending(
        self, row: _Row, kind: str, epoch: int, tentative: _Tentative
    ) -> tuple[int, _PendingTransfer | None]:
        """Checks 15..20 of a POST or VOID row; the pending transfer it refers to."""
        pending = self._visible_pending(row.pending_id, epoch)
        if pending is None:
            return PENDING_TRANSFER_NOT_FOUND, None
        if (row.debit, row.credit, row.ledger) != (pending.debit, pending.credit, pending.ledger):
            return PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS, None
        mark = tentative.marks.get(pending.id)
        if pending.state == PENDING_STATE_POSTED or mark == PENDING_STATE_POSTED:
            return PENDING_TRANSFER_ALREADY_POSTED, None
        if pending.state == PENDING_STATE_VOIDED or mark == PENDING_STATE_VOIDED:
            return PENDING_TRANSFER_ALREADY_VOIDED, None
        if pending.state == PENDING_STATE_EXPIRED:
            return PENDING_TRANSFER_EXPIRED, None
        assert pending.state == PENDING_STATE_PENDING
        if kind == KIND_POST and row.amount > pending.amount:
            return EXCEEDS_PENDING_AMOUNT, None
        return OK, pending

    def _visible_pending(self, pending_id: int, epoch: int) -> _PendingTransfer | None:
        """The committed pending transfer, unless resolved more than the window ago.

        In epoch mode nothing commits before the epoch's end, so a pending transfer of this
        epoch is not visible; in strict mode one committed by an earlier chain is."""
        pending = self._pending.get(pending_id)
        if pending is None:
            return None
        if pending.state != PENDING_STATE_PENDING:
            if epoch - pending.resolved_epoch > self.window_epochs:
                return None
        return pending

    def _check_funds(self, row: _Row, tentative: _Tentative) -> int:
        debit = self._accounts[row.debit]
        if not debit.must_not_overdraw():
            return OK
        reserved = tentative.reserved.get(row.debit, 0)
        spent = debit.debits_posted + debit.debits_pending + reserved + row.amount
        return EXCEEDS_CREDITS if spent > debit.credits_posted else OK

    # --- commit -----------------------------------------------------------------------------

    def _settle_chain(
        self,
        chain: list[_Row],
        status: list[int],
        tentative: _Tentative,
        epoch: int,
        row_offset: int,
    ) -> None:
        """Commit the chain if every member passed; else passed members get linked_failed."""
        if all(status[row.position] == OK for row in chain):
            for row in chain:
                self._commit(row, tentative.targets.get(row.position), epoch, row_offset)
            return
        for row in chain:
            if status[row.position] == OK:
                status[row.position] = LINKED_EVENT_FAILED

    def _commit(
        self, row: _Row, target: _PendingTransfer | None, epoch: int, row_offset: int
    ) -> None:
        kind = row.kind()
        if kind == KIND_PLAIN:
            increments = [(row.debit, "debits_posted", row.amount),
                          (row.credit, "credits_posted", row.amount)]
            self._add_checked(increments, row, epoch, row_offset)
        elif kind == KIND_PENDING:
            increments = [(row.debit, "debits_pending", row.amount),
                          (row.credit, "credits_pending", row.amount)]
            self._add_checked(increments, row, epoch, row_offset)
            self._create_pending(row)
        else:
            assert target is not None
            assert target.state == PENDING_STATE_PENDING
            if kind == KIND_POST:
                increments = [(target.debit, "debits_posted", row.amount),
                              (target.credit, "credits_posted", row.amount)]
                self._check_overflow(increments, row, epoch, row_offset)
                self._resolve(target, PENDING_STATE_POSTED, epoch)
                self._add(increments)
            else:
                self._resolve(target, PENDING_STATE_VOIDED, epoch)

    def _check_overflow(self, increments, row: _Row, epoch: int, row_offset: int) -> None:
        """Raise for the first (account, field) that would pass 2**63-1, in the given order."""
        for account_id, field_name, amount in increments:
            assert amount > 0
            if getattr(self._accounts[account_id], field_name) + amount > INT64_MAX:
                raise BalanceOverflowError(
                    epoch, row_offset + row.position, row.id, account_id, field_name
                )

    def _add_checked(self, increments, row: _Row, epoch: int, row_offset: int) -> None:
        self._check_overflow(increments, row, epoch, row_offset)
        self._add(increments)

    def _add(self, increments) -> None:
        for account_id, field_name, amount in increments:
            account = self._accounts[account_id]
            setattr(account, field_name, getattr(account, field_name) + amount)

    def _create_pending(self, row: _Row) -> None:
        """A newly committed pending transfer; it replaces a resolved one with the same id."""
        previous = self._pending.get(row.id)
        assert previous is None or previous.state != PENDING_STATE_PENDING
        pending = _PendingTransfer(
            id=row.id,
            debit=row.debit,
            credit=row.credit,
            amount=row.amount,
            ledger=row.ledger,
            sim_time_us=row.sim_time_us,
            timeout_s=row.timeout_s,
            fields=row.idempotency_fields(),
        )
        self._pending[row.id] = pending
        expires_at_us = pending.expires_at_us()
        if expires_at_us is not None:
            self._expiry_sequence += 1
            heapq.heappush(self._expiry_heap, (expires_at_us, self._expiry_sequence, pending))

    def _resolve(self, pending: _PendingTransfer, state: int, epoch: int) -> None:
        """Posted, voided or expired: both accounts' pending fields drop by its amount."""
        assert pending.state == PENDING_STATE_PENDING
        debit = self._accounts[pending.debit]
        credit = self._accounts[pending.credit]
        debit.debits_pending -= pending.amount
        credit.credits_pending -= pending.amount
        assert debit.debits_pending >= 0
        assert credit.credits_pending >= 0
        pending.state = state
        pending.resolved_epoch = epoch

    # --- epoch start: expiry and forgetting ---------------------------------------------------

    def _expire(self, epoch: int, start_us: int) -> None:
        """Every still-pending hold with sim_time_us + timeout <= start(e) expires."""
        heap = self._expiry_heap
        while heap and heap[0][0] <= start_us:
            _, _, pending = heapq.heappop(heap)
            if pending.state == PENDING_STATE_PENDING:
                self._resolve(pending, PENDING_STATE_EXPIRED, epoch)

    def _sweep_if_due(self, epoch: int) -> None:
        """Drop id records and resolved pending transfers past the window (memory only:
        every lookup checks the window itself, so results do not change)."""
        if self._last_sweep_epoch is None:
            self._last_sweep_epoch = epoch
        if epoch - self._last_sweep_epoch <= self.window_epochs:
            return
        self._last_sweep_epoch = epoch
        window = self.window_epochs
        self._ids = {i: r for i, r in self._ids.items() if epoch - r.epoch_first <= window}
        self._pending = {
            i: p
            for i, p in self._pending.items()
            if p.state == PENDING_STATE_PENDING or epoch - p.resolved_epoch <= window
        }
        self._expiry_heap = [e for e in self._expiry_heap if e[2].state == PENDING_STATE_PENDING]
        heapq.heapify(self._expiry_heap)

    # --- state --------------------------------------------------------------------------------

    def balances(self) -> Balances:
        """One row per account, in the accounts' given order."""
        accounts = [self._accounts[i] for i in self._account_order]
        columns = {
            name: np.array([getattr(a, name) for a in accounts], dtype=np.int64)
            for name in BALANCE_FIELDS
        }
        return Balances.from_columns(
            id=np.array(self._account_order, dtype=np.uint64),
            ledger=np.array([a.ledger for a in accounts], dtype=np.uint32),
            **columns,
        )

    def ledger_sums(self) -> dict[int, tuple[int, int, int, int]]:
        """ledger -> (sum debits_pending, debits_posted, credits_pending, credits_posted), the
        way every ledger's sums are made (sim.audit)."""
        return ledger_sums(self.balances())

    def check_invariants(self) -> list[str]:
        """Violations of the spec's invariants (and of the reference's own bookkeeping)."""
        violations = []
        for ledger, (d_pending, d_posted, c_pending, c_posted) in self.ledger_sums().items():
            if d_posted != c_posted:
                violations.append(
                    f"ledger {ledger}: sum debits_posted {d_posted} != credits_posted {c_posted}"
                )
            if d_pending != c_pending:
                violations.append(
                    f"ledger {ledger}: sum debits_pending {d_pending}"
                    f" != credits_pending {c_pending}"
                )
        for account in self._accounts.values():
            spent = account.debits_posted + account.debits_pending
            if account.must_not_overdraw() and spent > account.credits_posted:
                violations.append(
                    f"account {account.id}: debits_posted + debits_pending {spent}"
                    f" > credits_posted {account.credits_posted}"
                )
        violations.extend(self._pending_bookkeeping_violations())
        return violations

    def _pending_bookkeeping_violations(self) -> list[str]:
        """Each account's pending fields equal the sum of its still-pending holds."""
        held_debit: dict[int, int] = {}
        held_credit: dict[int, int] = {}
        for pending in self._pending.values():
            if pending.state == PENDING_STATE_PENDING:
                held_debit[pending.debit] = held_debit.get(pending.debit, 0) + pending.amount
                held_credit[pending.credit] = held_credit.get(pending.credit, 0) + pending.amount
        violations = []
        for account in self._accounts.values():
            expected = (held_debit.get(account.id, 0), held_credit.get(account.id, 0))
            if (account.debits_pending, account.credits_pending) != expected:
                violations.append(
                    f"account {account.id}: pending fields"
                    f" {(account.debits_pending, account.credits_pending)}"
                    f" != still-pending holds {expected}"
                )
        return violations


# --- helpers -------------------------------------------------------------------------------------


def _rows_of(batch: Transfers) -> list[_Row]:
    columns = (
        batch.id.tolist(),
        batch.sim_time_us.tolist(),
        batch.debit_account.tolist(),
        batch.credit_account.tolist(),
        batch.amount.tolist(),
        batch.ledger.tolist(),
        batch.code.tolist(),
        batch.flags.tolist(),
        batch.pending_id.tolist(),
        batch.timeout_s.tolist(),
    )
    return [_Row(position, *values) for position, values in enumerate(zip(*columns))]


def _chain_bounds(flags: list[int]) -> list[tuple[int, int, bool]]:
    """[start, stop) of each chain in row order, and whether it is left open at the end."""
    bounds = []
    start = 0
    for index, row_flags in enumerate(flags):
        if not row_flags & FLAG_LINKED:
            bounds.append((start, index + 1, False))
            start = index + 1
    if start < len(flags):
        bounds.append((start, len(flags), True))
    return bounds


def _check_shape(row: _Row) -> int:
    """Checks 6..11: flags, pending_id, timeout, accounts distinct, amount."""
    if row.flags & ~TRANSFER_FLAGS_KNOWN or (row.flags & _EXCLUSIVE_FLAGS).bit_count() > 1:
        return FLAGS_ARE_MUTUALLY_EXCLUSIVE
    kind = row.kind()
    refers_to_pending = kind in (KIND_POST, KIND_VOID)
    if not refers_to_pending and row.pending_id != 0:
        return PENDING_ID_MUST_BE_ZERO
    if refers_to_pending and row.pending_id == 0:
        return PENDING_ID_MUST_NOT_BE_ZERO
    if kind != KIND_PENDING and row.timeout_s != 0:
        return TIMEOUT_RESERVED_FOR_PENDING_TRANSFER
    if row.debit == row.credit:
        return ACCOUNTS_MUST_BE_DIFFERENT
    if not _amount_valid(kind, row.amount):
        return INVALID_AMOUNT
    return OK


def _amount_valid(kind: str, amount: int) -> bool:
    if kind == KIND_VOID:
        return amount == 0
    if kind == KIND_POST:
        return amount > 0
    return 0 < amount <= AMOUNT_MAX


# --- whole workloads -----------------------------------------------------------------------------


@dataclass
class ReferenceResult:
    status: np.ndarray  # uint16, one per input row, in input order
    balances: Balances


def run_reference(
    accounts: Accounts,
    transfers: Transfers,
    *,
    strict_serial: bool = False,
    window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS,
) -> ReferenceResult:
    """Run a whole workload through the reference ledger, epoch by epoch."""
    ledger = ReferenceLedger(accounts, window_epochs=window_epochs, strict_serial=strict_serial)
    status = np.zeros(len(transfers), dtype=STATUS_DTYPE)
    for start, stop in transfers.epoch_bounds():
        status[start:stop] = ledger.apply_epoch(transfers.slice(start, stop), row_offset=start)
    return ReferenceResult(status=status, balances=ledger.balances())
