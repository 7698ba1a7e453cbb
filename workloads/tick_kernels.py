"""Numba kernels of the scenario generator (compiled eagerly at import, cached on disk).

Every kernel gives exactly the values of the numpy code it replaces (integer arithmetic, or
float steps that are exact), so a seed yields the same rows:

- `gather_rows`: a tick's transfer columns in time order, in one call (a loop per column, so
  each column's random reads stay within one source array);
- `time_span`, `packed_time_keys`, `unpack_time_keys`: the passes of
  `workloads.model.stable_time_order`;
- `user_ledgers`, `user_ledgers_from_table`, `friends`: the population's implicit maps.
"""

from __future__ import annotations

import numba
import numpy as np

from workloads.ids import mix63


def as_kernel_array(values, dtype) -> np.ndarray:
    """`values` as a C-contiguous, writable array of `dtype` (what the eager signatures take)."""
    array = np.ascontiguousarray(values, dtype)
    return array if array.flags.writeable else array.copy()


_GATHER_SIGNATURE = (
    "void(int64[::1], "
    "uint64[::1], uint64[::1], uint64[::1], int64[::1], uint32[::1], uint16[::1], "
    "uint16[::1], uint64[::1], uint32[::1], "
    "uint64[::1], uint64[::1], uint64[::1], int64[::1], uint32[::1], uint16[::1], "
    "uint16[::1], uint64[::1], uint32[::1])"
)


@numba.njit(inline="always", cache=True)
def _gather(order, source, out):
    for i in range(order.shape[0]):
        out[i] = source[order[i]]


@numba.njit(_GATHER_SIGNATURE, cache=True, nogil=True)
def gather_rows(order, id_, debit, credit, amount, ledger, code, flags, pending_id,
                timeout_s, out_id, out_debit, out_credit, out_amount, out_ledger,
                out_code, out_flags, out_pending_id, out_timeout_s):
    """out_x[i] = x[order[i]] for every column but the time (which the sort gives), one column
    at a time (so that each column's random reads stay within one cache-sized source array)."""
    _gather(order, id_, out_id)
    _gather(order, debit, out_debit)
    _gather(order, credit, out_credit)
    _gather(order, amount, out_amount)
    _gather(order, ledger, out_ledger)
    _gather(order, code, out_code)
    _gather(order, flags, out_flags)
    _gather(order, pending_id, out_pending_id)
    _gather(order, timeout_s, out_timeout_s)


# --- the population's implicit maps (bit-identical to the numpy forms they replace) ---------
@numba.njit("uint32[::1](int64[::1], int64, int64, uint64, float64, uint32, uint32)",
            cache=True, nogil=True)
def user_ledgers(user, community_size, block_count, salt, eur_share, eur_ledger, usd_ledger):
    """`PopulationLayout.user_ledger`: hash_fraction(block) < eur_share -> EUR, else USD."""
    out = np.empty(user.shape[0], np.uint32)
    for i in range(user.shape[0]):
        block = min(user[i] // community_size, block_count - 1)
        mixed = mix63(np.uint64(block) + salt)
        fraction = np.float64(mixed >> np.uint64(11)) / 4503599627370496.0  # 2**52
        out[i] = eur_ledger if fraction < eur_share else usd_ledger
    return out


@numba.njit("uint32[::1](int64[::1], int64, int64, uint32[::1])", cache=True, nogil=True)
def user_ledgers_from_table(user, community_size, block_count, block_ledger):
    """`PopulationLayout.user_ledger` from a precomputed ledger per community block."""
    out = np.empty(user.shape[0], np.uint32)
    last = block_count - 1
    for i in range(user.shape[0]):
        out[i] = block_ledger[min(user[i] // community_size, last)]
    return out


@numba.njit("int64[::1](int64[::1], int64[::1], int64, int64, int64, int64, uint64)",
            cache=True, nogil=True)
def friends(user, k, community_size, block_count, user_count, friends_per_user, salt):
    """`PopulationLayout.friend`: a hashed member of the user's block, never the user."""
    out = np.empty(user.shape[0], np.int64)
    for i in range(user.shape[0]):
        u = user[i]
        block = min(u // community_size, block_count - 1)
        start = block * community_size
        length = user_count - start if block == block_count - 1 else community_size
        key = u * friends_per_user + k[i]
        position = mix63(np.uint64(key) + salt) % np.uint64(length)
        friend = start + np.int64(position)
        if friend == u:
            friend = start + (u - start + 1) % length
        out[i] = friend
    return out


@numba.njit("int64[::1](int64[::1], int64, int64, int64)", cache=True, nogil=True)
def affine_forward(x, multiplier, offset, n):
    """`AffinePermutation.forward`: (x * multiplier + offset) mod n, for 0 <= x < n <= 2**31."""
    out = np.empty(x.shape[0], np.int64)
    for i in range(x.shape[0]):
        out[i] = (x[i] * multiplier + offset) % n
    return out


@numba.njit("int64[::1](int64[::1], uint32[::1], uint32, int64, int64)", cache=True, nogil=True)
def group_index(rank, ledger, eur_ledger, usd_count, eur_count):
    """`PopulationLayout.merchant_index` / `creator_index`: a rank within the payer's currency
    group (USD numbers first, then EUR), reduced modulo the group's size."""
    out = np.empty(rank.shape[0], np.int64)
    usd_size = max(usd_count, 1)
    eur_size = max(eur_count, 1)
    for i in range(rank.shape[0]):
        if ledger[i] == eur_ledger:
            out[i] = usd_count + rank[i] % eur_size
        else:
            out[i] = rank[i] % usd_size
    return out


@numba.njit("void(int64[::1], int64[::1], uint16[::1], int64[::1], uint16)", cache=True,
            nogil=True)
def add_captured(payable, aux, code, amount, capture_code):
    """payable[aux] += amount for the capture rows that carry a merchant number (aux >= 0)."""
    for i in range(aux.shape[0]):
        if code[i] == capture_code and aux[i] >= 0:
            if aux[i] >= payable.shape[0]:
                raise IndexError("add_captured: a merchant number past the books")
            payable[aux[i]] += amount[i]


# --- the tick's time order ---------------------------------------------------------------------
@numba.njit("UniTuple(int64, 3)(int64[::1])", cache=True, nogil=True)
def time_span(time_us):
    """(min, max, 1 if non-decreasing else 0) of a non-empty array, in one pass."""
    low = time_us[0]
    high = time_us[0]
    ordered = 1
    for i in range(1, time_us.shape[0]):
        value = time_us[i]
        if value < time_us[i - 1]:
            ordered = 0
        if value < low:
            low = value
        if value > high:
            high = value
    return low, high, ordered


@numba.njit("int64[::1](int64[::1], int64, int64)", cache=True, nogil=True)
def packed_time_keys(time_us, low, position_bits):
    """((time - low) << position_bits) | position, per row."""
    out = np.empty(time_us.shape[0], np.int64)
    for i in range(time_us.shape[0]):
        out[i] = ((time_us[i] - low) << position_bits) | i
    return out


@numba.njit("void(int64[::1], int64, int64, int64[::1])", cache=True, nogil=True)
def unpack_time_keys(key, low, position_bits, time_out):
    """Sorted packed keys back to (position in place of the key, time into `time_out`)."""
    mask = (np.int64(1) << position_bits) - 1
    for i in range(key.shape[0]):
        packed = key[i]
        time_out[i] = (packed >> position_bits) + low
        key[i] = packed & mask

