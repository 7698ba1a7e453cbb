"""The reference ledger against LEDGER_SPEC.md: one example per status code, then the epoch,
chain, expiry, window, strict-serial and overflow rules, then invariants on a random run."""

from __future__ import annotations

import numpy as np
import pytest

from sim.columns import TRANSFER_DTYPES, Accounts, Transfers
from sim.constants import (
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS as GUARDED,
    AMOUNT_MAX,
    FLAG_LINKED as LINKED,
    FLAG_PENDING as PENDING,
    FLAG_POST_PENDING_TRANSFER as POST,
    FLAG_VOID_PENDING_TRANSFER as VOID,
    INT64_MAX,
    LEDGER_EUR as EUR,
    LEDGER_USD as USD,
    MICROSECONDS_PER_SECOND as SECOND_US,
    STATUS,
)
from sim.errors import BalanceOverflowError
from sim.reference import ReferenceLedger, run_reference

# Account ids are arbitrary uint64, on purpose not 1..N (ALICE needs the top bit).
SYSTEM, SYSTEM_2, ALICE, BOB, CAROL, EUR_SYSTEM, EUR_USER = (
    1000, 1001, 2**63 + 5, 7, 42, 500, 501
)
ACCOUNTS = Accounts.from_columns(
    id=[SYSTEM, SYSTEM_2, ALICE, BOB, CAROL, EUR_SYSTEM, EUR_USER],
    ledger=[USD, USD, USD, USD, USD, EUR, EUR],
    flags=[0, 0, GUARDED, GUARDED, GUARDED, 0, GUARDED],
)
S = STATUS  # name -> code


# --- builders ----------------------------------------------------------------------------------


def t(id, debit, credit, amount, *, ledger=USD, code=0, flags=0, pending_id=0, timeout_s=0,
      time_us=None) -> dict:
    """One transfer row (epoch and, unless given, sim_time_us are set by `batch`)."""
    return dict(id=id, debit_account=debit, credit_account=credit, amount=amount, ledger=ledger,
                code=code, flags=flags, pending_id=pending_id, timeout_s=timeout_s,
                sim_time_us=time_us)


def batch(epoch: int, rows: list[dict]) -> Transfers:
    """Rows of one epoch; a row without time_us arrives at epoch seconds."""
    columns = {name: [] for name in TRANSFER_DTYPES}
    for row in rows:
        for name in TRANSFER_DTYPES:
            if name == "epoch":
                columns[name].append(epoch)
            elif name == "sim_time_us" and row[name] is None:
                columns[name].append(epoch * SECOND_US)
            else:
                columns[name].append(row[name])
    return Transfers.from_columns(**columns)


def workload(epochs: dict[int, list[dict]]) -> Transfers:
    return Transfers.concat([batch(e, rows) for e, rows in sorted(epochs.items())])


def ledger(window=3, strict=False) -> ReferenceLedger:
    return ReferenceLedger(ACCOUNTS, window_epochs=window, strict_serial=strict)


def apply(ref: ReferenceLedger, epoch: int, *rows: dict) -> list[str]:
    """Apply one epoch; the status names, one per row."""
    status = ref.apply_epoch(batch(epoch, list(rows)))
    assert status.dtype == np.uint16
    return [STATUS_NAMES[s] for s in status.tolist()]


STATUS_NAMES = {code: name for name, code in S.items()}


def bal(ref: ReferenceLedger, account: int) -> tuple[int, int, int, int]:
    """(debits_pending, debits_posted, credits_pending, credits_posted) of one account."""
    b = ref.balances()
    (i,) = np.flatnonzero(b.id == np.uint64(account))
    return (int(b.debits_pending[i]), int(b.debits_posted[i]), int(b.credits_pending[i]),
            int(b.credits_posted[i]))


def funded(window=3, strict=False, alice=100, bob=0) -> ReferenceLedger:
    """A ledger whose epoch 1 gave ALICE and BOB credits (spendable from epoch 2)."""
    ref = ledger(window, strict)
    rows = [t(9001, SYSTEM, ALICE, alice)] + ([t(9002, SYSTEM, BOB, bob)] if bob else [])
    assert set(apply(ref, 1, *rows)) == {"ok"}
    return ref


def held(ref, epoch, id, amount=40, debit=SYSTEM, credit=ALICE, timeout_s=0, time_us=None):
    """Commit a pending transfer in `epoch`."""
    row = t(id, debit, credit, amount, flags=PENDING, timeout_s=timeout_s, time_us=time_us)
    assert apply(ref, epoch, row) == ["ok"]


