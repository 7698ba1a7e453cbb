"""Hashing of uint64 keys: shard routing and open-addressing tables, as numba kernels.

Keys (account ids, transfer ids) are arbitrary non-zero uint64 values, stored as int64 bit
patterns; 0 marks an empty slot. One mix (splitmix64's finaliser) serves both purposes: its
high 32 bits pick the shard, its low bits the slot inside a shard's table, so the two are
independent. Record tables are row-major 2-D int64 arrays whose column 0 is the key, so one
entry is one or two cache lines. The account index is leaner: int32 slots holding a position
(+1) into the shard's account-id column.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.extending import intrinsic

from sim.constants import TABLE_CAPACITY_MAX, TABLE_CAPACITY_MIN

# splitmix64's constants (Steele, Lea and Flood 2014), the one home of them: the ledger's
# hashing here, the generator's id permutation and counter-based streams in workloads/.
SPLITMIX64_MULTIPLIER_1 = np.uint64(0xBF58476D1CE4E5B9)
SPLITMIX64_MULTIPLIER_2 = np.uint64(0x94D049BB133111EB)
SPLITMIX64_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S32 = np.uint64(32)

# Rows looked ahead by the probing kernels: the cache line of row i + PREFETCH_DISTANCE is
# requested while row i is worked on, so several memory misses are in flight at once.
PREFETCH_DISTANCE = 16
ACCOUNT_INDEX_SLOTS_PER_ACCOUNT_MIN = 1.5  # load <= 2/3 keeps linear probes short


@numba.njit(inline="always", cache=True)
def mix64(key):
    """splitmix64's finaliser of a key (int64 bit pattern) -> uint64."""
    x = np.uint64(key)
    x = (x ^ (x >> _S30)) * SPLITMIX64_MULTIPLIER_1
    x = (x ^ (x >> _S27)) * SPLITMIX64_MULTIPLIER_2
    return x ^ (x >> _S31)


@numba.njit(inline="always", cache=True)
def shard_of_key(key, shard_count):
    return np.int64((mix64(key) >> _S32) % np.uint64(shard_count))


@numba.njit(cache=True)
def shard_of(keys, shard_count):
    """Shard index (int64) of every key."""
    out = np.empty(len(keys), np.int64)
    for i in range(len(keys)):
        out[i] = shard_of_key(keys[i], shard_count)
    return out


@numba.njit(cache=True)
def group_by_shard(shard, shard_count):
    """Stable counting sort: (order, offsets); rows of shard s are order[offsets[s]:offsets[s+1]].

    Rows with shard < 0 are left out.
    """
    counts = np.zeros(shard_count + 1, np.int64)
    for i in range(len(shard)):
        if shard[i] >= 0:
            counts[shard[i] + 1] += 1
    offsets = np.cumsum(counts)
    cursor = offsets[:-1].copy()
    order = np.empty(offsets[-1], np.int64)
    for i in range(len(shard)):
        s = shard[i]
        if s >= 0:
            order[cursor[s]] = i
            cursor[s] += 1
    return order, offsets


def pow2_at_least(n: int) -> int:
    n = max(int(n), TABLE_CAPACITY_MIN)
    return 1 << (n - 1).bit_length()


def table_capacity(slots: float) -> int:
    """A table size: any integer (multiply-shift needs no power of two), within limits."""
    capacity = max(int(slots) + 1, TABLE_CAPACITY_MIN)
    assert capacity <= TABLE_CAPACITY_MAX, f"table of {capacity} slots is past the 2**32 limit"
    return capacity


_LOW_32 = np.uint64(0xFFFFFFFF)


@numba.njit(inline="always", cache=True)
def home_slot(key, capacity):
    """First probe slot of key in a table of any capacity < 2**32 (multiply-shift range)."""
    return np.int64(((mix64(key) & _LOW_32) * np.uint64(capacity)) >> _S32)


@numba.njit(inline="always", cache=True)
def find_slot(table, key):
    """Slot of a record table holding key, or the empty slot where it would go.

    The caller keeps the table at most two-thirds full, so the probe always ends.
    """
    capacity = table.shape[0]
    slot = home_slot(key, capacity)
    while True:
        k = table[slot, 0]
        if k == key or k == 0:
            return slot
        slot += 1
        if slot == capacity:
            slot = 0


@numba.njit(cache=True)
def build_account_index(keys, capacity):
    """int32 slots of (position + 1) into keys; 0 is empty. keys unique and non-zero."""
    index = np.zeros(capacity, np.int32)
    for i in range(len(keys)):
        slot = home_slot(keys[i], capacity)
        while index[slot] != 0:
            slot += 1
            if slot == capacity:
                slot = 0
        index[slot] = i + 1
    return index


@numba.njit(inline="always", cache=True)
def account_position(index, keys, key):
    """Position of key in keys, -1 when absent."""
    if key == 0:
        return np.int64(-1)
    capacity = len(index)
    slot = home_slot(key, capacity)
    while True:
        p = np.int64(index[slot])
        if p == 0:
            return np.int64(-1)
        if keys[p - 1] == key:
            return p - 1
        slot += 1
        if slot == capacity:
            slot = 0


def account_index_capacity(account_count: int) -> int:
    return table_capacity(account_count * ACCOUNT_INDEX_SLOTS_PER_ACCOUNT_MIN)


@intrinsic
def prefetch_row(typingctx, table, row):
    """Ask the CPU to fetch the cache line of table[row] (a hint: no fault, no effect on results)."""

    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        stride = cgutils.unpack_tuple(builder, array.strides)[0]
        base = builder.ptrtoint(array.data, ir.IntType(64))
        address = builder.add(base, builder.mul(args[1], stride))
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        prefetch = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(prefetch, [builder.inttoptr(address, byte_pointer), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(table, types.intp), codegen
