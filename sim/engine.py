"""The sharded ledger engine's coordinator: routes each epoch to the shards, resolves chains.

Per epoch (LEDGER_SPEC.md): the driver computes row-local checks and chain structure, then

1. ``begin_epoch`` on every shard (carrying the previous epoch's commit): idempotency by
   transfer id, account look-ups by debit and credit id, expiry of due holds;
2. ``evaluate`` on every shard: pending-transfer checks by pending_id and funds checks by
   debit account, in row order;
3. chains resolve on the driver, and the committed effects are routed by account and by
   transfer id, to ride on the next epoch's first call.

Invariants (double entry per ledger, overdraft) are checked at every epoch boundary from the
shards' running per-ledger sums and the overdraft test of every debited account (sim.audit).
What crosses to the shards and back is the wire format of sim.wire.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from sim.columns import Accounts, Balances, Transfers, WorkloadFacts
from sim.audit import boundary_audit, ledger_sums_from_halves
from sim.constants import (
    IDEMPOTENCY_WINDOW_EPOCHS,
    OK,
    PENDING_STATE_POSTED,
    PENDING_STATE_VOIDED,
    SHARD_COUNT_MAX,
    SHARD_COUNT_MIN,
    STATUS_COUNT,
)
from sim.errors import BalanceOverflowError, InvariantViolation
from sim.hashtable import account_bucket_count, account_layout, shard_of
from sim.hosts import LocalHosts, ShardHosts
from sim.routing import (
    Routed,
    as_bits,
    commit_deltas,
    pack_id_rows,
    pack_pending_checks,
    pack_pending_creations,
    pack_side,
)
from sim.rowchecks import (
    KIND_PENDING,
    KIND_PLAIN,
    KIND_POST,
    KIND_VOID,
    chain_bounds,
    combine_pre_status,
    ledger_slots,
    resolve_chains,
    row_kinds_and_local_status,
)
from sim.shard_kernels import CREDITS_PENDING, CREDITS_POSTED, DEBITS_PENDING, DEBITS_POSTED
from sim.shard_state import ShardState, TableHint, table_hint_per_shard
from sim.wire import (
    ACCOUNT_INFO_FLAGGED,
    BEGIN_EPOCH,
    EVALUATE,
    EXPIRED_AMOUNT,
    EXPIRED_COLUMNS,
    EXPIRED_CREDIT,
    EXPIRED_DEBIT,
    FINAL_STATE,
    FINISH,
    LOOKUP_AHEAD,
    FUNDS_AMOUNT,
    FUNDS_COLUMNS,
    FUNDS_POSITION,
    RESOLUTION_COLUMNS,
    RESOLUTION_KEY,
    RESOLUTION_STATE,
    BeginAnswer,
    CommitAnswer,
    CommitPayload,
    EvaluateAnswer,
    FinalState,
)
from sim.timeline import EpochTimeline, Pacer

SIDE_ORDER = {"debit": 0, "credit": 1}
# lookup_ahead is one more round trip per epoch (~2 ms on the 2-core box, `xpay bench`'s
# breakdown: driver_look_ahead + driver_ahead_wait at 10k-row epochs); it pays only when the
# look-ups it moves off the critical path take longer, i.e. for epochs of this many rows or more.
LOOK_AHEAD_ROWS_MIN = 50_000
BALANCE_COLUMN_NAMES = {DEBITS_PENDING: "pending", DEBITS_POSTED: "posted",
                        CREDITS_PENDING: "pending", CREDITS_POSTED: "posted"}


def epoch_bits(epoch: int) -> int:
    """int64 bit pattern of a uint64 epoch number."""
    return int(np.uint64(epoch).view(np.int64))


@dataclass
class EpochPlan:
    """An epoch's rows with everything the driver derives before the shards see them."""

    rows: Transfers
    row_offset: int
    epoch: int
    start_us: int
    kind: np.ndarray
    local: np.ndarray
    ledger_info: np.ndarray
    chain_end: np.ndarray
    is_open: np.ndarray
    by_id: Routed
    by_debit: Routed
    by_credit: Routed
    id_blocks: list
    debit_blocks: list
    credit_blocks: list
    release_s: float = 0.0  # when the epoch was released (sim.timeline: seconds since start)
    plan_s: float = 0.0  # the driver's time planning it

    def touches_per_shard(self) -> list[int]:
        """Rows each shard sees in this epoch: ids it checks plus account sides it looks up."""
        return [int(len(i) + len(d) + len(c))
                for i, d, c in zip(self.id_blocks, self.debit_blocks, self.credit_blocks)]