NO_MOVE = (0, 0, 0, 0)


# --- one test per status code ---------------------------------------------------------------------


def test_0_ok_moves_money():
    ref = ledger()
    assert apply(ref, 1, t(1, SYSTEM, ALICE, 100)) == ["ok"]
    assert bal(ref, SYSTEM) == (0, 100, 0, 0)
    assert bal(ref, ALICE) == (0, 0, 0, 100)
    assert ref.check_invariants() == []


def test_1_linked_event_failed():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 10, flags=LINKED), t(2, BOB, CAROL, 5)]
    assert apply(ref, 1, *rows) == ["linked_event_failed", "exceeds_credits"]
    assert bal(ref, ALICE) == NO_MOVE
    assert bal(ref, SYSTEM) == NO_MOVE


def test_2_linked_event_chain_open_still_records_ids():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 10), t(2, SYSTEM, BOB, 5, flags=LINKED),
            t(3, SYSTEM, BOB, -1, flags=LINKED | 0x100)]
    assert apply(ref, 1, *rows) == ["ok", "linked_event_chain_open", "linked_event_chain_open"]
    assert bal(ref, BOB) == NO_MOVE
    assert apply(ref, 2, t(2, SYSTEM, BOB, 5, flags=LINKED), t(3, SYSTEM, BOB, 6)) == [
        "exists", "exists_with_different_fields"]


def test_3_id_must_not_be_zero():
    ref = ledger()
    assert apply(ref, 1, t(0, SYSTEM, ALICE, 10), t(0, SYSTEM, ALICE, 10)) == [
        "id_must_not_be_zero", "id_must_not_be_zero"]
    assert bal(ref, ALICE) == NO_MOVE


def test_4_exists_applies_nothing():
    ref = ledger()
    assert apply(ref, 1, t(1, SYSTEM, ALICE, 10), t(1, SYSTEM, ALICE, 10)) == ["ok", "exists"]
    assert apply(ref, 2, t(1, SYSTEM, ALICE, 10)) == ["exists"]
    assert bal(ref, ALICE) == (0, 0, 0, 10)


def test_5_exists_with_different_fields():
    ref = ledger(window=100)
    assert apply(ref, 1, t(1, SYSTEM, ALICE, 10)) == ["ok"]
    for changed in (t(1, SYSTEM, ALICE, 11), t(1, SYSTEM, BOB, 10), t(1, SYSTEM, ALICE, 10, code=1),
                    t(1, SYSTEM, ALICE, 10, flags=PENDING)):
        assert apply(ref, ref._last_epoch + 1, changed) == ["exists_with_different_fields"]
    assert bal(ref, ALICE) == (0, 0, 0, 10)
    assert bal(ref, BOB) == NO_MOVE


def test_6_flags_are_mutually_exclusive():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 10, flags=PENDING | POST), t(2, SYSTEM, ALICE, 0,
            flags=POST | VOID, pending_id=9), t(3, SYSTEM, ALICE, 10, flags=1 << 4),
            t(4, SYSTEM, ALICE, 10, flags=1 << 15)]
    assert apply(ref, 1, *rows) == ["flags_are_mutually_exclusive"] * 4
    assert bal(ref, ALICE) == NO_MOVE


def test_7_pending_id_must_be_zero():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 10, pending_id=5), t(2, SYSTEM, ALICE, 10, flags=PENDING,
                                                         pending_id=5)]
    assert apply(ref, 1, *rows) == ["pending_id_must_be_zero"] * 2


def test_8_pending_id_must_not_be_zero():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 10, flags=POST), t(2, SYSTEM, ALICE, 0, flags=VOID)]
    assert apply(ref, 1, *rows) == ["pending_id_must_not_be_zero"] * 2


def test_9_timeout_reserved_for_pending_transfer():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 10, timeout_s=5), t(2, SYSTEM, ALICE, 0, flags=VOID,
                                                     pending_id=3, timeout_s=5),
            t(3, SYSTEM, ALICE, 10, flags=PENDING, timeout_s=5)]
    assert apply(ref, 1, *rows) == ["timeout_reserved_for_pending_transfer"] * 2 + ["ok"]


def test_10_accounts_must_be_different():
    ref = ledger()
    assert apply(ref, 1, t(1, ALICE, ALICE, 10)) == ["accounts_must_be_different"]


