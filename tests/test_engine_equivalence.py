"""The sharded engine (shards in-process) equals the reference ledger for every shard count."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from sim.engine import run_local
from sim.errors import BalanceOverflowError
from sim.reference import run_reference
from tests.adversarial import adversarial_workload

WINDOW = 3


def outcome(run, *args, **kwargs):
    try:
        result = run(*args, **kwargs)
    except BalanceOverflowError as error:
        return ("overflow", error.key())
    return (result.status, result.balances)


def assert_same(a, b):
    if isinstance(a[0], str) or isinstance(b[0], str):
        assert a == b
        return
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1].equals(b[1])


@settings(max_examples=120, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), rows=st.integers(1, 60), accounts=st.integers(2, 8),
       shards=st.sampled_from([1, 2, 3, 5]))
def test_engine_equals_reference(seed, rows, accounts, shards):
    acc, transfers = adversarial_workload(seed, rows, accounts)
    expected = outcome(run_reference, acc, transfers, window_epochs=WINDOW)
    actual = outcome(run_local, acc, transfers, shards, window_epochs=WINDOW)
    assert_same(actual, expected)


def test_every_status_code_is_exercised_by_the_generator():
    seen = set()
    for seed in range(300):
        acc, transfers = adversarial_workload(seed, 60, 6)
        seen |= set(run_reference(acc, transfers, window_epochs=WINDOW).status.tolist())
    assert seen == set(range(22)), f"never produced: {sorted(set(range(22)) - seen)}"
