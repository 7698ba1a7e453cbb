"""A run folder as Python objects: ``load_run(DIR)`` returns a `Run` whose tables are pandas.

Every table is read from the folder's files when asked for (nothing is cached but the
summary), so a `Run` is cheap to make and always shows what is on disk. Status and business
code columns come back as named categoricals (``ok``, ``exceeds_credits``, ``p2p``,
``card_capture``...), with every name of the contract as a category, so counts and plots show
the kinds that did not occur as zeros instead of dropping them.

Refused: a path that is not a folder, a folder without ``summary.json`` (not a run folder),
and a table the run did not write (the error names the file and which command writes it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from sim.constants import CODE_NAMES, STATUS_NAMES

SUMMARY_FILE = "summary.json"
CODE_MAX = 99  # the contract reserves 16..99 for new kinds


def status_names() -> pd.CategoricalDtype:
    """The dtype of every status column: the contract's status names, in code order."""
    return pd.CategoricalDtype(list(STATUS_NAMES), ordered=False)


def code_names() -> pd.CategoricalDtype:
    """The dtype of every business-code column: the contract's kind names, in code order."""
    return pd.CategoricalDtype([CODE_NAMES[code] for code in sorted(CODE_NAMES)], ordered=False)


def named_statuses(codes) -> pd.Categorical:
    """Status codes (any integer array) as the contract's names; an unknown code is refused."""
    return _named(codes, list(STATUS_NAMES), "status")


def named_codes(codes) -> pd.Categorical:
    """Business codes as the contract's kind names; the free codes 16..99 become ``code_N``."""
    names = [CODE_NAMES[code] for code in sorted(CODE_NAMES)]
    values = pd.Series(codes).to_numpy()
    if len(values) and values.max() >= len(names):
        names += [f"code_{code}" for code in range(len(names), CODE_MAX + 1)]
    return _named(values, names, "code")


def _named(codes, names: list[str], what: str) -> pd.Categorical:
    values = pd.Series(codes).to_numpy().astype("int64")
    outside = (values < 0) | (values >= len(names))
    if outside.any():
        row = int(outside.argmax())
        raise ValueError(f"row {row}: {what}(={int(values[row])}) is not a code of the contract"
                         f" (0..{len(names) - 1})")
    return pd.Categorical.from_codes(values, categories=names)


@dataclass(frozen=True)
class Run:
    """One run folder. ``summary`` is ``summary.json`` as a dict; the methods read tables."""

    folder: Path
    summary: dict

    def results(self) -> pd.DataFrame:
        """One row per input row: ``id``, ``status`` (named), ``epoch``."""
        frame = self._table("results.parquet", "xpay run / xpay replay")
        frame["status"] = named_statuses(frame["status"])
        return frame

    def balances(self) -> pd.DataFrame:
        """Every account's four balance fields after the last epoch (int64 minor units)."""
        return self._table("balances.parquet", "xpay run / xpay replay")

    def audit(self) -> pd.DataFrame:
        """Per epoch boundary and ledger: exact sums (decimals) and the invariant verdicts."""
        return self._table("audit.parquet", "xpay run / xpay replay")

    def epochs(self) -> pd.DataFrame:
        """One row per epoch: sim start, wall times, rows, committed, statuses, shard busy time."""
        return self._table("epochs.parquet", "xpay run / xpay replay")

    def latency(self) -> pd.DataFrame:
        """Payment latency histogram buckets (``--rate`` runs): ``kind`` (``all`` or a business
        code's name), ``code`` (-1 for all), ``low_ms``/``high_ms`` (the bucket), ``count``."""
        frame = self._table("latency.parquet", "xpay run / xpay replay with --rate")
        frame["kind"] = frame["kind"].astype("category")
        return frame

    def accounts(self) -> pd.DataFrame:
        """The run's input accounts."""
        return self._table("accounts.parquet", "xpay run (a replay records its input paths)")

    def workload(self) -> pd.DataFrame:
        """The run's input transfers, with ``code`` named."""
        frame = self._table("workload.parquet", "xpay run (a replay records its input paths)")
        frame["code"] = named_codes(frame["code"])
        return frame

    def describe(self) -> dict:
        """Realised statistics of the run's workload (`workloads.describe`: mix, amounts,
        hourly curve, bursts, flags, retries), as plain data."""
        from workloads.describe import describe_dir

        folder = self._path("workload.parquet").parent
        if self._path("accounts.parquet").parent != folder:
            raise FileNotFoundError(f"{self.folder}: the run's accounts and workload files are in"
                                    " different folders; describe them with workloads.describe")
        return describe_dir(folder)

    def report(self) -> Path:
        """Draw report.html and plots/ into the run folder; returns the page's path."""
        from xpay.html_report import write_report

        return write_report(self.folder)

    def _table(self, name: str, writer: str) -> pd.DataFrame:
        path = self._path(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not in this run folder (written by {writer})")
        return pq.read_table(path).to_pandas()

    def _path(self, name: str) -> Path:
        """Inputs of a replay stay where the user keeps them: summary.json names them."""
        inputs = self.summary.get("configuration", {})
        key = {"accounts.parquet": "accounts_path", "workload.parquet": "workload_path"}.get(name)
        local = self.folder / name
        if key and not local.exists() and inputs.get(key):
            return Path(inputs[key])
        return local

    def __repr__(self) -> str:
        s = self.summary
        if not s.get("completed", False):
            return f"Run({str(self.folder)!r}, incomplete: {s.get('error', 'no error recorded')})"
        return (f"Run({str(self.folder)!r}, {s.get('rows', 0):,} rows, {s.get('shards')} shards,"
                f" {s.get('rows_per_s') or 0:,.0f} rows/s)")


def load_run(folder) -> Run:
    """The run in ``folder`` (written by ``xpay run``, ``xpay replay`` or ``xpay.run``)."""
    folder = Path(folder)
    if folder.is_file():
        raise NotADirectoryError(f"{folder}: a file; load_run takes the run folder that holds it"
                                 f" ({folder.parent})")
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    path = folder / SUMMARY_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a run folder (no {SUMMARY_FILE})")
    return Run(folder=folder, summary=json.loads(path.read_text()))