def test_11_invalid_amount():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 0), t(2, SYSTEM, ALICE, -5), t(3, SYSTEM, ALICE, AMOUNT_MAX + 1),
            t(4, SYSTEM, ALICE, 0, flags=PENDING), t(5, SYSTEM, ALICE, 0, flags=POST, pending_id=9),
            t(6, SYSTEM, ALICE, 1, flags=VOID, pending_id=9), t(7, SYSTEM, ALICE, AMOUNT_MAX)]
    assert apply(ref, 1, *rows) == ["invalid_amount"] * 6 + ["ok"]
    assert bal(ref, ALICE) == (0, 0, 0, AMOUNT_MAX)


def test_12_debit_account_not_found():
    ref = ledger()
    assert apply(ref, 1, t(1, 99, 98, 10), t(2, 99, ALICE, 10)) == ["debit_account_not_found"] * 2


def test_13_credit_account_not_found():
    ref = ledger()
    assert apply(ref, 1, t(1, SYSTEM, 98, 10)) == ["credit_account_not_found"]


def test_14_ledger_mismatch():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 10, ledger=EUR), t(2, EUR_SYSTEM, ALICE, 10, ledger=EUR),
            t(3, EUR_SYSTEM, ALICE, 10, ledger=USD), t(4, EUR_SYSTEM, EUR_USER, 10, ledger=EUR)]
    assert apply(ref, 1, *rows) == ["ledger_mismatch"] * 3 + ["ok"]


def test_15_pending_transfer_not_found():
    ref = ledger()
    rows = [t(1, SYSTEM, ALICE, 10, flags=PENDING), t(2, SYSTEM, ALICE, 10, flags=POST,
                                                        pending_id=1),
            t(3, SYSTEM, ALICE, 0, flags=VOID, pending_id=77)]
    # A pending transfer of this epoch is not visible before the epoch commits.
    assert apply(ref, 1, *rows) == ["ok"] + ["pending_transfer_not_found"] * 2
    assert apply(ref, 2, t(4, SYSTEM, ALICE, 10, flags=POST, pending_id=1)) == ["ok"]
    # A plain transfer is not a pending one.
    assert apply(ref, 3, t(5, SYSTEM, ALICE, 10), t(6, SYSTEM, ALICE, 0, flags=VOID,
                                                     pending_id=3)) == ["ok",
                                                                       "pending_transfer_not_found"]


def test_16_pending_transfer_has_different_accounts():
    ref = ledger()
    held(ref, 1, 10, amount=40, debit=SYSTEM, credit=ALICE)
    rows = [t(1, SYSTEM, BOB, 40, flags=POST, pending_id=10),
            t(2, SYSTEM_2, ALICE, 0, flags=VOID, pending_id=10),
            t(3, ALICE, SYSTEM, 40, flags=POST, pending_id=10)]
    assert apply(ref, 2, *rows) == ["pending_transfer_has_different_accounts"] * 3
    assert bal(ref, ALICE) == (0, 0, 40, 0)


def test_17_pending_transfer_already_posted():
    ref = ledger()
    held(ref, 1, 10, amount=40)
    rows = [t(1, SYSTEM, ALICE, 30, flags=POST, pending_id=10),
            t(2, SYSTEM, ALICE, 30, flags=POST, pending_id=10),
            t(3, SYSTEM, ALICE, 0, flags=VOID, pending_id=10)]
    assert apply(ref, 2, *rows) == ["ok", "pending_transfer_already_posted",
                                    "pending_transfer_already_posted"]
    assert apply(ref, 3, t(4, SYSTEM, ALICE, 0, flags=VOID, pending_id=10)) == [
        "pending_transfer_already_posted"]
    assert bal(ref, SYSTEM) == (0, 30, 0, 0)
    assert bal(ref, ALICE) == (0, 0, 0, 30)


def test_18_pending_transfer_already_voided():
    ref = ledger()
    held(ref, 1, 10, amount=40)
    rows = [t(1, SYSTEM, ALICE, 0, flags=VOID, pending_id=10),
            t(2, SYSTEM, ALICE, 30, flags=POST, pending_id=10)]
    assert apply(ref, 2, *rows) == ["ok", "pending_transfer_already_voided"]
    assert apply(ref, 3, t(3, SYSTEM, ALICE, 30, flags=POST, pending_id=10)) == [
        "pending_transfer_already_voided"]
    assert bal(ref, SYSTEM) == NO_MOVE
    assert bal(ref, ALICE) == NO_MOVE


