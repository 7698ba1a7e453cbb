"""A shard's transfer-id log: the fields of every id row it checked, by position, on disk.

The idempotency window needs a transfer's fields only when a retry of its id arrives (to tell
EXISTS from EXISTS_WITH_DIFFERENT_FIELDS), so the id table keeps [key, position] (16 bytes a
slot) and the fields live here: row `position` of an append-only log, 48 bytes a row. Only
positions at or after the window's floor are ever read, so the log is a ring over an unlinked
temporary file (the OS frees it however the process ends, a killed Ray actor included) that
grows, by copying its live part, when the window needs more room. Reads are rare (retries):
os.pread, no memory map.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from sim.wire import FIELD_COUNT

ROW_BYTES = 8 * FIELD_COUNT
LOG_ROWS_MIN = 1 << 14
COPY_ROWS = 1 << 20  # rows moved per read/write when the log grows, and per chunk of a gather


class IdLog:
    """Rows of FIELD_COUNT int64 fields at positions [start, end); positions before start are
    forgotten (their bytes reused)."""

    def __init__(self, capacity_rows: int = LOG_ROWS_MIN):
        self.capacity = max(int(capacity_rows), LOG_ROWS_MIN)
        self.file = tempfile.TemporaryFile(prefix="xpay-ids-")  # in $TMPDIR
        self.start = 0
        self.end = 0

    def close(self) -> None:
        self.file.close()

    def append(self, fields: np.ndarray) -> int:
        """Log rows (an [n, FIELD_COUNT] int64 array) at the next positions; returns the first."""
        base = self.end
        self.write_at(base, fields)
        return base

    def write_at(self, position: int, fields: np.ndarray) -> None:
        """Rows at positions from `position` (at or after start), extending end past them."""
        assert position >= self.start
        n = len(fields)
        if n == 0:
            return
        last = max(self.end, position + n)
        if last - self.start > self.capacity:
            self._grow(last - self.start)
        self._pwrite(position, np.ascontiguousarray(fields, np.int64))
        self.end = last

    def forget_before(self, floor: int) -> None:
        """Positions before floor are never read again (the window moved past them)."""
        self.start = min(max(self.start, int(floor)), self.end)

    def read(self, positions: np.ndarray) -> np.ndarray:
        """The rows at `positions` (each in [start, end)), as an [n, FIELD_COUNT] int64 array."""
        positions = np.asarray(positions, np.int64)
        out = np.empty((len(positions), FIELD_COUNT), np.int64)
        if len(positions) == 0:
            return out
        if positions.min() < self.start or positions.max() >= self.end:
            raise ValueError(f"id log: positions outside [{self.start}, {self.end})")
        if len(positions) < 4096:
            for i, p in enumerate(positions):
                out[i] = self._pread(int(p), 1)[0]
            return out
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        at = 0
        while at < len(ordered):  # one contiguous read per chunk of positions
            first = int(ordered[at])
            stop = int(np.searchsorted(ordered, first + COPY_ROWS, "left"))
            chunk = self._pread(first, int(ordered[stop - 1]) - first + 1)
            out[order[at:stop]] = chunk[ordered[at:stop] - first]
            at = stop
        return out

    # --- the ring ---------------------------------------------------------------------------------
    def _pread(self, position: int, count: int) -> np.ndarray:
        out = np.empty((count, FIELD_COUNT), np.int64)
        flat = out.reshape(-1).view(np.uint8)
        done = 0
        while done < count:
            slot = (position + done) % self.capacity
            run = min(count - done, self.capacity - slot)
            view = memoryview(flat[done * ROW_BYTES:(done + run) * ROW_BYTES])
            got = os.preadv(self.file.fileno(), [view], slot * ROW_BYTES)
            if got != run * ROW_BYTES:
                raise OSError(f"id log: short read ({got} of {run * ROW_BYTES} bytes)")
            done += run
        return out

    def _pwrite(self, position: int, rows: np.ndarray) -> None:
        flat = rows.reshape(-1).view(np.uint8)
        done, count = 0, len(rows)
        while done < count:
            slot = (position + done) % self.capacity
            run = min(count - done, self.capacity - slot)
            data = memoryview(flat[done * ROW_BYTES:(done + run) * ROW_BYTES])
            written = 0
            while written < len(data):
                written += os.pwrite(self.file.fileno(), data[written:], slot * ROW_BYTES + written)
            done += run

    def _grow(self, rows_needed: int) -> None:
        """A bigger ring (twice what is needed), the live rows [start, end) copied over."""
        old = IdLog.__new__(IdLog)
        old.__dict__.update(self.__dict__)
        self.capacity = max(2 * int(rows_needed), LOG_ROWS_MIN)
        self.file = tempfile.TemporaryFile(prefix="xpay-ids-")
        try:
            for first in range(old.start, old.end, COPY_ROWS):
                count = min(COPY_ROWS, old.end - first)
                self._pwrite(first, old._pread(first, count))
        except BaseException:
            self.file.close()
            self.__dict__.update(old.__dict__)  # still the old ring, whole
            raise
        old.close()
