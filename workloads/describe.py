"""Realised statistics of a workload: what its rows actually contain, as data.

`describe(accounts, transfers)` returns a dict of plain Python values (`json.dumps` and
pandas read it as is); `format_description` turns it into a short text report;
`describe_dir` reads DIR/accounts.parquet and DIR/workload.parquet first (sim.files, so a bad
file is refused with `InputRefused`).

What is measured, and the rules behind each figure:

- `rows`, `epochs` (distinct epoch numbers, first, last), `sim_time_us` (first, last);
- `accounts`: count, count per ledger name, count with DEBITS_MUST_NOT_EXCEED_CREDITS;
- `mix`: rows and share of rows per business code name (sim.constants.CODE_NAMES; a code
  outside it is named ``code_<n>``), codes with no rows left out;
- `amount_minor`: per code name, per ledger name (units differ between ledgers), the row
  count and the p10, p50, p90, p99 and max amount in minor units. Quantiles are
  ``method="inverted_cdf"``: the smallest amount with at least that share of rows at or
  below it, so every figure is an amount that occurs in the file (an integer);
- `sender_concentration`: of the P2P rows (code 1), the share made by the busiest 20% and
  the busiest 1% of the distinct P2P senders (debit accounts); the busiest k% are the
  ceil(k% of senders) with the most P2P rows, at least one;
- `hourly`: rows per simulated hour of day (hour = floor(sim_time_us / 1h) mod 24, 24
  values) and peak over mean (the mean over all 24 hours), over the traffic epochs: the
  funding epochs a generator puts first (`funding_epochs` in DIR/workload.toml) are left
  out of this and of `burst`;
- `burst`: rows per simulated minute (floor(sim_time_us / 1 min)) over the minutes that have
  at least one row: active minute count, peak, mean and peak over mean;
- `flags`: rows with each transfer flag bit set (linked, pending, post, void) and their
  shares, and rows with none of them (plain); `pending_share` is pending rows over rows;
- `retries`: rows whose id appeared on an earlier row of the file, in all and per code name.

Every figure is computed with whole-array numpy operations (sorts, bincount, unique), no
Python loop over rows, so 10M+ row files are described in seconds. Loops run only over the
few (code, ledger) groups.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sim.columns import Accounts, Transfers
from sim.constants import (
    ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS,
    CODE,
    CODE_NAMES,
    FLAG_LINKED,
    FLAG_PENDING,
    FLAG_POST_PENDING_TRANSFER,
    FLAG_VOID_PENDING_TRANSFER,
    LEDGER_NAMES,
)

ACCOUNTS_FILE = "accounts.parquet"
WORKLOAD_FILE = "workload.parquet"
AMOUNT_QUANTILES = (("p10", 0.10), ("p50", 0.50), ("p90", 0.90), ("p99", 0.99))
SENDER_TOP_SHARES = (("top_20_percent", 0.20), ("top_1_percent", 0.01))
HOURS_PER_DAY = 24
MICROSECONDS_PER_MINUTE = 60 * 1_000_000
MICROSECONDS_PER_HOUR = 60 * MICROSECONDS_PER_MINUTE
FLAG_BITS = (("linked", FLAG_LINKED), ("pending", FLAG_PENDING),
             ("post", FLAG_POST_PENDING_TRANSFER), ("void", FLAG_VOID_PENDING_TRANSFER))


def code_name(code: int) -> str:
    return CODE_NAMES.get(int(code), f"code_{int(code)}")


def ledger_name(ledger: int) -> str:
    return LEDGER_NAMES.get(int(ledger), f"ledger_{int(ledger)}")


CLOCK_FILE = "workload.toml"  # written beside a generated workload: its clock


def describe_dir(path, model_seconds_per_sim_second: float | None = None) -> dict:
    """`describe` of DIR/accounts.parquet and DIR/workload.parquet (InputRefused if bad).

    The clock (model seconds per sim second, for the hourly curve and bursts) comes from the
    argument, else from DIR/workload.toml when a generator wrote one, else 1.
    """
    from sim import files

    folder = Path(path)
    accounts = files.read_accounts(folder / ACCOUNTS_FILE)
    transfers = files.read_workload(folder / WORKLOAD_FILE)
    clock = _read_clock_file(folder / CLOCK_FILE)
    if model_seconds_per_sim_second is None:
        model_seconds_per_sim_second = clock["model_seconds_per_sim_second"]
    return describe(accounts, transfers, model_seconds_per_sim_second, clock["funding_epochs"])


def read_clock(path: Path) -> float:
    """model_seconds_per_sim_second from a workload.toml (1.0 when there is none)."""
    return _read_clock_file(path)["model_seconds_per_sim_second"]


def _read_clock_file(path: Path) -> dict:
    """model_seconds_per_sim_second (default 1.0) and funding_epochs (default 0) of a
    workload.toml; a bad value is refused naming the key."""
    import tomllib

    from sim.errors import InputRefused

    out = {"model_seconds_per_sim_second": 1.0, "funding_epochs": 0}
    if not path.exists():
        return out
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputRefused(f"{path}: not valid TOML ({error})") from None
    value = values.get("model_seconds_per_sim_second", 1.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InputRefused(f"{path}: model_seconds_per_sim_second must be a number > 0, not {value!r}")
    funding = values.get("funding_epochs", 0)
    if isinstance(funding, bool) or not isinstance(funding, int) or funding < 0:
        raise InputRefused(f"{path}: funding_epochs must be an integer >= 0, not {funding!r}")
    out.update(model_seconds_per_sim_second=float(value), funding_epochs=funding)
    return out


def write_clock(path: Path, scenario: str, seed: int, model_seconds_per_sim_second: float,
                funding_epochs: int = 0) -> None:
    """funding_epochs: the workload's first epochs that only fund accounts (at sim time 0);
    describe leaves them out of the hourly curve and the bursts."""
    path.write_text(f'scenario = "{scenario}"\nseed = {int(seed)}\n'
                    f"model_seconds_per_sim_second = {float(model_seconds_per_sim_second)!r}\n"
                    f"funding_epochs = {int(funding_epochs)}\n")


def describe(accounts: Accounts, transfers: Transfers, model_seconds_per_sim_second: float = 1.0,
             funding_epochs: int = 0) -> dict:
    """The realised statistics of a workload (see the module docstring), plain Python values.

    Hourly and per-minute figures use model time: sim_time_us x model_seconds_per_sim_second
    (a scenario may play a model day in a minute of sim time), and leave out the first
    `funding_epochs` epochs (set-up traffic at sim time 0, not part of the day's curve).
    """
    rows = len(transfers)
    time_us = transfers.sim_time_us
    traffic_us = traffic_model_time_us(transfers, model_seconds_per_sim_second, funding_epochs)
    return {
        "model_seconds_per_sim_second": float(model_seconds_per_sim_second),
        "rows": rows,
        "epochs": _epochs(transfers.epoch),
        "sim_time_us": {"first": int(time_us[0]) if rows else None,
                        "last": int(time_us[-1]) if rows else None},
        "accounts": _accounts(accounts),
        "mix": _mix(transfers.code),
        "amount_minor": _amounts(transfers.code, transfers.ledger, transfers.amount),
        "sender_concentration": _sender_concentration(transfers),
        "funding_epochs_excluded_from_time_curves": int(funding_epochs),
        "hourly": _hourly(traffic_us),
        "burst": _burst(traffic_us),
        "flags": _flags(transfers.flags),
        "pending_share": _share(int(np.count_nonzero(transfers.flags & FLAG_PENDING)), rows),
        "retries": _retries(transfers.id, transfers.code),
    }


def traffic_model_time_us(transfers: Transfers, model_seconds_per_sim_second: float,
                          funding_epochs: int) -> np.ndarray:
    """Model time (int64 us) of the rows after the first `funding_epochs` epochs."""
    time_us = transfers.sim_time_us
    model_us = time_us if model_seconds_per_sim_second == 1.0 else (
        time_us.astype(np.float64) * model_seconds_per_sim_second).astype(np.int64)
    return model_us[_first_traffic_row(transfers.epoch, funding_epochs):]


def hourly_rows(transfers: Transfers, model_seconds_per_sim_second: float,
                funding_epochs: int) -> list[int]:
    """Rows per model hour of day over the traffic epochs (describe's `hourly` curve)."""
    traffic_us = traffic_model_time_us(transfers, model_seconds_per_sim_second, funding_epochs)
    return _hourly(traffic_us)["rows_per_hour"]


class HourlyRows:
    """hourly_rows built an epoch at a time, as a streamed workload is generated: the same
    list for the same rows."""

    def __init__(self, model_seconds_per_sim_second: float, funding_epochs: int):
        self.scale = model_seconds_per_sim_second
        self.funding_left = funding_epochs
        self.counts = np.zeros(HOURS_PER_DAY, np.int64)

    def add(self, epoch_rows: Transfers) -> None:
        """One epoch's rows (every row of one epoch, epochs in order)."""
        if len(epoch_rows) == 0:
            return
        if self.funding_left > 0:
            self.funding_left -= 1
            return
        model_us = traffic_model_time_us(epoch_rows, self.scale, 0)
        self.counts += np.bincount((model_us // MICROSECONDS_PER_HOUR) % HOURS_PER_DAY, minlength=HOURS_PER_DAY)

    def rows_per_hour(self) -> list[int]:
        return [int(v) for v in self.counts.tolist()]


# --- leaves ---------------------------------------------------------------------------------
def _share(part: int, whole: int) -> float:
    return float(part / whole) if whole else 0.0


def _run_counts(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and how many rows carry each: O(n) when sorted, else np.unique."""
    if len(values) == 0:
        return values[:0], np.zeros(0, np.int64)
    if np.all(values[1:] >= values[:-1]):
        starts = np.concatenate(([0], np.flatnonzero(values[1:] != values[:-1]) + 1))
        return values[starts], np.diff(np.append(starts, len(values)))
    return np.unique(values, return_counts=True)


def _epochs(epoch: np.ndarray) -> dict:
    distinct, _ = _run_counts(epoch)
    return {"count": len(distinct),
            "first": int(distinct[0]) if len(distinct) else None,
            "last": int(distinct[-1]) if len(distinct) else None}


def _accounts(accounts: Accounts) -> dict:
    ledgers, counts = np.unique(accounts.ledger, return_counts=True)
    flagged = np.count_nonzero(accounts.flags & ACCOUNT_DEBITS_MUST_NOT_EXCEED_CREDITS)
    return {"count": len(accounts),
            "by_ledger": {ledger_name(ledger): int(count)
                          for ledger, count in zip(ledgers.tolist(), counts.tolist())},
            "debits_must_not_exceed_credits": int(flagged)}


def _mix(code: np.ndarray) -> dict:
    counts = np.bincount(code, minlength=1) if len(code) else np.zeros(0, np.int64)
    rows = len(code)
    return {code_name(c): {"rows": int(n), "share": _share(int(n), rows)}
            for c, n in enumerate(counts.tolist()) if n}


def _amounts(code: np.ndarray, ledger: np.ndarray, amount: np.ndarray) -> dict:
    """Amount quantiles per (code, ledger) group: one sort of the group key, then slices."""
    key = (code.astype(np.uint64) << np.uint64(32)) | ledger.astype(np.uint64)
    order = np.argsort(key, kind="stable")
    groups, counts = _run_counts(key[order])
    stops = np.cumsum(counts)
    out: dict = {}
    for group, start, stop in zip(groups.tolist(), (stops - counts).tolist(), stops.tolist()):
        values = amount[order[start:stop]]
        quantiles = np.quantile(values, [q for _, q in AMOUNT_QUANTILES], method="inverted_cdf")
        figures = {"rows": stop - start}
        figures.update({name: int(v) for (name, _), v in zip(AMOUNT_QUANTILES, quantiles)})
        figures["max"] = int(values.max())
        out.setdefault(code_name(group >> 32), {})[ledger_name(group & 0xFFFFFFFF)] = figures
    return out


def _sender_concentration(transfers: Transfers) -> dict:
    senders = transfers.debit_account[transfers.code == CODE["p2p"]]
    _, per_sender = np.unique(senders, return_counts=True)
    busiest_first = np.sort(per_sender)[::-1]
    out: dict = {"p2p_rows": len(senders), "p2p_senders": len(per_sender)}
    for name, share in SENDER_TOP_SHARES:
        top = max(1, math.ceil(share * len(per_sender))) if len(per_sender) else 0
        out[f"{name}_senders"] = top
        out[f"{name}_share_of_rows"] = _share(int(busiest_first[:top].sum()), len(senders))
    return out


def _first_traffic_row(epoch: np.ndarray, funding_epochs: int) -> int:
    """The first row after the first `funding_epochs` distinct epochs (epochs never decrease)."""
    if funding_epochs <= 0 or len(epoch) == 0:
        return 0
    starts = np.flatnonzero(np.r_[True, epoch[1:] != epoch[:-1]])
    return int(starts[funding_epochs]) if funding_epochs < len(starts) else len(epoch)


def _hourly(time_us: np.ndarray) -> dict:
    hour = (time_us // MICROSECONDS_PER_HOUR) % HOURS_PER_DAY
    rows_per_hour = np.bincount(hour, minlength=HOURS_PER_DAY)
    mean = len(time_us) / HOURS_PER_DAY
    return {"rows_per_hour": [int(v) for v in rows_per_hour.tolist()],
            "peak_over_mean": float(rows_per_hour.max() / mean) if mean else 0.0}


def _burst(time_us: np.ndarray) -> dict:
    _, per_minute = _run_counts(time_us // MICROSECONDS_PER_MINUTE)
    if len(per_minute) == 0:
        return {"active_minutes": 0, "peak_rows_per_minute": 0, "mean_rows_per_minute": 0.0,
                "peak_over_mean": 0.0}
    mean = float(per_minute.mean())
    return {"active_minutes": len(per_minute), "peak_rows_per_minute": int(per_minute.max()),
            "mean_rows_per_minute": mean, "peak_over_mean": float(per_minute.max() / mean)}


def _flags(flags: np.ndarray) -> dict:
    rows = len(flags)
    out = {}
    for name, bit in FLAG_BITS:
        count = int(np.count_nonzero(flags & bit))
        out[name] = {"rows": count, "share": _share(count, rows)}
    plain = int(np.count_nonzero((flags & (FLAG_PENDING | FLAG_POST_PENDING_TRANSFER
                                           | FLAG_VOID_PENDING_TRANSFER)) == 0))
    out["plain"] = {"rows": plain, "share": _share(plain, rows)}
    return out


def _retries(ids: np.ndarray, code: np.ndarray) -> dict:
    """Rows whose id was on an earlier row: all rows but each id's first."""
    first = np.ones(len(ids), bool)
    if len(ids):
        _, first_row = np.unique(ids, return_index=True)
        first[:] = False
        first[first_row] = True
    retry_codes = code[~first]
    counts = np.bincount(retry_codes) if len(retry_codes) else np.zeros(0, np.int64)
    return {"rows": len(retry_codes), "share": _share(len(retry_codes), len(ids)),
            "by_code": {code_name(c): int(n) for c, n in enumerate(counts.tolist()) if n}}


# --- text -----------------------------------------------------------------------------------
def format_description(d: dict) -> str:
    """A readable report of `describe`'s dict (every figure there, grouped)."""
    e = d["epochs"]
    lines = [
        f"rows                {d['rows']:,}",
        f"epochs              {e['count']:,} ({e['first']}..{e['last']})",
        f"sim time (us)       {d['sim_time_us']['first']}..{d['sim_time_us']['last']}",
        f"accounts            {d['accounts']['count']:,} ("
        + ", ".join(f"{k} {v:,}" for k, v in d["accounts"]["by_ledger"].items())
        + f"; {d['accounts']['debits_must_not_exceed_credits']:,} must not overdraw)",
        "",
        f"{'mix':<26}{'rows':>10}  {'share':>7}",
    ]
    lines += [f"  {name:<24}{m['rows']:>10,}  {m['share']:>7.2%}" for name, m in d["mix"].items()]
    quantiles = ("p10", "p50", "p90", "p99", "max")
    amounts = [(name, ledger, a) for name, ledgers in d["amount_minor"].items()
               for ledger, a in ledgers.items()]
    # every column as wide as its widest value, so that even AMOUNT_MAX (a spoiled request's
    # amount, 25 characters with separators) leaves a gap before the next
    width = {k: max([16] + [len(f"{a[k]:,}") + 2 for _, _, a in amounts]) for k in quantiles}
    lines += ["", f"{'amount (minor units)':<26}{'ledger':<7}{'rows':>10}"
              + "".join(f"{q:>{width[q]}}" for q in quantiles)]
    for name, ledger, a in amounts:
        lines.append(f"  {name:<24}{ledger:<7}{a['rows']:>10,}"
                     + "".join(f"{a[k]:>{width[k]},}" for k in quantiles))
    s, h, b, r = d["sender_concentration"], d["hourly"], d["burst"], d["retries"]
    lines += [
        "",
        f"p2p senders         {s['p2p_senders']:,} over {s['p2p_rows']:,} rows; busiest 20% send"
        f" {s['top_20_percent_share_of_rows']:.1%},"
        f" busiest 1% {s['top_1_percent_share_of_rows']:.1%}",
        f"hourly rows         peak/mean {h['peak_over_mean']:.2f}: "
        + " ".join(str(v) for v in h["rows_per_hour"]),
        f"per minute          {b['active_minutes']:,} active minutes,"
        f" peak {b['peak_rows_per_minute']:,}, mean {b['mean_rows_per_minute']:,.1f},"
        f" peak/mean {b['peak_over_mean']:.2f}",
        "flags               " + ", ".join(
            f"{k} {v['rows']:,} ({v['share']:.2%})" for k, v in d["flags"].items()),
        f"pending share       {d['pending_share']:.2%}",
        f"retries             {r['rows']:,} ({r['share']:.2%})"
        + "".join(f", {k} {v:,}" for k, v in r["by_code"].items()),
    ]
    return "\n".join(lines)
