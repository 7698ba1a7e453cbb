"""One engine run end to end: hosts up, epochs through, checks, files and summary out.

Shared by ``xpay replay`` (files written by anyone) and ``xpay run`` (a built-in workload):
both hand over accounts and transfers and get back the summary dict that is also written to
``DIR/summary.json``, beside ``DIR/results.parquet`` and ``DIR/balances.parquet``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sim import files
from sim.audit import final_invariants, write_audit
from sim.columns import Accounts, Transfers
from sim.constants import CODE_NAMES, IDEMPOTENCY_WINDOW_EPOCHS, STATUS_COUNT
from sim.engine import Engine, EngineResult, local_hosts, split_epochs
from sim.files import WorkloadFacts
from sim.shard_state import table_hint_per_shard
from sim.errors import BalanceOverflowError, InputRefused, InvariantViolation
from sim.timeline import EpochTimeline, Pacer
from sim.warmup import warm_up
from sim.wire import BEGIN_EPOCH
from xpay import progress
from xpay.memory import MemorySampler, available_memory_bytes, peak_rss_bytes, reset_peak_rss
from xpay.report import (
    VIOLATIONS_LISTED_MAX,
    ResultDigest,
    counts_by_name,
    hardware,
    latency_summary,
    versions,
)


@dataclass
class RunOptions:
    shards: int = 4
    window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS
    address: str | None = None  # join this Ray cluster (else RAY_ADDRESS, else a local Ray)
    in_process: bool = False  # every shard in this process, no Ray (one core's worth)
    strict_serial: bool = True  # measure the strict-serial divergence
    stop_on_violation: bool = True  # a broken invariant stops the run (exit 1)
    progress: bool | None = None  # None: a progress bar when stderr is a terminal
    data_dir: str | None = None  # durable shards: write-ahead log and snapshots here
    fsync: str = "off"  # sim.durability.FSYNC_POLICIES
    snapshot_every_epochs: int = 16
    kill_shards: int = 0  # fault injection (actors.faults): shard kills at seeded points
    fault_seed: int = 0
    delay_batches: int = 0
    duplicate_batches: int = 0
    stale_batches: int = 0
    crash_driver_after: int | None = None  # fault injection: the driver dies after this epoch index
    rate: float | None = None  # offered rows per wall second (open loop); None: as fast as possible
    authenticated: bool = True  # False only with --unauthenticated: Ray without token auth

    @property
    def faulty(self) -> bool:
        return bool(self.kill_shards or self.delay_batches or self.duplicate_batches or self.stale_batches)

    def durability(self, out_dir: Path):
        """Where the shards keep their files: --data-dir, else OUT/data when faults are injected
        (a killed shard needs something to recover from), else nowhere."""
        from sim.durability import Durability

        data_dir = self.data_dir or (str(Path(out_dir) / "data") if self.faulty else None)
        return Durability(data_dir, self.fsync, 2 * self.snapshot_every_epochs)


DRIVER_CRASH_EXIT_STATUS = 75  # --crash-driver-after: the driver's injected death


OUTPUT_FILES = ("results.parquet", "balances.parquet", "audit.parquet", "epochs.parquet",
                "latency.parquet", "summary.json")
REPORT_OUTPUTS = ("report.html", "plots")  # drawn from the outputs after the run (xpay.html_report)


def replay(accounts: Accounts, workload, out_dir: Path, options: RunOptions,
           read_seconds: float = 0.0, configuration: dict | None = None, resume: bool = False) -> dict:
    """Run transfers through the sharded engine; write results, balances, audit and summary.

    workload: Transfers in memory, or a sim.files.WorkloadReader streaming a file epoch by
    epoch. Either way the driver holds a bounded number of epochs: statuses stream into
    results.parquet as each epoch's are final, and the strict-serial measurement reads them
    back (skipped, and said so, for a workload too large to hold in memory).
    With a data dir the driver journals every epoch (sim.journal); resume=True continues from
    the journal's last epoch (the shards roll back to it) instead of starting afresh. An
    earlier run's outputs in out_dir are removed first; the new ones are written into a
    temporary folder beside it and moved in only once all are written, so out_dir never mixes
    two runs, and a run that stops leaves summary.json saying completed: false and no results.
    """
    workload = as_workload(workload)
    check_ledger_count(accounts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_outputs(out_dir)
    memory = MemorySampler()
    started = time.perf_counter()
    journal, resumed = _open_journal(options, out_dir, resume)
    try:
        with progress.phase("starting the shards" if options.in_process else "starting Ray and the shard actors",
                            progress.show(options.progress)):
            hosts, host_info = _start_hosts(accounts, workload.facts, options, out_dir, fresh=resumed is None)
    except BaseException:
        if journal is not None:
            journal.close()
        raise
    memory.watch(getattr(hosts, "pids", ()))
    if resumed is not None:
        host_info["resumed"] = {"after_epoch_index": resumed.last_index, "rows_done": resumed.rows,
                                "shard_call": hosts.seq}
    if options.crash_driver_after is not None and journal is not None:
        hosts = _CrashingDriver(hosts, journal, options.crash_driver_after)
    startup_seconds = time.perf_counter() - started
    staging = _staging_folder(out_dir)
    try:
        results = _ResultSink(staging / "results.parquet")
        try:
            engine = Engine(accounts, hosts, options.window_epochs, options.stop_on_violation)
            result = _run_with_progress(engine, workload, options, journal, resumed, results)
            fault_info = _fault_summary(hosts)
            memory.sample()
        except (BalanceOverflowError, InvariantViolation) as error:
            results.abort()
            _write_json(out_dir / "summary.json", {"completed": False, "error": str(error)})
            raise
        except BaseException:
            results.abort()
            raise
        finally:
            hosts.close()
            if journal is not None:
                journal.close()
        results.close()
        summary_memory = memory.stop()  # the run's; the strict-serial measurement's own below
        with progress.phase(f"strict-serial check of {workload.facts.rows:,} rows",
                            progress.show(options.progress) and options.strict_serial):
            strict = _strict_serial_divergence(accounts, workload, staging / "results.parquet", options)
        summary = _summary(accounts, workload.facts, result, results, options, host_info, configuration or {})
        summary.update(fault_info)
        summary.update(startup_seconds=startup_seconds, read_seconds=read_seconds, **strict)
        summary["memory"] = summary_memory
        _write_outputs(staging, out_dir, result, summary)
    finally:
        memory.stop()
        shutil.rmtree(staging, ignore_errors=True)
    return summary


class InMemory:
    """Transfers already in memory as a run's workload (the API, sweeps, tests)."""

    def __init__(self, transfers: Transfers):
        self.transfers = transfers
        self.facts = WorkloadFacts.of(transfers)

    def epochs(self):
        return split_epochs(self.transfers)


