"""The on-disk side of LEDGER_SPEC.md: exact Arrow schemas and strict Parquet readers/writers.

Readers refuse a file whole with `sim.errors.InputRefused`, whose message is one line:
``<path>: <what is wrong>`` naming the column and/or the 0-based row in the file and the rule
broken. Nothing is returned from a refused file. The checks are the file-level rules of the
spec (types, nulls, columns, zero/duplicate account ids, unknown account flag bits,
non-decreasing epoch and sim_time_us); row-level transfer problems are not file errors, the
ledger gives those rows status codes.

All checks are vectorised (numpy/pyarrow), so 16M-row workloads and multi-million-account
files are read without Python loops over rows. Column order in a file may differ from the
spec's; the returned column sets and tables are always in spec order. Arrays returned by the
readers are read-only (they may be zero-copy views of Arrow buffers).

Writers produce byte-identical files for the same data (fixed Parquet options, no pandas
metadata) and write through a temporary file in the target directory renamed into place with
`os.replace`, so a failed write never leaves a partial file under the final name.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sim.columns import (
    ACCOUNT_DTYPES,
    BALANCE_DTYPES,
    RESULT_DTYPES,
    TRANSFER_DTYPES,
    Accounts,
    Balances,
    Transfers,
    WorkloadFacts,
)
from sim.constants import ACCOUNT_FLAGS_KNOWN, FLAG_PENDING
from sim.errors import InputRefused
from sim.parquet_pages import count_problem

_ARROW_TYPES = {
    np.dtype(np.uint64): pa.uint64(),
    np.dtype(np.uint32): pa.uint32(),
    np.dtype(np.uint16): pa.uint16(),
    np.dtype(np.int64): pa.int64(),
}


def _schema(dtypes: dict) -> pa.Schema:
    """A non-nullable Arrow schema whose fields follow `dtypes` in order."""
    return pa.schema([pa.field(n, _ARROW_TYPES[np.dtype(d)], nullable=False) for n, d in dtypes.items()])


ACCOUNTS_SCHEMA = _schema(ACCOUNT_DTYPES)
WORKLOAD_SCHEMA = _schema(TRANSFER_DTYPES)
RESULTS_SCHEMA = _schema(RESULT_DTYPES)
BALANCES_SCHEMA = _schema(BALANCE_DTYPES)

# Fixed writer options: same data -> same bytes (for a given pyarrow version).
ROW_GROUP_SIZE = 1 << 20
_WRITE_OPTIONS = dict(
    compression="zstd",
    compression_level=1,
    use_dictionary=False,
    version="2.6",
    data_page_version="1.0",
    write_statistics=True,
    store_schema=True,
    write_page_checksum=True,  # CRC32 per page: readers detect corrupt pages, not just bad footers
)


# --- reading --------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(str(text).split()) or "no detail"


def _refuse(path, detail: str) -> InputRefused:
    return InputRefused(_one_line(f"{os.fspath(path)}: {detail}"))


def _open(path) -> pq.ParquetFile:
    """The file opened as one Parquet file, or InputRefused if it cannot be."""
    name = os.fspath(path)
    if not os.path.exists(name):
        raise _refuse(path, "file not found")
    if not os.path.isfile(name):
        raise _refuse(path, "not a regular file")
    try:
        # pre_buffer=False: with it, iter_batches keeps every row group's bytes it has read
        # until the file is closed (measured: ~18 bytes a row held, 9 GB over 500M rows), so
        # a streamed read would grow with the file; without it, memory stays flat and a local
        # read is no slower (60M rows: 4.0-4.6 s against 5.5-6.8 s with it)
        return pq.ParquetFile(name, page_checksum_verification=True, pre_buffer=False)
    except Exception as exc:  # ArrowInvalid, OSError, ...: any failure means refused
        raise _refuse(path, f"not a readable Parquet file ({exc})") from None


def _check_columns(path, found: pa.Schema, expected: pa.Schema) -> None:
    """Missing, duplicated, extra and wrongly typed columns, before any data is read."""
    names = found.names
    for name in expected.names:
        if name not in names:
            raise _refuse(path, f"column {name}: missing (required by the spec)")
    for name in names:
        if names.count(name) > 1:
            raise _refuse(path, f"column {name}: appears {names.count(name)} times")
    extra = [n for n in names if n not in expected.names]
    if extra:
        plural = "s" if len(extra) > 1 else ""
        raise _refuse(path, f"column{plural} {', '.join(extra)}: unknown extra column{plural} (not in the spec)")
    for field in expected:
        found_type = found.field(field.name).type
        if found_type != field.type:
            raise _refuse(path, f"column {field.name}: expected {field.type}, found {found_type}")


def _check_row_counts(path, metadata) -> None:
    """The footer's row counts against the page headers (a lying footer drops rows silently)."""
    try:
        problem = count_problem(path, metadata)
    except Exception as exc:  # a page header that cannot be parsed
        raise _refuse(path, f"corrupt Parquet data ({exc})") from None
    if problem is not None:
        raise _refuse(path, f"metadata and data disagree: {problem}")