def test_19_pending_transfer_expired():
    ref = ledger()
    held(ref, 1, 10, amount=40, timeout_s=5, time_us=1 * SECOND_US)
    assert bal(ref, ALICE) == (0, 0, 40, 0)
    post = t(1, SYSTEM, ALICE, 40, flags=POST, pending_id=10, time_us=6 * SECOND_US)
    assert apply(ref, 2, post) == ["pending_transfer_expired"]
    assert bal(ref, ALICE) == NO_MOVE
    assert bal(ref, SYSTEM) == NO_MOVE


def test_20_exceeds_pending_amount():
    ref = ledger()
    held(ref, 1, 10, amount=40)
    rows = [t(1, SYSTEM, ALICE, 41, flags=POST, pending_id=10),
            t(2, SYSTEM, ALICE, 40, flags=POST, pending_id=10)]
    assert apply(ref, 2, *rows) == ["exceeds_pending_amount", "ok"]
    assert bal(ref, ALICE) == (0, 0, 0, 40)


def test_21_exceeds_credits():
    ref = funded(alice=100)
    rows = [t(1, ALICE, BOB, 101), t(2, ALICE, BOB, 60, flags=PENDING), t(3, ALICE, BOB, 40),
            t(4, ALICE, BOB, 1)]
    assert apply(ref, 2, *rows) == ["exceeds_credits", "ok", "ok", "exceeds_credits"]
    assert bal(ref, ALICE) == (60, 40, 0, 100)
    # Pending debits count against funds in later epochs too; system accounts are never checked.
    assert apply(ref, 3, t(5, ALICE, BOB, 1), t(6, SYSTEM, BOB, 10**9)) == ["exceeds_credits", "ok"]


# --- chains -----------------------------------------------------------------------------------


def test_chain_commits_when_every_member_passes():
    ref = funded(alice=100)
    rows = [t(1, ALICE, SYSTEM, 100, flags=LINKED), t(2, EUR_SYSTEM, EUR_USER, 90, ledger=EUR)]
    assert apply(ref, 2, *rows) == ["ok", "ok"]
    assert bal(ref, ALICE) == (0, 100, 0, 100)
    assert bal(ref, EUR_USER) == (0, 0, 0, 90)


def test_failed_chain_applies_nothing_and_members_keep_their_codes():
    ref = funded(alice=100)
    rows = [t(1, SYSTEM, BOB, 5, flags=LINKED), t(2, ALICE, CAROL, 500, flags=LINKED),
            t(3, SYSTEM, CAROL, 0, flags=LINKED), t(4, SYSTEM, CAROL, 5), t(5, SYSTEM, CAROL, 7)]
    assert apply(ref, 2, *rows) == ["linked_event_failed", "exceeds_credits", "invalid_amount",
                                    "linked_event_failed", "ok"]
    assert bal(ref, BOB) == NO_MOVE
    assert bal(ref, CAROL) == (0, 0, 0, 7)


def test_open_chain_gets_no_reservation():
    ref = funded(alice=100)
    rows = [t(1, ALICE, BOB, 100), t(2, ALICE, BOB, 100, flags=LINKED)]
    assert apply(ref, 2, *rows) == ["ok", "linked_event_chain_open"]
    rows = [t(3, ALICE, BOB, 100, flags=LINKED), t(4, CAROL, BOB, 1, flags=LINKED)]
    ref = funded(alice=100)
    assert apply(ref, 2, *rows) == ["linked_event_chain_open"] * 2
    assert apply(ref, 3, t(5, ALICE, BOB, 100)) == ["ok"]


def test_failed_chain_reservation_blocks_later_rows_of_the_epoch():
    ref = funded(alice=100)
    rows = [t(1, ALICE, BOB, 80, flags=LINKED), t(2, BOB, CAROL, 5), t(3, ALICE, CAROL, 30)]
    assert apply(ref, 2, *rows) == ["linked_event_failed", "exceeds_credits", "exceeds_credits"]
    assert bal(ref, ALICE) == (0, 0, 0, 100)
    assert apply(ref, 3, t(4, ALICE, CAROL, 30)) == ["ok"]