def as_workload(workload):
    """Transfers -> InMemory; a WorkloadReader (or anything with facts and epochs()) as is."""
    return InMemory(workload) if isinstance(workload, Transfers) else workload


class _ResultSink:
    """Each epoch's statuses as the engine makes them final: into results.parquet (streamed),
    the result digest and the checks of one result per row."""

    def __init__(self, path: Path):
        self.writer = files.ResultsWriter(path)
        self.digest = ResultDigest()
        self.rows = 0
        self.all_known = True  # every status is a known code

    def __call__(self, rows: Transfers, status: np.ndarray) -> None:
        self.writer.write(rows.id, status, rows.epoch)
        self.digest.add_status(status)
        self.rows += len(status)
        self.all_known &= bool((status < STATUS_COUNT).all()) and len(status) == len(rows)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


def check_ledger_count(accounts: Accounts) -> None:
    """Refuse (exit 2, before Ray starts) more distinct ledgers than a shard has slots for."""
    from sim.shard_state import LEDGER_SLOTS_MAX

    count = len(np.unique(accounts.ledger))
    if count > LEDGER_SLOTS_MAX:
        raise InputRefused(f"accounts: {count} distinct ledgers; this engine handles at most"
                           f" {LEDGER_SLOTS_MAX} (a shard keeps a ledger's slot in 7 bits of an account's byte)")