def _read_columns(path, expected: pa.Schema) -> dict:
    """The file's columns (name -> ChunkedArray) in spec order, type-checked and free of nulls."""
    with _open(path) as parquet:
        try:
            found = parquet.schema_arrow
        except Exception as exc:  # a footer pyarrow cannot map to Arrow types
            raise _refuse(path, f"not a readable Parquet file ({exc})") from None
        _check_columns(path, found, expected)
        _check_row_counts(path, parquet.metadata)
        try:
            table = parquet.read(columns=expected.names)
        except Exception as exc:  # truncated or corrupt pages
            raise _refuse(path, f"corrupt Parquet data ({exc})") from None
        if table.num_rows != parquet.metadata.num_rows:
            raise _refuse(path, f"the footer says {parquet.metadata.num_rows} rows, the data"
                                f" holds {table.num_rows}")
    columns = {name: table.column(name) for name in expected.names}
    del table  # the caller may release each column as it converts it
    for field in expected:
        column = columns[field.name]
        if column.type != field.type:  # defensive: the data must match the footer
            raise _refuse(path, f"column {field.name}: expected {field.type}, found {column.type}")
        if column.null_count:
            row = pc.index(pc.is_null(column), True).as_py()
            raise _refuse(path, f"column {field.name}, row {row}: null value (nulls are not allowed)")
    return columns


def _numpy_columns(columns: dict) -> dict:
    """Each column as one read-only numpy array; `columns` is emptied so memory is freed early."""
    out = {}
    for name in list(columns):
        array = columns.pop(name).to_numpy(zero_copy_only=False)
        array.flags.writeable = False
        out[name] = array
    return out


def _check_account_ids(path, ids: np.ndarray) -> None:
    zero = ids == 0
    if zero.any():
        raise _refuse(path, f"column id, row {int(zero.argmax())}: account id must not be zero")
    ordered = np.sort(ids)
    same = ordered[1:] == ordered[:-1]
    if not same.any():
        return
    dup_id = ordered[int(same.argmax())]
    rows = np.flatnonzero(ids == dup_id)
    raise _refuse(
        path,
        f"column id, rows {int(rows[0])} and {int(rows[1])}: duplicate account id {int(dup_id)}"
        " (account ids must be unique)",
    )


def _check_account_flags(path, flags: np.ndarray) -> None:
    unknown = flags & np.uint16(~ACCOUNT_FLAGS_KNOWN & 0xFFFF)
    bad = unknown != 0
    if bad.any():
        row = int(bad.argmax())
        raise _refuse(
            path,
            f"column flags, row {row}: unknown account flag bits 0x{int(unknown[row]):x}"
            f" in flags {int(flags[row])} (known bits: 0x{ACCOUNT_FLAGS_KNOWN:x})",
        )