def test_failed_chain_post_mark_blocks_later_posts_of_the_epoch():
    ref = ledger()
    held(ref, 1, 10, amount=40)
    rows = [t(1, SYSTEM, ALICE, 40, flags=POST | LINKED, pending_id=10), t(2, BOB, CAROL, 1),
            t(3, SYSTEM, ALICE, 0, flags=VOID, pending_id=10)]
    assert apply(ref, 2, *rows) == ["linked_event_failed", "exceeds_credits",
                                    "pending_transfer_already_posted"]
    assert bal(ref, ALICE) == (0, 0, 40, 0)
    assert apply(ref, 3, t(4, SYSTEM, ALICE, 0, flags=VOID, pending_id=10)) == ["ok"]
    assert bal(ref, ALICE) == NO_MOVE


def test_exists_compares_the_linked_bit():
    ref = ledger()
    assert apply(ref, 1, t(1, SYSTEM, ALICE, 5, flags=LINKED), t(2, SYSTEM, BOB, 5)) == ["ok"] * 2
    assert apply(ref, 2, t(1, SYSTEM, ALICE, 5)) == ["exists_with_different_fields"]


def test_a_failing_first_row_still_records_its_id():
    ref = ledger()
    assert apply(ref, 1, t(1, BOB, CAROL, 5), t(2, SYSTEM, 98, 5)) == [
        "exceeds_credits", "credit_account_not_found"]
    assert apply(ref, 2, t(1, BOB, CAROL, 5), t(2, SYSTEM, BOB, 5)) == [
        "exists", "exists_with_different_fields"]
    assert bal(ref, BOB) == NO_MOVE


def test_credits_are_spendable_only_from_the_next_epoch():
    ref = ledger()
    assert apply(ref, 1, t(1, SYSTEM, ALICE, 100), t(2, ALICE, BOB, 50)) == ["ok",
                                                                             "exceeds_credits"]
    assert apply(ref, 2, t(3, ALICE, BOB, 50)) == ["ok"]
    assert bal(ref, ALICE) == (0, 50, 0, 100)


# --- expiry ------------------------------------------------------------------------------------


@pytest.mark.parametrize("start_s, expected", [(10.999999, "ok"), (11, "pending_transfer_expired")])
def test_expiry_at_the_boundary_is_inclusive(start_s, expected):
    ref = ledger()
    held(ref, 1, 10, amount=40, timeout_s=10, time_us=1 * SECOND_US)
    start_us = round(start_s * SECOND_US)
    rows = [t(1, SYSTEM, BOB, 1, time_us=start_us),
            t(2, SYSTEM, ALICE, 0, flags=VOID, pending_id=10, time_us=start_us + 5 * SECOND_US)]
    assert apply(ref, 2, *rows) == ["ok", expected]
    assert bal(ref, ALICE) == NO_MOVE
    assert ref.check_invariants() == []


def test_expiry_releases_funds_at_the_epoch_start():
    ref = funded(alice=100)
    held(ref, 2, 10, amount=100, debit=ALICE, credit=BOB, timeout_s=3, time_us=2 * SECOND_US)
    assert apply(ref, 3, t(1, ALICE, BOB, 1, time_us=4 * SECOND_US)) == ["exceeds_credits"]
    assert apply(ref, 4, t(2, ALICE, BOB, 100, time_us=5 * SECOND_US)) == ["ok"]
    assert bal(ref, ALICE) == (0, 100, 0, 100)
    assert bal(ref, BOB) == (0, 0, 0, 100)


def test_timeout_zero_never_expires():
    ref = ledger()
    held(ref, 1, 10, amount=40, timeout_s=0)
    assert apply(ref, 2, t(1, SYSTEM, ALICE, 40, flags=POST, pending_id=10,
                           time_us=10**15)) == ["ok"]


def test_expired_pending_is_remembered_for_the_window():
    ref = ledger(window=3)
    held(ref, 1, 10, amount=40, timeout_s=1, time_us=1 * SECOND_US)
    assert apply(ref, 2, t(1, SYSTEM, BOB, 1, time_us=2 * SECOND_US)) == ["ok"]  # expires at 2
    assert apply(ref, 5, t(2, SYSTEM, ALICE, 0, flags=VOID, pending_id=10)) == [
        "pending_transfer_expired"]
    assert apply(ref, 6, t(3, SYSTEM, ALICE, 0, flags=VOID, pending_id=10)) == [
        "pending_transfer_not_found"]


# --- idempotency and pending windows ------------------------------------------------------------


