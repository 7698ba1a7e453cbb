"""The run summary: invariant verdicts, throughput and latency figures, versions, hardware.

Everything here turns an engine result into data (``summary.json``, a dict pandas can read)
and one readable table; nothing here changes a result.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

import numpy as np

from sim.columns import Balances
from sim.constants import STATUS_COUNT, STATUS_NAMES

PACKAGES_REPORTED = ("xpay-sim", "ray", "numpy", "numba", "pyarrow", "simpy")
VIOLATIONS_LISTED_MAX = 20


def status_counts(status: np.ndarray) -> dict[str, int]:
    return counts_by_name(np.bincount(status.astype(np.int64), minlength=STATUS_COUNT))


def counts_by_name(counts: np.ndarray) -> dict[str, int]:
    """Rows per status name, from counts indexed by status code."""
    return {STATUS_NAMES[c]: int(counts[c]) for c in range(STATUS_COUNT)}


def latency_summary(latency_ms: list[float]) -> dict:
    if not latency_ms:
        return {"p50": None, "p99": None, "max": None}
    values = np.asarray(latency_ms)
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
            "max": float(values.max())}


def result_digest(status: np.ndarray, balances: Balances) -> str:
    """sha256 of what was computed: statuses then the four balance columns, little-endian."""
    digest = ResultDigest()
    digest.add_status(status)
    return digest.finish(balances)


class ResultDigest:
    """result_digest built as the statuses come, an epoch at a time (streaming runs)."""

    def __init__(self):
        self._sha = hashlib.sha256()

    def add_status(self, status: np.ndarray) -> None:
        self._sha.update(np.ascontiguousarray(status, "<u2").tobytes())

    def finish(self, balances: Balances) -> str:
        self._sha.update(memoryview(np.ascontiguousarray(balances.id, "<u8")))  # no copy
        for name in ("debits_pending", "debits_posted", "credits_pending", "credits_posted"):
            self._sha.update(memoryview(np.ascontiguousarray(getattr(balances, name), "<i8")))
        return self._sha.hexdigest()


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in PACKAGES_REPORTED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    out["git_commit"] = _git_commit()
    return out


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = done.stdout.strip()
    if not commit:
        return None
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, check=False).stdout.strip()
    return commit + ("-dirty" if dirty else "")


def hardware() -> dict:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") if hasattr(os, "sysconf") else None
    return {"cores": os.cpu_count(), "memory_bytes": memory, "machine": platform.machine(),
            "system": platform.system(), "processor": platform.processor() or None}


def format_table(summary: dict) -> str:
    """The human summary `xpay run` / `xpay replay` print."""
    inv = summary["invariants"]
    lat = summary["epoch_latency_ms"]
    mix = ", ".join(f"{name} {count:,}" for name, count in summary["status_counts"].items() if count)
    divergence = summary["strict_serial_divergence"]
    rows = [
        ("rows", f"{summary['rows']:,} in {summary['epochs']:,} epochs"),
        ("committed", f"{summary['committed']:,}"),
        ("status mix", mix),
        ("shards", f"{summary['shards']} ({summary['configuration']['transport']})"),
        ("engine time", f"{summary['engine_seconds']:.3f} s (start-up {summary['startup_seconds']:.1f} s, "
                        f"reading {summary['read_seconds']:.1f} s, not included)"),
        ("throughput", f"{summary['rows_per_s']:,.0f} rows/s, {summary['committed_per_s']:,.0f} committed/s"),
        ("batch latency", f"p50 {_ms(lat['p50'])}, p99 {_ms(lat['p99'])}, max {_ms(lat['max'])}"
                          " (an epoch, submitted to committed)"),
        ("invariants", ", ".join(f"{k} {'held' if v else 'BROKEN'}" for k, v in inv.items())),
        ("strict-serial divergence", "n/a" if divergence is None else f"{divergence:.4%} of rows"),
        ("memory per account", f"{summary['engine_bytes_per_account']:.1f} bytes in the shards"),
        ("memory per windowed id", _bytes_per_id(summary.get("engine_bytes_per_windowed_id"))),
    ]
    payment = summary.get("payment_latency_ms")
    if payment:
        every = payment["all"]
        rows.insert(6, ("offered", f"{summary['offered_rows_per_s']:,.0f} rows/s, open loop"))
        rows.insert(8, ("payment latency", f"p50 {_ms(every['p50'])}, p99 {_ms(every['p99'])},"
                                           f" p99.9 {_ms(every['p99.9'])}, max {_ms(every['max'])}"
                                           " (scheduled arrival to final status)"))
    faults = summary.get("faults")
    if faults and (faults["kills"] or faults["delays"] or faults["duplicates_offered"] or faults["stale_offered"]):
        p50, p99 = faults["recovery_seconds_p50"], faults["recovery_seconds_p99"]
        recovery = "" if p50 is None else f", recovery p50 {p50:.2f} s, p99 {p99:.2f} s"
        rows.append(("faults", f"{faults['kills']} kills, {faults['recoveries']} recoveries{recovery};"
                               f" {faults['delays']} delayed, {faults['duplicates_offered']} duplicated"
                               f" ({faults['duplicates_applied']} applied twice), {faults['stale_offered']} stale"
                               f" ({faults['stale_applied']} applied)"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _ms(value) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _bytes_per_id(value) -> str:
    return ("n/a (no id was ever in the window)" if value is None
            else f"{value:.1f} bytes in the id tables (fields in the id log, on disk)")