@dataclass
class EngineMetrics:
    rows: int = 0
    epochs: int = 0
    committed: int = 0
    engine_seconds: float = 0.0
    epoch_latency_ms: list = field(default_factory=list)
    invariant_violations: list = field(default_factory=list)
    boundaries_checked: int = 0
    bytes_per_account: float = 0.0
    # the id tables' bytes over the ids in the idempotency window, when it held the most
    bytes_per_windowed_id: float | None = None
    audit: list = field(default_factory=list)  # per boundary and ledger, see audit_row()
    commit_times: list = field(default_factory=list)  # time.perf_counter() of each commit ack
    rows_before_resume: int = 0  # rows a resumed run took over from the journal (not timed)
    committed_before_resume: int = 0
    status_counts: np.ndarray = field(default_factory=lambda: np.zeros(STATUS_COUNT, np.int64))
    timeline: EpochTimeline = field(default_factory=EpochTimeline)  # per epoch; latency


@dataclass
class EngineResult:
    status: np.ndarray
    balances: Balances
    metrics: EngineMetrics
    ledger_sums: dict


class Engine:
    """K shards (in-process or Ray actors) over one set of accounts."""

    def __init__(self, accounts: Accounts, hosts: ShardHosts,
                 window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS, stop_on_violation: bool = False):
        """stop_on_violation: raise InvariantViolation at the first broken invariant (else
        record it in the metrics and go on)."""
        self.stop_on_violation = stop_on_violation
        self.accounts = accounts
        self.hosts = hosts
        self.shard_count = hosts.shard_count
        self.window_epochs = window_epochs
        self.ledger_values = np.unique(accounts.ledger)
        self.account_shard = shard_of(as_bits(accounts.id), self.shard_count)
        self._ahead = None  # (epoch, handle) of the lookup_ahead call in flight

    # --- planning (driver, no state) ------------------------------------------------------
    def plan(self, rows: Transfers, row_offset: int) -> EpochPlan:
        started = time.perf_counter()
        plan = self._plan(rows, row_offset)
        plan.plan_s = time.perf_counter() - started
        return plan

    def _plan(self, rows: Transfers, row_offset: int) -> EpochPlan:
        k = self.shard_count
        ids, debit, credit = as_bits(rows.id), as_bits(rows.debit_account), as_bits(rows.credit_account)
        kind, local = row_kinds_and_local_status(
            rows.flags, rows.pending_id, rows.timeout_s, rows.debit_account, rows.credit_account, rows.amount)
        chain_end, is_open = chain_bounds(rows.flags)
        by_id = Routed.by_key(ids, k, mask=ids != 0)
        by_debit = Routed.by_key(debit, k)
        by_credit = Routed.by_key(credit, k)
        id_rows = pack_id_rows(by_id.order, ids, debit, credit, rows.amount, rows.ledger, rows.code,
                               rows.flags, as_bits(rows.pending_id), rows.timeout_s)
        return EpochPlan(
            rows=rows, row_offset=row_offset, epoch=int(rows.epoch[0]), start_us=int(rows.sim_time_us[0]),
            kind=kind, local=local, ledger_info=self._ledger_info(rows.ledger),
            chain_end=chain_end, is_open=is_open,
            by_id=by_id, by_debit=by_debit, by_credit=by_credit,
            id_blocks=by_id.split(id_rows),
            debit_blocks=by_debit.split(debit[by_debit.order]),
            credit_blocks=by_credit.split(credit[by_credit.order]),
        )

    def _ledger_info(self, ledger: np.ndarray) -> np.ndarray:
        """(slot + 1) of each row's ledger among the accounts' ledgers, 0 when none has it."""
        return ledger_slots(ledger, self.ledger_values.astype(ledger.dtype))

    # --- the epoch loop -------------------------------------------------------------------
    def run(self, epochs: Iterable[Transfers], on_epoch: Callable[[int, int], None] | None = None,
            keep_status: bool = True, journal=None, resumed=None, pacer: Pacer | None = None,
            sink: Callable[[Transfers, np.ndarray], None] | None = None) -> EngineResult:
        """Run every epoch (each a Transfers of one epoch's rows, in order) and finish.

        The driver plans epoch e+1 while the shards evaluate epoch e. keep_status=False keeps
        only the status counts (long runs: memory stays flat); result.status is then empty.
        journal (sim.journal.DriverJournal): record each epoch once its statuses are final.
        resumed (sim.journal.Resumed): continue after its last epoch (the shards are already
        back at that point); the epochs given are the whole run's, from the first.
        pacer (sim.timeline.Pacer): offer the epochs open loop, each released when its last
        row is due and not planned before; payment latency goes to metrics.timeline.
        """
        metrics = EngineMetrics(timeline=EpochTimeline(pacer))
        # Everything allocated so far (Ray, the compiled kernels, pandas, the workload's
        # objects) moves out of the collector's reach: a full collection of a process that
        # imported Ray walks ~1M objects and took 0.1-0.2 s here, stalling the epoch it fell
        # in (p99 latency).
        gc.freeze()
        statuses: list[np.ndarray] = []
        source = _nonempty(epochs)
        pending_commit: tuple | None = None  # (plan, commit payloads, submit time, timeline index)
        index, row_offset = 0, 0
        if resumed is not None:
            pending_commit = self._take_over(resumed, source, metrics, statuses, keep_status, sink)
            index, row_offset = resumed.last_index + 1, resumed.row_offset
        metrics.timeline.start()
        rows = next(source, None)
        plan = self._plan_when_due(rows, row_offset, pacer, metrics) if rows is not None else None
        started = time.perf_counter()
        while plan is not None:
            cpu_started = time.thread_time()
            if isinstance(plan, _Deferred):
                plan = self.plan(plan.rows, plan.row_offset)
            metrics.timeline.released(plan.epoch, plan.rows.sim_time_us, plan.release_s)
            submitted = time.perf_counter()
            after = plan.row_offset + len(plan.rows)

            def plan_next(after=after):
                upcoming = next(source, None)
                return self._plan_when_due(upcoming, after, pacer, metrics, wait=False)

            status, commit, next_plan, laps = self._run_epoch(plan, pending_commit, metrics, plan_next)
            recording = time.perf_counter()
            metrics.status_counts += np.bincount(status, minlength=STATUS_COUNT)
            if keep_status:
                statuses.append(status)
            if sink is not None:
                sink(plan.rows, status)
            metrics.rows += len(plan.rows)
            metrics.epochs += 1
            if journal is not None:
                journal.record(index, plan.row_offset, status, commit, metrics.audit, metrics.committed)
            metrics.timeline.final(status, plan.rows.code, plan.rows.sim_time_us,
                                   int(np.count_nonzero(status == OK)))
            pending_commit = (plan, commit, submitted, len(metrics.timeline.columns["epoch"]) - 1)
            index += 1
            if on_epoch is not None:
                on_epoch(metrics.epochs, metrics.rows)
            laps["record"] = time.perf_counter() - recording
            laps["cpu"] = time.thread_time() - cpu_started  # the driver thread's CPU, this loop
            metrics.timeline.driver(laps)
            plan = self._release(next_plan, pacer, metrics)
        if pending_commit is not None:
            last_plan, commit, submitted, recorded = pending_commit
            results = self.hosts.collect(self.hosts.submit(FINISH, [(c,) for c in commit]))
            self._after_commit(last_plan, results, metrics, submitted, recorded)
        metrics.engine_seconds = time.perf_counter() - started
        status = np.concatenate(statuses) if statuses else np.zeros(0, np.uint16)
        return self._final(status, metrics, keep_status)

    def _plan_when_due(self, rows: Transfers | None, row_offset: int, pacer: Pacer | None,
                       metrics: EngineMetrics, wait: bool = True):
        """The epoch's plan once its rows are due; with wait=False, a not-yet-due epoch comes
        back unplanned (_Deferred): the driver may not look at payments before they arrive."""
        if rows is None:
            return None
        timeline = metrics.timeline
        if pacer is not None and timeline.due_s(rows.sim_time_us) > timeline.now_s():
            if not wait:
                return _Deferred(rows, row_offset)
            release_s = timeline.wait_until_due(rows.sim_time_us)
        else:
            release_s = timeline.due_s(rows.sim_time_us) if pacer is not None else timeline.now_s()
        plan = self.plan(rows, row_offset)
        plan.release_s = release_s
        return plan

    def _release(self, next_plan, pacer: Pacer | None, metrics: EngineMetrics):
        """Wait for a deferred epoch to be due, then plan it (after this epoch's statuses)."""
        if not isinstance(next_plan, _Deferred):
            if next_plan is not None and pacer is None:
                next_plan.release_s = metrics.timeline.now_s()  # closed loop: released when ready
            return next_plan
        return self._plan_when_due(next_plan.rows, next_plan.row_offset, pacer, metrics)

    def _take_over(self, resumed, source, metrics: EngineMetrics, statuses: list, keep_status: bool,
                   sink=None) -> tuple:
        """Metrics, statuses and the pending commit of the journal's epochs; the source skips them."""
        last_rows = None
        assert len(resumed.status) == resumed.last_index + 1
        for done in resumed.status:
            last_rows = next(source, None)
            if last_rows is None:
                raise ValueError(f"the journal has {resumed.last_index + 1} epochs, the workload fewer")
            if sink is not None:
                sink(last_rows, done)
            metrics.status_counts += np.bincount(done, minlength=STATUS_COUNT)
            if keep_status:
                statuses.append(done)
        metrics.rows = metrics.rows_before_resume = resumed.rows
        metrics.epochs = resumed.last_index + 1
        metrics.committed = metrics.committed_before_resume = resumed.committed
        metrics.audit = list(resumed.audit)
        metrics.boundaries_checked = len({row["epoch"] for row in resumed.audit})
        last_plan = self.plan(last_rows, resumed.row_offset - len(last_rows))
        return (last_plan, resumed.commit, time.perf_counter(), None)

    def _run_epoch(self, plan: EpochPlan, pending_commit, metrics: EngineMetrics, plan_next):
        k = self.shard_count
        laps = {"plan": plan.plan_s}
        lap = _Laps(laps)
        ahead_s = self._collect_ahead()
        lap("ahead_wait")
        commits = pending_commit[1] if pending_commit else [None] * k
        epoch = epoch_bits(plan.epoch)
        first: list[BeginAnswer] = self.hosts.collect(self.hosts.submit(BEGIN_EPOCH, [
            (commits[s], epoch, plan.start_us, plan.id_blocks[s], plan.debit_blocks[s], plan.credit_blocks[s])
            for s in range(k)
        ]))
        lap("begin_wait")
        if pending_commit is not None:
            settled = [a.commit for a in first]
            self._after_commit(pending_commit[0], settled, metrics, pending_commit[2], pending_commit[3])
        lap("audit")
        pre, lookups = self._pre_status(plan, first)
        lap("pre_status")
        second_args, pending_route, funds_route = self._evaluate_args(plan, pre, lookups, first)
        handle = self.hosts.submit(EVALUATE, second_args)
        lap("route_evaluate")
        next_plan = plan_next()  # overlaps with the shards' evaluation
        lap("plan_next")
        second: list[EvaluateAnswer] = self.hosts.collect(handle)
        lap("evaluate_wait")
        self._look_ahead(next_plan)
        lap("look_ahead")
        metrics.timeline.shard_busy([a + b.busy_s + e.busy_s for (a, _), b, e in zip(ahead_s, first, second)],
                                    [(b.settle_s, b.busy_s - b.settle_s, e.busy_s, a)
                                     for (a, _), b, e in zip(ahead_s, first, second)],
                                    cpu_per_shard=[c + b.cpu_s + e.cpu_s
                                                   for (_, c), b, e in zip(ahead_s, first, second)],
                                    touches_per_shard=plan.touches_per_shard(),
                                    two_phase_rows=int(np.count_nonzero(plan.kind != KIND_PLAIN)))
        status = pre.astype(np.uint16)
        pending_amount = np.zeros(len(plan.rows), np.int64)
        pending_route.scatter([a.pending_status for a in second], status)
        pending_route.scatter([a.pending_amount for a in second], pending_amount)
        funds_route.scatter([a.funds_status for a in second], status)
        status, committed = resolve_chains(status, plan.chain_end, plan.is_open)
        metrics.committed += int(committed.sum())
        lap("resolve")
        payloads = self._commit_payloads(plan, committed, pending_amount, lookups, pending_route)
        lap("route_commit")
        return status, payloads, next_plan, laps

    def _look_ahead(self, next_plan) -> None:
        """Send the next epoch's account keys now, so the shards look them up while the driver
        resolves this epoch (sim.wire.LOOKUP_AHEAD); only for a planned epoch."""
        if (not isinstance(next_plan, EpochPlan) or not self.hosts.concurrent
                or len(next_plan.rows) < LOOK_AHEAD_ROWS_MIN):
            return
        epoch = epoch_bits(next_plan.epoch)
        self._ahead = self.hosts.submit(LOOKUP_AHEAD, [
            (epoch, next_plan.debit_blocks[s], next_plan.credit_blocks[s]) for s in range(self.shard_count)])

    def _collect_ahead(self) -> list[tuple[float, float]]:
        """Each shard's (seconds, CPU seconds) in the lookup_ahead call in flight (zeros when none)."""
        if self._ahead is None:
            return [(0.0, 0.0)] * self.shard_count
        handle, self._ahead = self._ahead, None
        return list(self.hosts.collect(handle))

    def _pre_status(self, plan: EpochPlan, first: list[BeginAnswer]) -> tuple[np.ndarray, dict]:
        """Statuses after checks 3..14, and the epoch's account look-ups in row order."""
        n = len(plan.rows)
        answers = [a.lookups for a in first]
        id_status = plan.by_id.scatter([a.id_status for a in answers], np.zeros(n, np.uint8))
        lookups = {}
        for side, route in (("debit", plan.by_debit), ("credit", plan.by_credit)):
            for what, dtype in (("position", np.int32), ("info", np.uint16)):
                name = f"{side}_{what}"
                parts = [getattr(a, name) for a in answers]
                lookups[name] = route.scatter(parts, np.empty(n, dtype))
        pre = combine_pre_status(as_bits(plan.rows.id), id_status, plan.local, lookups["debit_info"],
                                 lookups["credit_info"], plan.ledger_info, plan.is_open)
        return pre, lookups

    def _evaluate_args(self, plan: EpochPlan, pre: np.ndarray, lookups: dict,
                       first: list[BeginAnswer]):
        k = self.shard_count
        rows = plan.rows
        passing = pre == OK
        resolving = passing & ((plan.kind == KIND_POST) | (plan.kind == KIND_VOID))
        debit_flagged = (lookups["debit_info"] & ACCOUNT_INFO_FLAGGED) != 0
        funding = passing & ((plan.kind == KIND_PLAIN) | (plan.kind == KIND_PENDING)) & debit_flagged
        pending_route = Routed.by_key(as_bits(rows.pending_id), k, mask=resolving)
        pending_rows = pack_pending_checks(
            pending_route.order, as_bits(rows.pending_id), as_bits(rows.debit_account),
            as_bits(rows.credit_account), rows.ledger, rows.amount, plan.kind)
        funds_route = plan.by_debit.where(funding)
        fo = funds_route.order
        funds_rows = np.empty((len(fo), FUNDS_COLUMNS), np.int64)
        funds_rows[:, FUNDS_POSITION] = lookups["debit_position"][fo]
        funds_rows[:, FUNDS_AMOUNT] = rows.amount[fo]
        expired = (np.concatenate([a.lookups.expired for a in first]) if first
                   else np.zeros((0, EXPIRED_COLUMNS), np.int64))
        exp_debit = Routed.by_key(expired[:, EXPIRED_DEBIT], k)
        exp_credit = Routed.by_key(expired[:, EXPIRED_CREDIT], k)
        # EXPIRED_SIDE_* rows: [account key, amount]
        debit_side = expired[exp_debit.order][:, [EXPIRED_DEBIT, EXPIRED_AMOUNT]]
        credit_side = expired[exp_credit.order][:, [EXPIRED_CREDIT, EXPIRED_AMOUNT]]
        debit_blocks = exp_debit.split(debit_side)
        credit_blocks = exp_credit.split(credit_side)
        pending_blocks = pending_route.split(pending_rows)
        funds_blocks = funds_route.split(funds_rows)
        args = [(debit_blocks[s], credit_blocks[s], pending_blocks[s], funds_blocks[s]) for s in range(k)]
        return args, pending_route, funds_route

    def _commit_payloads(self, plan: EpochPlan, committed: np.ndarray, pending_amount: np.ndarray,
                         lookups: dict, pending_route: Routed) -> list[CommitPayload]:
        """Committed rows keep the groups of the routes they were checked on (Routed.where):
        sides by account, creations by id, resolutions by pending id."""
        k = self.shard_count
        rows = plan.rows
        posted, pending = commit_deltas(plan.kind, rows.amount, pending_amount, committed)
        debit_route = plan.by_debit.where(committed)
        credit_route = plan.by_credit.where(committed)
        debit_rows = pack_side(debit_route.order, lookups["debit_position"], posted, pending, plan.row_offset)
        credit_rows = pack_side(credit_route.order, lookups["credit_position"], posted, pending, plan.row_offset)
        creating = committed & (plan.kind == KIND_PENDING)
        create_route = plan.by_id.where(creating)  # committed rows have non-zero ids
        creations = pack_pending_creations(
            create_route.order, as_bits(rows.id), rows.sim_time_us, as_bits(rows.debit_account),
            as_bits(rows.credit_account), rows.amount, rows.ledger, rows.code, rows.flags,
            as_bits(rows.pending_id), rows.timeout_s)
        resolve_route = pending_route.where(committed)  # checked POST/VOID rows that committed
        ro = resolve_route.order
        new_state = np.where(plan.kind[ro] == KIND_POST, PENDING_STATE_POSTED, PENDING_STATE_VOIDED)
        resolutions = np.empty((len(ro), RESOLUTION_COLUMNS), np.int64)
        resolutions[:, RESOLUTION_KEY] = as_bits(rows.pending_id)[ro]
        resolutions[:, RESOLUTION_STATE] = new_state
        d, c = debit_route.split(debit_rows), credit_route.split(credit_rows)
        p, r = create_route.split(creations), resolve_route.split(resolutions)
        epoch = epoch_bits(plan.epoch)
        return [CommitPayload(epoch, d[s], c[s], p[s], r[s]) for s in range(k)]

    # --- epoch boundary -------------------------------------------------------------------
    def _after_commit(self, plan: EpochPlan, answers: list[CommitAnswer], metrics: EngineMetrics,
                      submitted: float, recorded: int | None = None) -> None:
        overflows = [a.overflow for a in answers if a.overflow is not None]
        if overflows:
            first = min(overflows, key=lambda o: (o.row, SIDE_ORDER[o.side]))
            local_row = first.row - plan.row_offset
            field_name = f"{first.side}s_{BALANCE_COLUMN_NAMES[first.column]}"
            transfer_id = int(plan.rows.id[local_row])
            raise BalanceOverflowError(plan.epoch, first.row, transfer_id, first.account,
                                       field_name)
        now = time.perf_counter()
        if recorded is not None:
            metrics.timeline.committed(recorded)
        metrics.epoch_latency_ms.append((now - submitted) * 1000.0)
        metrics.commit_times.append(now)
        self._sums = ledger_sums_from_halves(self.ledger_values, [a.sums for a in answers])
        metrics.boundaries_checked += 1
        overdrawn = [a.overdrawn for a in answers if a.overdrawn is not None]
        rows, found = boundary_audit(plan.epoch, self._sums, overdrawn)
        metrics.audit.extend(rows)
        metrics.invariant_violations.extend(found)
        if found and self.stop_on_violation:
            raise InvariantViolation(f"epoch {plan.epoch}: {found[0]['message']}; the run stopped")

    def _final(self, status: np.ndarray, metrics: EngineMetrics, keep_status: bool) -> EngineResult:
        states: list[FinalState] = self.hosts.collect(
            self.hosts.submit(FINAL_STATE, [() for _ in range(self.shard_count)]))
        n = len(self.accounts)
        # the four balance columns filled straight from each shard's answer, which is dropped
        # once used: the end of a run holds the answers and the columns, nothing more
        columns = [np.empty(n, np.int64) for _ in range(4)]
        keys = self.accounts.id.view(np.int64)
        metrics.bytes_per_account = float(np.mean([s.bytes_per_account for s in states]))
        windowed = sum(s.windowed_ids for s in states)
        metrics.bytes_per_windowed_id = (sum(s.id_table_bytes for s in states) / windowed
                                         if windowed else None)
        sums = ledger_sums_from_halves(self.ledger_values, [s.sums for s in states])
        for s in range(len(states)):
            state, states[s] = states[s], None
            mine = np.flatnonzero(self.account_shard == s)
            # the shard keeps its accounts grouped by hash bucket (sim.hashtable.account_layout)
            order, _ = account_layout(keys[mine], account_bucket_count(len(mine)))
            mine = mine[order]
            if not np.array_equal(keys[mine], state.keys):
                raise RuntimeError(f"shard {s} answered with accounts in another order than its layout")
            for column, values in zip(columns, state.balances.T):
                column[mine] = values
            del state, mine
        assert len(status) == (metrics.rows if keep_status else 0)
        assert int(metrics.status_counts.sum()) == metrics.rows
        assert (status < STATUS_COUNT).all()
        balances = Balances.from_columns(
            id=self.accounts.id, ledger=self.accounts.ledger,
            debits_pending=columns[DEBITS_PENDING], debits_posted=columns[DEBITS_POSTED],
            credits_pending=columns[CREDITS_PENDING], credits_posted=columns[CREDITS_POSTED])
        return EngineResult(status=status, balances=balances, metrics=metrics, ledger_sums=sums)