def _check_non_decreasing(path, name: str, values: np.ndarray, first_row: int = 0,
                          before: int | None = None) -> None:
    """values (rows first_row... of the file) never go down, nor below `before`, the value on
    the row just above them."""
    if before is not None and len(values) and int(values[0]) < before:
        raise _refuse(
            path,
            f"column {name}, row {first_row}: {name} {int(values[0])} is less than {before} on row"
            f" {first_row - 1} ({name} must not decrease down the file)",
        )
    down = values[1:] < values[:-1]
    if down.any():
        row = int(down.argmax()) + 1
        raise _refuse(
            path,
            f"column {name}, row {first_row + row}: {name} {int(values[row])} is less than"
            f" {int(values[row - 1])} on row {first_row + row - 1} ({name} must not decrease down the file)",
        )


def read_accounts(path) -> Accounts:
    """accounts.parquet as Accounts; InputRefused if the file breaks any rule of the spec."""
    columns = _numpy_columns(_read_columns(path, ACCOUNTS_SCHEMA))
    _check_account_ids(path, columns["id"])
    _check_account_flags(path, columns["flags"])
    return Accounts.from_columns(**columns)


def read_workload(path) -> Transfers:
    """workload.parquet as Transfers; InputRefused for file-level errors only (not row errors)."""
    columns = _numpy_columns(_read_columns(path, WORKLOAD_SCHEMA))
    _check_non_decreasing(path, "epoch", columns["epoch"])
    _check_non_decreasing(path, "sim_time_us", columns["sim_time_us"])
    return Transfers.from_columns(**columns)


def read_results(path) -> pa.Table:
    """results.parquet as an Arrow table of exactly RESULTS_SCHEMA (types and nulls checked)."""
    columns = _read_columns(path, RESULTS_SCHEMA)
    return pa.Table.from_arrays(list(columns.values()), schema=RESULTS_SCHEMA)


def read_balances(path) -> Balances:
    """balances.parquet as Balances (types and nulls checked)."""
    return Balances.from_columns(**_numpy_columns(_read_columns(path, BALANCES_SCHEMA)))


# --- reading epoch by epoch ---------------------------------------------------------------

# Rows decoded at a time when a workload is streamed: the reader holds this many rows (plus
# the epoch they end in, and PREFETCH_BATCHES read ahead), whatever the file's size.
STREAM_BATCH_ROWS = 1 << 20
PREFETCH_BATCHES = 2
_SCANNED_COLUMNS = ("epoch", "sim_time_us", "flags")