def test_idempotency_window_edges():
    ref = ledger(window=3)
    assert apply(ref, 1, t(1, SYSTEM, ALICE, 10)) == ["ok"]
    assert apply(ref, 4, t(1, SYSTEM, ALICE, 10)) == ["exists"]  # 4 - 1 == W
    assert apply(ref, 5, t(1, SYSTEM, ALICE, 11)) == ["ok"]  # W + 1: new, and recorded again
    assert apply(ref, 8, t(1, SYSTEM, ALICE, 10)) == ["exists_with_different_fields"]
    assert apply(ref, 9, t(1, SYSTEM, ALICE, 10)) == ["ok"]
    assert bal(ref, ALICE) == (0, 0, 0, 31)


def test_id_stays_taken_while_its_pending_transfer_is_pending():
    ref = ledger(window=3)
    held(ref, 1, 50, amount=40)
    pending_row = t(50, SYSTEM, ALICE, 40, flags=PENDING)
    assert apply(ref, 10, pending_row, t(50, SYSTEM, ALICE, 40)) == [
        "exists", "exists_with_different_fields"]
    assert apply(ref, 11, t(1, SYSTEM, ALICE, 0, flags=VOID, pending_id=50)) == ["ok"]
    assert apply(ref, 12, t(50, SYSTEM, ALICE, 40)) == ["ok"]  # resolved: the id is free
    assert bal(ref, ALICE) == (0, 0, 0, 40)


def test_resolved_pending_is_remembered_for_the_window_then_not_found():
    ref = ledger(window=3)
    held(ref, 1, 60, amount=40)
    assert apply(ref, 2, t(1, SYSTEM, ALICE, 40, flags=POST, pending_id=60)) == ["ok"]
    assert apply(ref, 5, t(2, SYSTEM, ALICE, 40, flags=POST, pending_id=60)) == [
        "pending_transfer_already_posted"]  # 5 - 2 == W
    assert apply(ref, 6, t(3, SYSTEM, ALICE, 40, flags=POST, pending_id=60)) == [
        "pending_transfer_not_found"]
    assert bal(ref, ALICE) == (0, 0, 0, 40)


def test_new_pending_replaces_a_resolved_one_with_the_same_id():
    ref = ledger(window=3)
    held(ref, 1, 70, amount=40)
    assert apply(ref, 2, t(1, SYSTEM, ALICE, 0, flags=VOID, pending_id=70)) == ["ok"]
    # Epoch 5: the id record (epoch 1) is out of window, the voided pending (epoch 2) is not.
    rows = [t(70, SYSTEM, BOB, 25, flags=PENDING), t(2, SYSTEM, ALICE, 0, flags=VOID,
                                                      pending_id=70)]
    assert apply(ref, 5, *rows) == ["ok", "pending_transfer_already_voided"]
    assert apply(ref, 6, t(3, SYSTEM, BOB, 25, flags=POST, pending_id=70)) == ["ok"]
    assert bal(ref, BOB) == (0, 0, 0, 25)
    assert bal(ref, ALICE) == NO_MOVE


def test_sweeps_forget_nothing_that_matters():
    ref = ledger(window=2)
    held(ref, 1, 80, amount=40)
    for epoch in range(2, 30):
        assert apply(ref, epoch, t(1000 + epoch, SYSTEM, BOB, 1)) == ["ok"]
    assert len(ref._ids) <= 6
    assert apply(ref, 30, t(80, SYSTEM, ALICE, 40, flags=PENDING)) == ["exists"]
    assert apply(ref, 31, t(1, SYSTEM, ALICE, 40, flags=POST, pending_id=80)) == ["ok"]
    assert ref.check_invariants() == []


# --- strict serial --------------------------------------------------------------------------------


def test_strict_serial_credit_spendable_by_the_next_chain():
    rows = [t(1, SYSTEM, ALICE, 100), t(2, ALICE, BOB, 50)]
    for strict, expected in ((False, ["ok", "exceeds_credits"]), (True, ["ok", "ok"])):
        ref = ledger(strict=strict)
        assert apply(ref, 1, *rows) == expected


def test_strict_serial_failed_chain_releases_its_reservation_at_chain_end():
    rows = [t(1, ALICE, BOB, 80, flags=LINKED), t(2, BOB, CAROL, 5), t(3, ALICE, CAROL, 30)]
    ref = funded(alice=100, strict=True)
    assert apply(ref, 2, *rows) == ["linked_event_failed", "exceeds_credits", "ok"]
    assert bal(ref, ALICE) == (0, 30, 0, 100)