class _Laps:
    """Driver seconds between consecutive calls, stored by phase name in a dict."""

    def __init__(self, into: dict):
        self.into = into
        self.last = time.perf_counter()

    def __call__(self, phase: str) -> None:
        now = time.perf_counter()
        self.into[phase] = self.into.get(phase, 0.0) + (now - self.last)
        self.last = now


@dataclass
class _Deferred:
    """An epoch read from the source before it is due: planned only once it is."""

    rows: Transfers
    row_offset: int


def _nonempty(epochs: Iterable[Transfers]) -> Iterator[Transfers]:
    for rows in epochs:
        if len(rows):
            yield rows


def split_epochs(transfers: Transfers) -> Iterator[Transfers]:
    for start, stop in transfers.epoch_bounds():
        yield transfers.slice(start, stop)


def local_hosts(accounts: Accounts, shard_count: int,
                window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS, hint: TableHint = TableHint()) -> LocalHosts:
    """hint: records per shard (see table_hint); sizes the shards' tables."""
    check_shard_count(shard_count)
    ledger_values = np.unique(accounts.ledger)
    shard = shard_of(as_bits(accounts.id), shard_count)
    states = []
    for s in range(shard_count):
        mine = shard == s
        states.append(ShardState(s, shard_count, accounts.id[mine], accounts.ledger[mine],
                                 accounts.flags[mine], ledger_values, window_epochs, hint))
    return LocalHosts(states)


def check_shard_count(shard_count: int) -> None:
    if not SHARD_COUNT_MIN <= shard_count <= SHARD_COUNT_MAX:
        raise ValueError(f"shards(={shard_count}) must be in {SHARD_COUNT_MIN}..{SHARD_COUNT_MAX}")


def run_local(accounts: Accounts, transfers: Transfers, shard_count: int = 1,
              window_epochs: int = IDEMPOTENCY_WINDOW_EPOCHS) -> EngineResult:
    """The engine with every shard in this process (no Ray): tests and the one-core baseline."""
    hosts = local_hosts(accounts, shard_count, window_epochs, table_hint(transfers, window_epochs, shard_count))
    return Engine(accounts, hosts, window_epochs).run(split_epochs(transfers))


def table_hint(transfers: Transfers, window_epochs: int, shard_count: int) -> TableHint:
    """Table sizes per shard for running these transfers."""
    facts = WorkloadFacts.of(transfers)
    return table_hint_per_shard(facts.rows, facts.widest_epoch, facts.pending_rows, window_epochs, shard_count)
