"""workloads.describe: each statistic on hand-made rows, properties, and seeded golden values."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sim import files
from sim.columns import TRANSFER_DTYPES, Accounts, Transfers
from sim.constants import (
    AMOUNT_MAX,
    CODE,
    FLAG_LINKED,
    FLAG_PENDING,
    FLAG_POST_PENDING_TRANSFER,
    FLAG_VOID_PENDING_TRANSFER,
    LEDGER_EUR,
    LEDGER_USD,
)
from sim.errors import InputRefused
from workloads.base import materialize
from workloads.describe import describe, describe_dir, format_description
from workloads.registry import build_workload
from workloads.scenario import Resize

HOUR_US = 3_600_000_000
MINUTE_US = 60_000_000
P2P, AUTH, CAPTURE, VOID, CASH_IN = (CODE[n] for n in
                                    ("p2p", "card_authorize", "card_capture", "card_void", "cash_in"))


def transfers_of(rows: list[dict]) -> Transfers:
    """Rows given as dicts; unspecified columns are 0 (ledger USD)."""
    defaults = dict(epoch=0, sim_time_us=0, debit_account=1, credit_account=2, amount=1,
                    ledger=LEDGER_USD, code=P2P, flags=0, pending_id=0, timeout_s=0)
    full = [{**defaults, **row} for row in rows]
    return Transfers.from_columns(**{n: np.array([r[n] for r in full], d)
                                     for n, d in TRANSFER_DTYPES.items()})


ACCOUNTS = Accounts.from_columns(id=[1, 2, 3, 4, 5, 6], ledger=[1, 1, 1, 1, 2, 2],
                                 flags=[0, 1, 1, 1, 1, 0])

# 10 rows: P2P from senders 3 (x5), 4 (x2), 1, 2, ... and other kinds, over hours and minutes.
HAND_ROWS = [
    dict(id=11, epoch=0, sim_time_us=0, debit_account=3, amount=100),
    dict(id=12, epoch=0, sim_time_us=10, debit_account=3, amount=200),
    dict(id=13, epoch=0, sim_time_us=MINUTE_US, debit_account=3, amount=300),
    dict(id=14, epoch=1, sim_time_us=HOUR_US, debit_account=3, amount=400),
    dict(id=11, epoch=1, sim_time_us=HOUR_US + 5, debit_account=3, amount=100),  # a retry
    dict(id=15, epoch=1, sim_time_us=HOUR_US + 6, debit_account=4, credit_account=3, amount=50),
    dict(id=16, epoch=2, sim_time_us=25 * HOUR_US, debit_account=4, credit_account=3, amount=60),
    dict(id=17, epoch=2, sim_time_us=25 * HOUR_US, code=AUTH, flags=FLAG_PENDING, amount=700,
         timeout_s=5),
    dict(id=18, epoch=3, sim_time_us=25 * HOUR_US + 1, code=CAPTURE,
         flags=FLAG_POST_PENDING_TRANSFER, pending_id=17, amount=650),
    dict(id=19, epoch=3, sim_time_us=26 * HOUR_US, debit_account=5, credit_account=6,
         ledger=LEDGER_EUR, code=CASH_IN, flags=FLAG_LINKED, amount=9),
]


@pytest.fixture(scope="module")
def hand():
    return describe(ACCOUNTS, transfers_of(HAND_ROWS))


def test_counts_epochs_time_and_accounts(hand):
    assert hand["rows"] == 10
    assert hand["epochs"] == {"count": 4, "first": 0, "last": 3}
    assert hand["sim_time_us"] == {"first": 0, "last": 26 * HOUR_US}
    assert hand["accounts"] == {"count": 6, "by_ledger": {"USD": 4, "EUR": 2},
                                "debits_must_not_exceed_credits": 4}


def test_mix(hand):
    assert hand["mix"] == {"p2p": {"rows": 7, "share": 0.7},
                           "card_authorize": {"rows": 1, "share": 0.1},
                           "card_capture": {"rows": 1, "share": 0.1},
                           "cash_in": {"rows": 1, "share": 0.1}}


def test_amount_quantiles_per_code_and_ledger(hand):
    # P2P amounts sorted: 50 60 100 100 200 300 400; inverted_cdf picks ceil(q * n)-th value.
    assert hand["amount_minor"]["p2p"] == {"USD": {"rows": 7, "p10": 50, "p50": 100, "p90": 400,
                                                   "p99": 400, "max": 400}}
    assert hand["amount_minor"]["cash_in"] == {"EUR": {"rows": 1, "p10": 9, "p50": 9, "p90": 9,
                                                       "p99": 9, "max": 9}}
    assert set(hand["amount_minor"]) == {"p2p", "card_authorize", "card_capture", "cash_in"}


def test_sender_concentration(hand):
    # P2P senders: 3 sent 5 rows, 4 sent 2; top 20% = ceil(0.4) = 1 sender, so 5 of 7 rows.
    assert hand["sender_concentration"] == {
        "p2p_rows": 7, "p2p_senders": 2,
        "top_20_percent_senders": 1, "top_20_percent_share_of_rows": 5 / 7,
        "top_1_percent_senders": 1, "top_1_percent_share_of_rows": 5 / 7,
    }


def test_hourly_curve_wraps_days(hand):
    expected = [0] * 24
    expected[0] = 3  # 0, 10 us, 1 min
    expected[1] = 3 + 3  # hour 1, and hour 25 = 1 on the next day
    expected[2] = 1  # hour 26
    assert hand["hourly"]["rows_per_hour"] == expected
    assert hand["hourly"]["peak_over_mean"] == 6 / (10 / 24)


def test_burst_over_active_minutes(hand):
    # minutes with rows: 0 (2), 1 (1), 60 (3), 1500 (3), 1560 (1)
    assert hand["burst"] == {"active_minutes": 5, "peak_rows_per_minute": 3,
                             "mean_rows_per_minute": 2.0, "peak_over_mean": 1.5}


def test_flags_and_pending_share(hand):
    assert hand["flags"] == {
        "linked": {"rows": 1, "share": 0.1}, "pending": {"rows": 1, "share": 0.1},
        "post": {"rows": 1, "share": 0.1}, "void": {"rows": 0, "share": 0.0},
        "plain": {"rows": 8, "share": 0.8},
    }
    assert hand["pending_share"] == 0.1


def test_retries_are_rows_whose_id_came_before(hand):
    assert hand["retries"] == {"rows": 1, "share": 0.1, "by_code": {"p2p": 1}}


def test_void_and_unknown_code_are_named():
    d = describe(ACCOUNTS, transfers_of([dict(id=1, code=VOID, flags=FLAG_VOID_PENDING_TRANSFER,
                                              amount=0, pending_id=9), dict(id=2, code=77)]))
    assert d["mix"] == {"card_void": {"rows": 1, "share": 0.5}, "code_77": {"rows": 1, "share": 0.5}}
    assert d["flags"]["void"] == {"rows": 1, "share": 0.5}


def test_unsorted_times_are_counted_the_same():
    rows = [dict(id=i + 1, sim_time_us=t) for i, t in enumerate([5 * MINUTE_US, 0, 5 * MINUTE_US])]
    assert describe(ACCOUNTS, transfers_of(rows))["burst"]["peak_rows_per_minute"] == 2


def test_empty_workload_is_described():
    d = describe(ACCOUNTS, Transfers.empty())
    json.dumps(d)
    assert d["rows"] == 0
    assert d["mix"] == {}
    assert d["epochs"] == {"count": 0, "first": None, "last": None}
    assert d["sender_concentration"]["top_20_percent_share_of_rows"] == 0.0
    assert d["burst"]["active_minutes"] == 0
    format_description(d)


def test_json_and_text(hand):
    assert json.loads(json.dumps(hand)) == hand
    text = format_description(hand)
    assert "p2p" in text
    assert "retries" in text


def test_text_columns_stay_apart_for_the_largest_amount(hand):
    """A spoiled request's AMOUNT_MAX (25 characters with separators) must not run into the
    column before it: every amount row splits into name, ledger, rows and five figures."""
    d = json.loads(json.dumps(hand))
    first = next(iter(d["amount_minor"].values()))
    figures = next(iter(first.values()))
    figures["p99"] = figures["max"] = AMOUNT_MAX
    text = format_description(d)
    start = text.index("amount (minor units)")
    rows = text[start:].split("\n\n")[0].splitlines()[1:]
    assert rows
    for row in rows:
        assert len(row.split()) == 8, row
    assert f"{AMOUNT_MAX:,}" in text


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.integers(0, 3 * HOUR_US), st.integers(0, 16),
                          st.integers(0, 15)), min_size=1, max_size=60))
def test_counts_add_up(rows):
    transfers = transfers_of([dict(id=i, sim_time_us=t, code=c, flags=f)
                              for i, t, c, f in rows])
    d = describe(ACCOUNTS, transfers)
    assert sum(m["rows"] for m in d["mix"].values()) == len(rows)
    assert sum(d["hourly"]["rows_per_hour"]) == len(rows)
    assert d["retries"]["rows"] == len(rows) - len({i for i, _, _, _ in rows})
    assert sum(d["retries"]["by_code"].values()) == d["retries"]["rows"]
    assert sum(a["rows"] for ledgers in d["amount_minor"].values() for a in ledgers.values()) \
        == len(rows)
    assert d["burst"]["peak_rows_per_minute"] >= d["burst"]["mean_rows_per_minute"]
    json.dumps(d)


def test_describe_dir_reads_the_files_and_refuses_a_missing_one(tmp_path):
    transfers = transfers_of(HAND_ROWS)
    files.write_accounts(tmp_path / "accounts.parquet", ACCOUNTS)
    files.write_workload(tmp_path / "workload.parquet", transfers)
    assert describe_dir(tmp_path) == describe(ACCOUNTS, transfers)
    with pytest.raises(InputRefused, match="file not found"):
        describe_dir(tmp_path / "nowhere")


# --- seeded golden values -------------------------------------------------------------------
# Computed once from the scenario model (quick resized to 5,000 users, one day in 6 epochs) at
# this seed. They change only when the model changes its draws; then recompute them on
# purpose and say why in the commit. (Until the quickstart generator was retired they came
# from it: 20,500 rows with 840 rows of code 0.)
GOLDEN_SIZE = Resize(users=5_000, epochs=6)
GOLDEN_SEED = 1


def test_resized_quick_golden_statistics():
    workload = build_workload("quick", GOLDEN_SEED, GOLDEN_SIZE)
    d = describe(*materialize(workload), workload.model_seconds_per_sim_second,
                 funding_epochs=workload.funding_epoch_count)
    assert d["rows"] == 28_888
    assert d["epochs"]["count"] == 7
    assert d["accounts"]["by_ledger"] == {"USD": 4_360, "EUR": 657, "BTC": 402, "ETH": 402,
                                          "USDC": 402}
    assert {k: v["rows"] for k, v in d["mix"].items()} == {
        "p2p": 12_166, "card_authorize": 3_175, "card_capture": 2_152, "card_void": 218,
        "refund": 61, "fee": 2_152, "merchant_payout": 4, "cash_in": 5_158, "cash_out": 183,
        "crypto_buy": 790, "crypto_sell": 502, "crypto_deposit": 1_301, "crypto_withdraw": 88,
        "crypto_withdraw_settle": 72, "tip": 866}
    assert d["amount_minor"]["p2p"]["USD"] == {"rows": 10_508, "p10": 957, "p50": 3_090,
                                               "p90": 11_510, "p99": 40_605, "max": AMOUNT_MAX}
    assert d["sender_concentration"]["p2p_senders"] == 3_758
    assert d["sender_concentration"]["top_20_percent_share_of_rows"] == pytest.approx(
        0.5752096005260562, abs=1e-12)
    assert d["sender_concentration"]["top_1_percent_share_of_rows"] == pytest.approx(
        0.1809962189709025, abs=1e-12)
    assert d["flags"]["linked"]["rows"] == 2_800
    assert d["retries"]["rows"] == 97
    assert d["hourly"]["peak_over_mean"] == pytest.approx(2.76857974080931, abs=1e-12)


def test_funding_epochs_are_left_out_of_the_time_curves(tmp_path):
    from sim import files
    from workloads.describe import write_clock

    d = describe(ACCOUNTS, transfers_of(HAND_ROWS), funding_epochs=1)  # epoch 0: 3 rows in hour 0
    assert d["funding_epochs_excluded_from_time_curves"] == 1
    assert d["hourly"]["rows_per_hour"][0] == 0 and sum(d["hourly"]["rows_per_hour"]) == 7
    assert d["burst"]["active_minutes"] == 3
    assert d["rows"] == 10 and sum(d["mix"][name]["rows"] for name in d["mix"]) == 10
    files.write_accounts(tmp_path / "accounts.parquet", ACCOUNTS)
    files.write_workload(tmp_path / "workload.parquet", transfers_of(HAND_ROWS))
    write_clock(tmp_path / "workload.toml", "hand", 1, 1.0, funding_epochs=4)
    assert sum(describe_dir(tmp_path)["hourly"]["rows_per_hour"]) == 0
    (tmp_path / "workload.toml").write_text("funding_epochs = -1\n")
    with pytest.raises(InputRefused, match="funding_epochs"):
        describe_dir(tmp_path)
