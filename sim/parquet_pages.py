"""Row counts of a Parquet file recounted from its page headers, to catch a lying footer.

A reader trusts the footer's row counts: a footer saying 161 rows over pages holding 168 makes
pyarrow return 161 rows and drop the rest without a word. `count_problem` walks every column
chunk's page headers (Thrift compact protocol, parsed here; only the few fields needed are
kept) and compares the values they hold with the footer's counts: the file's, each row group's
and each column chunk's. The schemas of LEDGER_SPEC.md are flat and non-nullable, so values
and rows are the same count.
"""

from __future__ import annotations

import pyarrow.parquet as pq

DATA_PAGE, DATA_PAGE_V2 = 0, 3  # parquet.thrift PageType values that hold column values
HEADER_READ_BYTES = 4096  # a page header is read in chunks of this, grown when too short
HEADER_BYTES_MAX = 16 * 1024**2


class _Short(Exception):
    """The bytes read so far end inside the header."""


class _Reader:
    """A Thrift compact-protocol reader over bytes."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def byte(self) -> int:
        if self.at >= len(self.data):
            raise _Short
        self.at += 1
        return self.data[self.at - 1]

    def varint(self) -> int:
        value, shift = 0, 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 70:
                raise ValueError("varint longer than 10 bytes")

    def zigzag(self) -> int:
        v = self.varint()
        return (v >> 1) ^ -(v & 1)

    def skip_bytes(self, n: int) -> None:
        if self.at + n > len(self.data):
            raise _Short
        self.at += n

    def struct(self, keep: dict | None = None) -> dict:
        """Read a struct; returns {field id: value} for ints and the nested structs in keep
        (keep maps a field id to its own keep dict); other fields are skipped."""
        out, field = {}, 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == 0:
                return out
            delta = head >> 4
            field = field + delta if delta else self.zigzag()
            if kind == 12 and keep is not None and field in keep:
                out[field] = self.struct(keep[field])
            elif kind in (4, 5, 6):
                out[field] = self.zigzag()
            else:
                self.skip(kind)

    def element(self, kind: int) -> None:
        """Skip one list, set or map element (a bool element takes a byte of its own)."""
        if kind in (1, 2):
            self.skip_bytes(1)
        else:
            self.skip(kind)

    def skip(self, kind: int) -> None:
        if kind in (1, 2):
            return
        if kind == 3:
            self.skip_bytes(1)
        elif kind in (4, 5, 6):
            self.varint()
        elif kind == 7:
            self.skip_bytes(8)
        elif kind == 8:
            self.skip_bytes(self.varint())
        elif kind in (9, 10):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            for _ in range(size):
                self.element(head & 0x0F)
        elif kind == 11:
            size = self.varint()
            if size:
                types = self.byte()
                for _ in range(size):
                    self.element(types >> 4)
                    self.element(types & 0x0F)
        elif kind == 12:
            self.struct()
        else:
            raise ValueError(f"unknown Thrift compact type {kind}")


_PAGE_KEEP = {5: {}, 8: {}}  # data_page_header, data_page_header_v2: num_values is field 1


def _page_header(f, offset: int) -> tuple[dict, int]:
    """The page header at offset: (fields, its length in bytes)."""
    size = HEADER_READ_BYTES
    while True:
        f.seek(offset)
        data = f.read(size)
        reader = _Reader(data)
        try:
            return reader.struct(_PAGE_KEEP), reader.at
        except _Short:
            if len(data) < size or size >= HEADER_BYTES_MAX:
                raise ValueError(f"page header at byte {offset} runs past the file") from None
            size *= 4


def chunk_values(f, column) -> int:
    """The values the data pages of one column chunk hold, by their own headers."""
    start = column.data_page_offset
    if column.has_dictionary_page and 0 < column.dictionary_page_offset < start:
        start = column.dictionary_page_offset
    end, at, values = start + column.total_compressed_size, start, 0
    while at < end:
        header, length = _page_header(f, at)
        if header.get(1) in (DATA_PAGE, DATA_PAGE_V2):
            values += header.get(5 if header[1] == DATA_PAGE else 8, {}).get(1, 0)
        compressed = header.get(3, -1)
        if compressed < 0:
            raise ValueError(f"page at byte {at} has no valid compressed size")
        at += length + compressed
    if at != end:
        raise ValueError(f"pages end at byte {at}, the footer says {end}")
    return values


def count_problem(path, metadata: pq.FileMetaData) -> str | None:
    """What disagrees between the footer's counts and the page headers, or None."""
    groups = [metadata.row_group(i) for i in range(metadata.num_row_groups)]
    group_rows = sum(g.num_rows for g in groups)
    if group_rows != metadata.num_rows:
        return f"the footer says {metadata.num_rows} rows, its row groups {group_rows}"
    with open(path, "rb") as f:
        for i, group in enumerate(groups):
            for j in range(group.num_columns):
                column = group.column(j)
                pages = chunk_values(f, column)
                if not column.num_values == pages == group.num_rows:
                    return (f"row group {i}, column {column.path_in_schema}: the footer says"
                            f" {group.num_rows} rows and {column.num_values} values, the pages"
                            f" hold {pages} values")
    return None