def test_strict_serial_pending_visible_to_later_chains_of_the_epoch():
    rows = [t(1, SYSTEM, ALICE, 40, flags=PENDING), t(2, SYSTEM, ALICE, 40, flags=POST,
                                                        pending_id=1)]
    ref = ledger(strict=True)
    assert apply(ref, 1, *rows) == ["ok", "ok"]
    assert bal(ref, ALICE) == (0, 0, 0, 40)
    # ... but not to later rows of its own chain.
    rows = [t(3, SYSTEM, ALICE, 40, flags=PENDING | LINKED), t(4, SYSTEM, ALICE, 40, flags=POST,
                                                                pending_id=3)]
    assert apply(ref, 2, *rows) == ["linked_event_failed", "pending_transfer_not_found"]


def test_strict_serial_keeps_expiry_at_epoch_start_and_open_chains():
    ref = ledger(strict=True)
    rows = [t(1, SYSTEM, ALICE, 40, flags=PENDING, timeout_s=1, time_us=1 * SECOND_US),
            t(2, SYSTEM, ALICE, 0, flags=VOID, pending_id=1, time_us=5 * SECOND_US),
            t(3, SYSTEM, BOB, 5, flags=LINKED, time_us=5 * SECOND_US)]
    assert apply(ref, 1, *rows) == ["ok", "ok", "linked_event_chain_open"]
    assert bal(ref, ALICE) == NO_MOVE
    assert bal(ref, BOB) == NO_MOVE


def test_strict_serial_failed_chain_drops_its_post_mark():
    ref = ledger(strict=True)
    held(ref, 1, 10, amount=40)
    rows = [t(1, SYSTEM, ALICE, 40, flags=POST | LINKED, pending_id=10), t(2, BOB, CAROL, 1),
            t(3, SYSTEM, ALICE, 0, flags=VOID, pending_id=10)]
    assert apply(ref, 2, *rows) == ["linked_event_failed", "exceeds_credits", "ok"]
    assert bal(ref, ALICE) == NO_MOVE


# --- overflow ------------------------------------------------------------------------------------


def _overflow_rows(last_debit: int, flags=0) -> list[dict]:
    """1024 rows of 2**53 into ALICE: the last takes a field to 2**63."""
    rows = [t(i + 1, SYSTEM, ALICE, AMOUNT_MAX, flags=flags) for i in range(1023)]
    return rows + [t(5000, last_debit, ALICE, AMOUNT_MAX, flags=flags)]


@pytest.mark.parametrize("last_debit, account, field", [
    (SYSTEM, SYSTEM, "debits_posted"), (SYSTEM_2, ALICE, "credits_posted")])
def test_overflow_names_the_first_row_account_and_field(last_debit, account, field):
    ref = ledger()
    with pytest.raises(BalanceOverflowError) as caught:
        ref.apply_epoch(batch(4, _overflow_rows(last_debit)), row_offset=500)
    error = caught.value
    assert error.key() == (4, 500 + 1023, account, field)
    assert error.transfer_id == 5000
    assert 1023 * AMOUNT_MAX <= INT64_MAX
    assert bal(ref, ALICE) == (0, 0, 0, 1023 * AMOUNT_MAX)  # the row that overflows did not apply


def test_overflow_of_pending_fields_through_run_reference():
    transfers = workload({1: [t(9999, SYSTEM, BOB, 1)], 2: _overflow_rows(SYSTEM, flags=PENDING)})
    with pytest.raises(BalanceOverflowError) as caught:
        run_reference(ACCOUNTS, transfers, strict_serial=True)
    assert caught.value.key() == (2, 1 + 1023, SYSTEM, "debits_pending")


# --- whole runs ----------------------------------------------------------------------------------


def test_apply_epoch_refuses_mixed_or_repeated_epochs():
    ref = ledger()
    mixed = Transfers.concat([batch(1, [t(1, SYSTEM, ALICE, 1)]),
                              batch(2, [t(2, SYSTEM, ALICE, 1)])])
    with pytest.raises(ValueError):
        ref.apply_epoch(mixed)
    apply(ref, 3, t(3, SYSTEM, ALICE, 1))
    with pytest.raises(ValueError):
        apply(ref, 3, t(4, SYSTEM, ALICE, 1))
    assert len(ref.apply_epoch(Transfers.empty())) == 0