def remove_outputs(out_dir: Path) -> None:
    """An earlier run's outputs and report: never left beside a new run's."""
    import shutil

    for name in OUTPUT_FILES + REPORT_OUTPUTS:
        path = Path(out_dir) / name
        if path.is_file() or path.is_symlink():
            path.unlink()
        elif name == "plots" and path.is_dir():
            shutil.rmtree(path)


def _staging_folder(out_dir: Path) -> Path:
    """A fresh folder beside out_dir where the run's outputs are written before moving in."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.partial-", dir=out_dir.parent))


def _write_outputs(staging: Path, out_dir: Path, result: EngineResult, summary: dict) -> None:
    """The remaining files into the staging folder (results.parquet is there already), then
    each renamed into out_dir (summary.json last: its presence with completed: true means the
    others are complete)."""
    files.write_balances(staging / "balances.parquet", result.balances)
    write_audit(staging / "audit.parquet", result.metrics.audit)
    write_timeline(staging, result.metrics.timeline)
    _write_json(staging / "summary.json", summary)
    for name in OUTPUT_FILES:
        if (staging / name).exists():  # latency.parquet: open-loop runs only
            os.replace(staging / name, out_dir / name)


def _open_journal(options: RunOptions, out_dir: Path, resume: bool):
    """The driver's journal when the shards are durable, and what it holds when resuming."""
    durability = options.durability(out_dir)
    if options.in_process:
        if resume:
            raise ValueError("--resume needs shard actors: drop --in-process")
        return None, None
    if durability.data_dir is None:
        if resume:
            raise ValueError("nothing to resume from: the run had no data dir")
        return None, None
    from actors.faults import clear_fault_records
    from sim.durability import claim_data_dir, truncate_after
    from sim.journal import DriverJournal, calls_through, load

    claim_data_dir(durability.data_dir)  # before the journal writes anything there
    journal = DriverJournal(durability.data_dir, durability.fsync)  # locks the data dir
    try:
        resumed = load(durability.data_dir, options.shards) if resume else None
        if resume and resumed is None:
            print("xpay: no epoch of this run was journaled yet; starting from the first epoch",
                  file=sys.stderr)
        if resumed is not None:
            for s in range(options.shards):  # back to the last durable epoch: its evaluation
                truncate_after(durability.shard_dir(s), calls_through(resumed.last_index))
                clear_fault_records(durability.shard_dir(s))
        journal.start(resumed)
    except BaseException:
        journal.close()
        raise
    return journal, resumed


class _CrashingDriver:
    """Fault injection (--crash-driver-after N): the driver process dies right after sending
    the shards the epoch that follows epoch index N, as a crash would leave it."""

    def __init__(self, hosts, journal, after: int):
        self._hosts, self._journal, self._after = hosts, journal, after

    def __getattr__(self, name):
        return getattr(self._hosts, name)

    def submit(self, method: str, args_per_shard: list):
        handle = self._hosts.submit(method, args_per_shard)
        if method == BEGIN_EPOCH and self._journal.last_index >= self._after:
            print(f"xpay: injected driver crash after epoch index {self._after}", file=sys.stderr, flush=True)
            os._exit(DRIVER_CRASH_EXIT_STATUS)
        return handle


