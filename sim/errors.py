"""The errors a run can stop with, each mapped to the exit status LEDGER_SPEC.md gives it."""

from __future__ import annotations


class XpayError(Exception):
    """Base of every error xpay reports to a user as one line."""

    exit_status = 1


class InputRefused(XpayError):
    """An input file (or config) breaks a rule; it is refused whole and nothing is applied."""

    exit_status = 2


class BalanceOverflowError(XpayError):
    """A balance field would pass 2**63-1; the run stops, it never wraps."""

    def __init__(self, epoch: int, row: int, transfer_id: int, account_id: int, field: str):
        self.epoch = int(epoch)
        self.row = int(row)
        self.transfer_id = int(transfer_id)
        self.account_id = int(account_id)
        self.field = field
        super().__init__(
            f"balance overflow: epoch {self.epoch}, row {self.row} (transfer id {self.transfer_id}):"
            f" account {self.account_id} {field} would pass 2**63-1; the run stopped"
        )

    def key(self) -> tuple[int, int, int, str]:
        """What two ledgers must agree on when both stop on the same overflow."""
        return (self.epoch, self.row, self.account_id, self.field)


class InvariantViolation(XpayError):
    """An invariant of LEDGER_SPEC.md failed at an epoch boundary."""
