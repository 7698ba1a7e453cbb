"""Sparse ids: the one fixed bijection from (domain, index) to ids in [1, 2**63).

Every generator names its accounts and transfers through `sparse_ids` / `range_ids`, so no
module downstream can come to rely on ids being 1..N. Index i of domain d maps to
mix63(d * 2**56 + i + 1), where mix63 is splitmix64's finaliser cut to 63 bits (constants from
`sim.hashtable`): each step (x ^ (x >> k), multiplication by an odd constant modulo 2**63) is
invertible on 63-bit values, so distinct (domain, index) pairs give distinct ids, and no id is
0 because no input is 0. `mix63_salted` is the same mix of salted values, for structure that
must look random but is not drawn (communities, friends).
"""

from __future__ import annotations

import numba
import numpy as np

from sim.hashtable import SPLITMIX64_MULTIPLIER_1, SPLITMIX64_MULTIPLIER_2

ID_BITS = 63
ID_DOMAIN_SHIFT = 56  # indices below 2**56 per domain; the domain tag sits above them
ID_INDEX_MAX = (1 << ID_DOMAIN_SHIFT) - 2
ID_DOMAIN_ACCOUNT = 1
ID_DOMAIN_TRANSFER = 2
_MASK63 = np.uint64((1 << ID_BITS) - 1)


@numba.njit(inline="always", cache=True)
def mix63(x):
    """A bijection of [0, 2**63) onto itself that maps 0 to 0 (module doc)."""
    x = x & _MASK63
    x ^= x >> np.uint64(31)
    x = (x * SPLITMIX64_MULTIPLIER_1) & _MASK63
    x ^= x >> np.uint64(29)
    x = (x * SPLITMIX64_MULTIPLIER_2) & _MASK63
    x ^= x >> np.uint64(32)
    return x


@numba.njit("uint64[::1](int64[::1], uint64)", cache=True, nogil=True)
def _sparse_ids(index, tag):
    out = np.empty(index.shape[0], np.uint64)
    for i in range(index.shape[0]):
        if index[i] < 0 or index[i] > ID_INDEX_MAX:
            raise ValueError("sparse_ids: indices must be in [0, 2**56 - 2]")
        out[i] = mix63(np.uint64(index[i]) + tag)
    return out


@numba.njit("uint64[::1](int64, int64, uint64)", cache=True, nogil=True)
def _range_ids(start, count, tag):
    out = np.empty(count, np.uint64)
    for i in range(count):
        out[i] = mix63(np.uint64(start + i) + tag)
    return out


@numba.njit("uint64[::1](uint64[::1], uint64)", cache=True, nogil=True)
def _mix_salted(values, salt):
    out = np.empty(values.shape[0], np.uint64)
    for i in range(values.shape[0]):
        out[i] = mix63(values[i] + salt)
    return out


def _tag(domain: int) -> np.uint64:
    assert 1 <= domain < (1 << (ID_BITS - ID_DOMAIN_SHIFT)), f"domain(={domain}) out of range"
    return np.uint64((domain << ID_DOMAIN_SHIFT) + 1)


def sparse_ids(index, domain: int) -> np.ndarray:
    """Ids (uint64, the shape of `index`) of indices 0 <= i <= ID_INDEX_MAX of `domain`:
    unique, in [1, 2**63), scattered. An index out of range raises ValueError."""
    index = np.asarray(index)  # uint64 indices >= 2**63 turn negative in the cast: refused too
    flat = np.require(index.ravel().astype(np.int64, copy=False), np.int64, ["C", "W"])
    return _sparse_ids(flat, _tag(domain)).reshape(index.shape)


def range_ids(start: int, count: int, domain: int) -> np.ndarray:
    """sparse_ids(arange(start, start + count), domain), without the arange."""
    assert start >= 0 and start + count - 1 <= ID_INDEX_MAX, f"ids {start}+{count} out of range"
    return _range_ids(start, count, _tag(domain))


def mix63_salted(values: np.ndarray, salt: np.uint64) -> np.ndarray:
    """mix63(values + salt) (uint64, wrapping add), the shape of `values`."""
    values = np.asarray(values)
    flat = np.require(values.ravel().astype(np.uint64, copy=False), np.uint64, ["C", "W"])
    return _mix_salted(flat, np.uint64(salt)).reshape(values.shape)