def _start_hosts(accounts: Accounts, facts: WorkloadFacts, options: RunOptions, out_dir: Path,
                 fresh: bool = True):
    hint = table_hint_per_shard(facts.rows, facts.widest_epoch, facts.pending_rows, options.window_epochs,
                                options.shards)
    warm_up()  # compile (or load) every kernel now, not inside the timed epochs
    durability = options.durability(out_dir)
    if options.in_process:
        if options.faulty or durability.data_dir is not None:
            raise ValueError("--in-process has no shard actors to kill or make durable;"
                             " drop --in-process to use --data-dir or fault injection")
        return local_hosts(accounts, options.shards, options.window_epochs, hint), {"transport": "in_process"}
    from actors.faults import FaultPlan
    from actors.ray_hosts import RayHosts, start_ray

    calls = 2 * facts.epoch_count + 1
    plan = FaultPlan.draw(options.fault_seed, options.shards, calls, options.kill_shards,
                          options.delay_batches, options.duplicate_batches, options.stale_batches)
    ray_info = start_ray(options.address, authenticated=options.authenticated)
    hosts = RayHosts(accounts, options.shards, options.window_epochs, hint, durability=durability, faults=plan,
                     fresh=fresh)
    info = {"transport": hosts.transport, "calls": hosts.calls, "ray": ray_info, "placement": hosts.placement(),
            "durability": {"data_dir": durability.data_dir, "fsync": durability.fsync,
                           "snapshot_every_epochs": durability.snapshot_every // 2}}
    if options.faulty:
        info["fault_plan"] = plan.describe()
    return hosts, info


def _fault_summary(hosts) -> dict:
    """What the injected faults did (actors.ray_hosts.FaultReport), for summary.json."""
    report = getattr(hosts, "report", None)
    if report is None:
        return {}
    hosts.count_faults()
    out = {"faults": report.summary(), "recoveries": report.recoveries}
    if report.recoveries:  # a restarted shard may run on another node now
        out["placement_at_end"] = hosts.placement()
    if getattr(hosts, "durability", None) is not None and hosts.durability.data_dir is not None:
        stats = hosts.durability_stats()
        out["durability_stats"] = {
            "wal_bytes": int(sum(st["wal_bytes"] for st in stats)),
            "snapshots_written": int(sum(st["snapshots_written"] for st in stats)),
            "snapshot_seconds": float(sum(st["snapshot_seconds"] for st in stats)),
        }
    return out


def pacer_for(facts: WorkloadFacts, rate: float | None) -> Pacer | None:
    """The open-loop clock offering the workload's rows at `rate` rows a second (None: closed loop)."""
    if rate is None or facts.rows == 0:
        return None
    return Pacer.for_rate(rate, facts.rows, facts.first_us, facts.last_us)


def _run_with_progress(engine: Engine, workload, options: RunOptions, journal=None,
                       resumed=None, sink=None) -> EngineResult:
    show = progress.show(options.progress)
    pacer = pacer_for(workload.facts, options.rate)
    run = dict(journal=journal, resumed=resumed, pacer=pacer, sink=sink, keep_status=False)
    if not show:
        return engine.run(workload.epochs(), **run)
    with progress.bar(total=workload.facts.rows, unit="row", unit_scale=True, desc="engine") as bar:
        done = [0]
        if resumed is not None:
            bar.update(resumed.rows)
            done[0] = resumed.rows

        def on_epoch(epochs: int, rows: int) -> None:
            bar.update(rows - done[0])
            done[0] = rows

        return engine.run(workload.epochs(), on_epoch=on_epoch, **run)


# Bytes the strict-serial measurement holds per row: the workload's columns (96), the serial
# ledger's prepass and statuses, the engine's statuses read back, its id table and accounts.
# Measured: +11.3 GB over the driver's size for x-scale-day at 30M users (50.2M rows, 37.2M
# accounts), ~225 bytes a row.
STRICT_SERIAL_BYTES_PER_ROW = 230


def _strict_serial_divergence(accounts, workload, results_path: Path, options: RunOptions) -> dict:
    """Share of rows whose status differs under strict serial order, measured after the run
    from the written results (and the workload, re-read when it was streamed). Skipped, with
    the reason in summary.json, when that cannot fit in memory."""
    from sim.serial import run_serial

    rows = workload.facts.rows
    out = {"strict_serial_divergence": None, "strict_serial_seconds": 0.0}
    if not options.strict_serial or rows == 0:
        return out
    in_memory = isinstance(workload, InMemory)
    need = rows * (STRICT_SERIAL_BYTES_PER_ROW - (96 if in_memory else 0))
    have = available_memory_bytes()
    if have is not None and need > 0.7 * have:
        out["strict_serial_skipped"] = (f"{rows:,} rows need about {need / 2**30:.1f} GiB in one process;"
                                        f" {have / 2**30:.1f} GiB available")
        return out
    started = time.perf_counter()
    reset_peak_rss()
    transfers = workload.transfers if in_memory else files.read_workload(workload.path)
    status = pq.read_table(results_path, columns=["status"]).column("status").to_numpy()
    try:
        strict = run_serial(accounts, transfers, strict_serial=True, window_epochs=options.window_epochs)
    except BalanceOverflowError:
        out["strict_serial_seconds"] = time.perf_counter() - started
        return out
    out["strict_serial_divergence"] = float(np.mean(strict.status != status))
    out["strict_serial_seconds"] = time.perf_counter() - started
    out["strict_serial_peak_rss_bytes"] = peak_rss_bytes()
    return out


def _summary(accounts, facts: WorkloadFacts, result: EngineResult, results: _ResultSink,
             options: RunOptions, host_info: dict, configuration: dict) -> dict:
    m = result.metrics
    violations = list(m.invariant_violations)
    violations += final_invariants(accounts, result.balances, result.ledger_sums)
    one_result = results.rows == facts.rows == m.rows and results.all_known
    seconds = m.engine_seconds
    return {
        "completed": True,
        "rows": int(m.rows),
        "epochs": int(m.epochs),
        "committed": int(m.committed),
        "status_counts": counts_by_name(m.status_counts),
        "shards": options.shards,
        "engine_seconds": seconds,
        "rows_per_s": (m.rows - m.rows_before_resume) / seconds if seconds > 0 else None,
        "committed_per_s": (m.committed - m.committed_before_resume) / seconds if seconds > 0 else None,
        "epoch_latency_ms": latency_summary(m.epoch_latency_ms),
        **_payment_latency(m.timeline, options),
        "invariants": {
            "double_entry": not any(v["invariant"] == "double_entry" for v in violations),
            "overdraft": not any(v["invariant"] == "overdraft" for v in violations),
            "one_result_per_row": one_result,
        },
        "invariant_boundaries_checked": int(m.boundaries_checked),
        "invariant_violations": violations[:VIOLATIONS_LISTED_MAX],
        "engine_bytes_per_account": m.bytes_per_account,
        "engine_bytes_per_windowed_id": m.bytes_per_windowed_id,
        "accounts": len(accounts),
        "result_sha256": results.digest.finish(result.balances),
        "configuration": {**configuration, **host_info, "shards": options.shards,
                          "window_epochs": options.window_epochs, "in_process": options.in_process},
        "versions": versions(),
        "hardware": hardware(),
    }


def _payment_latency(timeline: EpochTimeline, options: RunOptions) -> dict:
    """Open loop: payment latency (scheduled arrival to final status) overall and per kind.
    Closed loop: only the batch (epoch) latency, under its own name, epoch_latency_ms."""
    if timeline.pacer is None:
        return {"latency_kind": "batch latency", "offered_rows_per_s": None}
    by_kind = {CODE_NAMES.get(code, f"code_{code}"): histogram.summary_ms()
               for code, histogram in sorted(timeline.latency.by_code.items())}
    return {"latency_kind": "payment latency", "offered_rows_per_s": options.rate,
            "payment_latency_ms": {"all": timeline.latency.overall.summary_ms(), "by_kind": by_kind}}


def write_timeline(out_dir: Path, timeline: EpochTimeline) -> None:
    """epochs.parquet (one row per epoch) and, for an open-loop run, latency.parquet (the
    histogram buckets per business code; kind "all" is every payment)."""
    import pyarrow.parquet as pq

    # out_dir is the run's staging folder: its files move into place together (_write_outputs)
    pq.write_table(pa.table(timeline.table()), out_dir / "epochs.parquet", compression="zstd")
    if timeline.pacer is None:
        return  # a closed-loop run has no payment latency
    buckets = timeline.latency.buckets()
    kinds = ["all" if code < 0 else CODE_NAMES.get(int(code), f"code_{code}") for code in buckets["code"]]
    table = pa.table({"kind": pa.array(kinds, pa.string()), "code": buckets["code"],
                      "low_ms": buckets["low_us"] / 1_000.0, "high_ms": buckets["high_us"] / 1_000.0,
                      "count": buckets["count"]})
    pq.write_table(table, out_dir / "latency.parquet", compression="zstd")


def all_invariants_held(summary: dict) -> bool:
    return all(summary["invariants"].values())


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=json_default) + "\n")
    tmp.replace(path)


def json_default(value):
    """json.dumps default: numpy scalars as Python numbers, dataclasses as dicts."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