class WorkloadReader:
    """workload.parquet read epoch by epoch in bounded memory.

    Opening it refuses (InputRefused) a file that breaks a file-level rule, before anything
    runs: columns and types, the footer's row counts against the page headers, nulls (from the
    row groups' statistics, or by reading the column where a statistic is missing), and
    non-decreasing epoch and sim_time_us (one streaming pass over epoch, sim_time_us and flags,
    which also gives `facts`). `epochs()` then yields one Transfers per epoch, in file order,
    with the batches decoded on a background thread PREFETCH_BATCHES ahead.
    """

    def __init__(self, path, batch_rows: int = STREAM_BATCH_ROWS):
        self.path = path
        self.batch_rows = int(batch_rows)
        with _open(path) as parquet:
            try:
                found = parquet.schema_arrow
            except Exception as exc:
                raise _refuse(path, f"not a readable Parquet file ({exc})") from None
            _check_columns(path, found, WORKLOAD_SCHEMA)
            _check_row_counts(path, parquet.metadata)
            unproven = _columns_without_null_counts(parquet.metadata, WORKLOAD_SCHEMA.names)
            self.facts = self._scan(parquet, sorted(set(_SCANNED_COLUMNS) | unproven))

    def __len__(self) -> int:
        return self.facts.rows

    def _batches(self, parquet: pq.ParquetFile, columns) -> Iterator[tuple[int, pa.RecordBatch]]:
        """(first row, batch) of the given columns, nulls refused with their row."""
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=self.batch_rows, columns=list(columns)):
                for name in columns:
                    column = batch.column(name)
                    if column.null_count:
                        at = row + pc.index(pc.is_null(column), True).as_py()
                        raise _refuse(self.path, f"column {name}, row {at}: null value (nulls are not allowed)")
                yield row, batch
                row += batch.num_rows
        except InputRefused:
            raise
        except Exception as exc:  # truncated or corrupt pages
            raise _refuse(self.path, f"corrupt Parquet data ({exc})") from None
        if row != parquet.metadata.num_rows:
            raise _refuse(self.path, f"the footer says {parquet.metadata.num_rows} rows, the data holds {row}")

    def _scan(self, parquet: pq.ParquetFile, columns) -> WorkloadFacts:
        last = {"epoch": None, "sim_time_us": None}  # the values on the row above the batch
        epochs = widest = pending = 0
        run = 0  # rows so far of the epoch the last batch ended in
        first_us = None
        for row, batch in self._batches(parquet, columns):
            if batch.num_rows == 0:
                continue
            epoch = batch.column("epoch").to_numpy()
            time_us = batch.column("sim_time_us").to_numpy()
            for name, values in (("epoch", epoch), ("sim_time_us", time_us)):
                _check_non_decreasing(self.path, name, values, row, last[name])
            if last["epoch"] != int(epoch[0]):  # the batch starts a new epoch
                widest, run, epochs = max(widest, run), 0, epochs + 1
            change = np.flatnonzero(epoch[1:] != epoch[:-1]) + 1
            if len(change):
                widest = max(widest, run + int(change[0]), int(np.diff(change).max(initial=0)))
                run = 0
            run += len(epoch) - int(change[-1] if len(change) else 0)
            epochs += len(change)
            pending += int(np.count_nonzero(batch.column("flags").to_numpy() & FLAG_PENDING))
            first_us = int(time_us[0]) if first_us is None else first_us
            last = {"epoch": int(epoch[-1]), "sim_time_us": int(time_us[-1])}
        return WorkloadFacts(parquet.metadata.num_rows, epochs, max(widest, run), pending, first_us,
                             last["sim_time_us"])

    def epochs(self) -> Iterator[Transfers]:
        """One Transfers per epoch, in file order (a fresh pass over the file each call)."""
        carry: Transfers | None = None
        for part in _prefetched(self._transfer_batches(), PREFETCH_BATCHES):
            if carry is not None:  # the epoch the last batch ended in may go on here
                same = int(np.searchsorted(part.epoch, carry.epoch[0], side="right"))  # non-decreasing
                carry = Transfers.concat([carry, part.slice(0, same)])
                if same == len(part):
                    continue
                yield carry
                carry, part = None, part.slice(same, len(part))
            bounds = part.epoch_bounds()
            for start, stop in bounds[:-1]:
                yield part.slice(start, stop)
            if bounds:
                carry = part.slice(*bounds[-1])
        if carry is not None:
            yield carry

    def _transfer_batches(self) -> Iterator[Transfers]:
        with _open(self.path) as parquet:
            for _, batch in self._batches(parquet, WORKLOAD_SCHEMA.names):
                yield Transfers.from_columns(**{name: batch.column(name).to_numpy(zero_copy_only=False)
                                                for name in WORKLOAD_SCHEMA.names})


def _columns_without_null_counts(metadata, names) -> set:
    """Columns some row group of which does not prove, by its statistics, to hold no null."""
    unproven = set()
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            name = chunk.path_in_schema
            stats = chunk.statistics
            if name in names and (stats is None or not stats.has_null_count or stats.null_count != 0):
                unproven.add(name)
    return unproven


