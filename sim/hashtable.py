"""Hashing of uint64 keys: shard routing and open-addressing tables, as numba kernels.

Keys (account ids, transfer ids) are arbitrary non-zero uint64 values, stored as int64 bit
patterns; 0 marks an empty slot. One mix (splitmix64's finaliser) serves both purposes: its
high 32 bits pick the shard, its low bits the slot inside a shard's table, so the two are
independent. Record tables are row-major 2-D int64 arrays whose column 0 is the key, so one
entry is one or two cache lines. Accounts need no table: a shard stores its account ids
grouped by hash bucket, and an int32 directory of bucket starts finds them (account_layout).
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
# A shard's accounts are kept grouped by hash bucket (account_layout), ACCOUNTS_PER_BUCKET of
# them per bucket on average, so the directory costs 4 / ACCOUNTS_PER_BUCKET bytes an account
# and a look-up scans one bucket's keys, contiguous.
ACCOUNTS_PER_BUCKET = 8


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
def account_layout(keys, bucket_count):
    """(order, directory) of a shard's accounts: keys[order] grouped by their bucket
    home_slot(key, bucket_count), in their given order within a bucket; bucket b's accounts
    then sit at directory[b]:directory[b + 1]. keys unique and non-zero, fewer than 2**31."""
    bucket = np.empty(len(keys), np.int64)
    for i in range(len(keys)):
        bucket[i] = home_slot(keys[i], bucket_count)
    order, offsets = group_by_shard(bucket, bucket_count)
    return order, offsets.astype(np.int32)


@numba.njit(inline="always", cache=True)
def account_position(directory, keys, key):
    """Position of key in keys laid out by account_layout, -1 when absent: a scan of one
    bucket (ACCOUNTS_PER_BUCKET keys on average, one or two cache lines)."""
    if key == 0:
        return np.int64(-1)
    bucket = home_slot(key, len(directory) - 1)
    for p in range(directory[bucket], directory[bucket + 1]):
        if keys[p] == key:
            return np.int64(p)
    return np.int64(-1)


def account_bucket_count(account_count: int) -> int:
    return max(1, -(-int(account_count) // ACCOUNTS_PER_BUCKET))


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