def test_run_reference_equals_epoch_by_epoch_and_keeps_account_order():
    epochs = {1: [t(1, SYSTEM, ALICE, 100), t(2, SYSTEM, BOB, 7)],
              4: [t(3, ALICE, BOB, 60, flags=LINKED), t(4, BOB, CAROL, 7)],
              9: [t(5, ALICE, CAROL, 60, flags=PENDING), t(1, SYSTEM, ALICE, 100)]}
    result = run_reference(ACCOUNTS, workload(epochs))
    assert result.status.dtype == np.uint16
    assert [STATUS_NAMES[s] for s in result.status.tolist()] == [
        "ok", "ok", "ok", "ok", "exceeds_credits", "exists"]
    assert result.balances.id.tolist() == ACCOUNTS.id.tolist()
    assert result.balances.ledger.tolist() == ACCOUNTS.ledger.tolist()
    ref = ledger(window=100)
    for epoch, rows in sorted(epochs.items()):
        apply(ref, epoch, *rows)
    assert ref.balances().equals(result.balances)


def _random_rows(rng: np.random.Generator, epoch: int, next_id: list[int],
                 holds: list[tuple[int, int, int]]) -> list[dict]:
    """A mix of plain, pending, post, void and linked rows, some invalid or repeated; posts and
    voids mostly refer to earlier pending rows (`holds`: id, debit, credit)."""
    usd = [SYSTEM, SYSTEM_2, ALICE, BOB, CAROL]
    rows = []
    for _ in range(int(rng.integers(1, 12))):
        debit, credit = (usd[int(i)] for i in rng.choice(len(usd), 2, replace=False))
        kind = int(rng.integers(0, 6))
        row_id = next_id[0] if rng.random() > 0.1 else int(rng.integers(1, next_id[0] + 1))
        next_id[0] += 1
        flags = int(LINKED if rng.random() < 0.25 else 0)
        amount = int(rng.integers(1, 60))
        if kind in (3, 4) and holds and rng.random() < 0.9:
            pending_id, debit, credit = holds[int(rng.integers(max(0, len(holds) - 20),
                                                                len(holds)))]
        else:
            pending_id = int(rng.integers(1, next_id[0]))
        if kind == 2:
            holds.append((row_id, debit, credit))
            rows.append(t(row_id, debit, credit, amount, flags=flags | PENDING,
                          timeout_s=int(rng.integers(0, 4))))
        elif kind == 3:
            rows.append(t(row_id, debit, credit, amount, flags=flags | POST, pending_id=pending_id))
        elif kind == 4:
            rows.append(t(row_id, debit, credit, 0, flags=flags | VOID, pending_id=pending_id))
        else:
            rows.append(t(row_id, debit, credit, amount, flags=flags))
    return rows


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_invariants_hold_after_a_random_run(seed, strict):
    rng = np.random.default_rng(seed)
    ref = ledger(window=3, strict=strict)
    next_id, holds = [1], []
    counts = np.zeros(len(S), np.int64)
    for epoch in range(1, 40):
        status = ref.apply_epoch(batch(epoch, _random_rows(rng, epoch, next_id, holds)))
        counts += np.bincount(status, minlength=len(S))
        assert ref.check_invariants() == []
        sums = ref.ledger_sums()
        assert sums[USD][0] == sums[USD][2]
        assert sums[USD][1] == sums[USD][3]
    assert counts[S["ok"]] > 0
    assert counts[S["exceeds_credits"]] > 0


def _random_workload(seed: int, epoch_count: int, rows_per_epoch: int | None = None) -> Transfers:
    rng = np.random.default_rng(seed)
    next_id, holds = [1], []
    epochs = {}
    for epoch in range(1, epoch_count + 1):
        rows = _random_rows(rng, epoch, next_id, holds)
        epochs[epoch] = rows if rows_per_epoch is None else rows[:rows_per_epoch]
    return workload(epochs)


def test_sweeping_does_not_change_results(monkeypatch):
    transfers = _random_workload(seed=7, epoch_count=60)
    swept = run_reference(ACCOUNTS, transfers, window_epochs=2)
    monkeypatch.setattr(ReferenceLedger, "_sweep_if_due", lambda self, epoch: None)
    kept = run_reference(ACCOUNTS, transfers, window_epochs=2)
    assert np.array_equal(swept.status, kept.status)
    assert swept.balances.equals(kept.balances)


def test_strict_serial_equals_epoch_mode_for_one_row_epochs():
    transfers = _random_workload(seed=11, epoch_count=80, rows_per_epoch=1)
    epoch_mode = run_reference(ACCOUNTS, transfers, window_epochs=3)
    strict = run_reference(ACCOUNTS, transfers, window_epochs=3, strict_serial=True)
    assert np.array_equal(epoch_mode.status, strict.status)
    assert epoch_mode.balances.equals(strict.balances)