def _prefetched(iterator: Iterator, depth: int) -> Iterator:
    """The items of `iterator`, produced on a background thread up to `depth` ahead (pyarrow
    decodes without the GIL, so reading overlaps the consumer's work). An exception raised
    while producing is raised here, in order; a consumer that stops early stops the thread."""
    import queue
    import threading

    items: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        items.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put((done, None))
        except BaseException as exc:  # handed to the consumer
            items.put((done, exc))

    thread = threading.Thread(target=produce, name="workload-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = items.get()
            if item is done:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            try:
                items.get_nowait()
            except queue.Empty:
                pass
            thread.join(timeout=0.05)


# --- writing --------------------------------------------------------------------------------


def _table(schema: pa.Schema, columns: dict) -> pa.Table:
    """A table of exactly `schema`; values that do not fit a column's type raise (safe casts)."""
    arrays = [pa.array(np.asarray(columns[f.name]), type=f.type) for f in schema]
    lengths = {len(a) for a in arrays}
    if len(lengths) > 1:
        raise ValueError(f"columns of unequal length: {dict(zip(schema.names, map(len, arrays)))}")
    return pa.Table.from_arrays(arrays, schema=schema)


def _write(path, table: pa.Table) -> None:
    """Write `table` to a temporary file beside `path`, then rename it into place."""
    final = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(final))
    fd, temp = tempfile.mkstemp(prefix=f".{os.path.basename(final)}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        pq.write_table(table, temp, row_group_size=ROW_GROUP_SIZE, **_WRITE_OPTIONS)
        os.chmod(temp, 0o666 & ~current_umask())  # mkstemp made it 0600: the umask decides
        os.replace(temp, final)
    except BaseException:
        if os.path.exists(temp):
            os.unlink(temp)
        raise


def current_umask() -> int:
    """This process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_accounts(path, accounts: Accounts) -> None:
    _write(path, _table(ACCOUNTS_SCHEMA, accounts.columns()))


def write_workload(path, transfers: Transfers) -> None:
    _write(path, _table(WORKLOAD_SCHEMA, transfers.columns()))


class _StreamWriter:
    """Streams column sets into a Parquet file of `schema` in ROW_GROUP_SIZE row groups, so a
    file far larger than memory can be written; the bytes equal _write's for the same rows.
    Written to a temporary file and renamed into place on a clean close."""

    schema: pa.Schema

    def __init__(self, path):
        self.final = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(self.final))
        fd, self.temp = tempfile.mkstemp(prefix=f".{os.path.basename(self.final)}.", suffix=".tmp", dir=directory)
        os.close(fd)
        self._writer = pq.ParquetWriter(self.temp, self.schema, **_WRITE_OPTIONS)
        self._parts: list[pa.Table] = []
        self._buffered = 0
        self.rows = 0

    def write_columns(self, columns: dict) -> None:
        part = _table(self.schema, columns)
        if len(part) == 0:
            return
        self._parts.append(part)
        self._buffered += len(part)
        self.rows += len(part)
        while self._buffered >= ROW_GROUP_SIZE:
            self._flush(ROW_GROUP_SIZE)

    def _flush(self, rows: int) -> None:
        table = pa.concat_tables(self._parts).combine_chunks() if self._parts else self.schema.empty_table()
        self._writer.write_table(table.slice(0, rows), row_group_size=ROW_GROUP_SIZE)
        rest = table.slice(rows)
        self._parts = [rest] if len(rest) else []
        self._buffered = len(rest)

    def close(self) -> None:
        if self._buffered or self.rows == 0:
            self._flush(self._buffered)
        self._writer.close()
        os.chmod(self.temp, 0o666 & ~current_umask())
        os.replace(self.temp, self.final)

    def abort(self) -> None:
        self._writer.close()
        if os.path.exists(self.temp):
            os.unlink(self.temp)

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


class WorkloadWriter(_StreamWriter):
    """workload.parquet written epoch by epoch (bytes equal to write_workload's)."""

    schema = WORKLOAD_SCHEMA

    def write(self, transfers: Transfers) -> None:
        self.write_columns(transfers.columns())


class ResultsWriter(_StreamWriter):
    """results.parquet written epoch by epoch (bytes equal to write_results')."""

    schema = RESULTS_SCHEMA

    def write(self, ids: np.ndarray, status: np.ndarray, epoch: np.ndarray) -> None:
        self.write_columns({"id": ids, "status": status, "epoch": epoch})


def write_results(path, ids: np.ndarray, status: np.ndarray, epoch: np.ndarray) -> None:
    _write(path, _table(RESULTS_SCHEMA, {"id": ids, "status": status, "epoch": epoch}))


def write_balances(path, balances: Balances) -> None:
    _write(path, _table(BALANCES_SCHEMA, balances.columns()))
