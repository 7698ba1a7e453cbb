"""Named limits, flag bits, status codes and business codes of LEDGER_SPEC.md.

Every other module takes these names from here; nothing restates a number.
"""

from __future__ import annotations

import numpy as np

# --- money -------------------------------------------------------------------------------
AMOUNT_MAX = 2**53
INT64_MAX = 2**63 - 1

LEDGER_NAMES = {1: "USD", 2: "EUR", 3: "BTC", 4: "ETH", 5: "USDC"}
LEDGER_USD, LEDGER_EUR, LEDGER_BTC, LEDGER_ETH, LEDGER_USDC = 1, 2, 3, 4, 5

# --- accounts ----------------------------------------------------------------------------
ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS = 1
ACCOUNT_FLAGS_KNOWN = ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS

# --- transfers ---------------------------------------------------------------------------
FLAG_LINKED = 1 << 0
FLAG_PENDING = 1 << 1
FLAG_POST_PENDING_TRANSFER = 1 << 2
FLAG_VOID_PENDING_TRANSFER = 1 << 3
TRANSFER_FLAGS_KNOWN = FLAG_LINKED | FLAG_PENDING | FLAG_POST_PENDING_TRANSFER | FLAG_VOID_PENDING_TRANSFER

IDEMPOTENCY_WINDOW_EPOCHS = 100
MICROSECONDS_PER_SECOND = 1_000_000

# --- status codes (results.parquet), in check order ---------------------------------------
STATUS_NAMES = (
    "ok",
    "linked_event_failed",
    "linked_event_chain_open",
    "id_must_not_be_zero",
    "exists",
    "exists_with_different_fields",
    "flags_are_mutually_exclusive",
    "pending_id_must_be_zero",
    "pending_id_must_not_be_zero",
    "timeout_reserved_for_pending_transfer",
    "accounts_must_be_different",
    "invalid_amount",
    "debit_account_not_found",
    "credit_account_not_found",
    "ledger_mismatch",
    "pending_transfer_not_found",
    "pending_transfer_has_different_accounts",
    "pending_transfer_already_posted",
    "pending_transfer_already_voided",
    "pending_transfer_expired",
    "exceeds_pending_amount",
    "exceeds_credits",
)
STATUS = {name: code for code, name in enumerate(STATUS_NAMES)}
OK = 0
LINKED_EVENT_FAILED = 1
LINKED_EVENT_CHAIN_OPEN = 2
ID_MUST_NOT_BE_ZERO = 3
EXISTS = 4
EXISTS_WITH_DIFFERENT_FIELDS = 5
FLAGS_ARE_MUTUALLY_EXCLUSIVE = 6
PENDING_ID_MUST_BE_ZERO = 7
PENDING_ID_MUST_NOT_BE_ZERO = 8
TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = 9
ACCOUNTS_MUST_BE_DIFFERENT = 10
INVALID_AMOUNT = 11
DEBIT_ACCOUNT_NOT_FOUND = 12
CREDIT_ACCOUNT_NOT_FOUND = 13
LEDGER_MISMATCH = 14
PENDING_TRANSFER_NOT_FOUND = 15
PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS = 16
PENDING_TRANSFER_ALREADY_POSTED = 17
PENDING_TRANSFER_ALREADY_VOIDED = 18
PENDING_TRANSFER_EXPIRED = 19
EXCEEDS_PENDING_AMOUNT = 20
EXCEEDS_CREDITS = 21
STATUS_COUNT = len(STATUS_NAMES)

# --- business kinds (code column): reported, never interpreted by the ledger --------------
CODE_NAMES = {
    0: "unspecified",
    1: "p2p",
    2: "card_authorize",
    3: "card_capture",
    4: "card_void",
    5: "refund",
    6: "fee",
    7: "merchant_payout",
    8: "cash_in",
    9: "cash_out",
    10: "crypto_buy",
    11: "crypto_sell",
    12: "crypto_deposit",
    13: "crypto_withdraw",
    14: "crypto_withdraw_settle",
    15: "tip",
}
CODE = {name: code for code, name in CODE_NAMES.items()}

# --- pending-transfer states (internal) ----------------------------------------------------
PENDING_STATE_PENDING = 1
PENDING_STATE_POSTED = 2
PENDING_STATE_VOIDED = 3
PENDING_STATE_EXPIRED = 4

# --- engine limits -------------------------------------------------------------------------
SHARD_COUNT_MIN = 1
SHARD_COUNT_MAX = 64

STATUS_DTYPE = np.uint16

# --- table limits (sim.hashtable, sim.serial) ---------------------------------------------
TABLE_CAPACITY_MIN = 16
# home_slot maps the hash's low 32 bits onto [0, capacity) by multiply-shift.
TABLE_CAPACITY_MAX = 2**32 - 1
# The serial ledger's dense account positions are int32.
ACCOUNT_COUNT_MAX = 2**31 - 1


def _check_constants() -> None:
    assert AMOUNT_MAX < INT64_MAX
    assert TABLE_CAPACITY_MIN & (TABLE_CAPACITY_MIN - 1) == 0  # serial keeps powers of two
    assert TABLE_CAPACITY_MIN <= TABLE_CAPACITY_MAX < 2**32
    assert ACCOUNT_COUNT_MAX <= np.iinfo(np.int32).max
    # serial's account index keeps load <= 1/2: 2 * count + 1 slots must be a table size
    assert 2 * ACCOUNT_COUNT_MAX + 1 <= TABLE_CAPACITY_MAX
    assert STATUS_COUNT == 22
    assert STATUS_NAMES[EXCEEDS_CREDITS] == "exceeds_credits"
    assert TRANSFER_FLAGS_KNOWN == 0xF


_check_constants()
