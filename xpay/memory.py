"""Resident memory of a run's processes, sampled while it runs (summary.json's `memory`).

The processes are this driver, everything it started (a local Ray: GCS, raylet, the object
store, the shard actors' workers) and any other pids it is told of that live on this machine
(shard actors of a cluster it joined, where they run here). Two measures, both from /proc:

- per process, its peak resident set (VmHWM, kept by the kernel, so nothing between samples
  is missed; the driver's is reset when sampling starts), read at each sample and at the end;
- all together, the largest sum of proportional set sizes (Pss of smaps_rollup) over the
  samples: shared pages (Ray's object store, the shards' arenas) count once in the sum, not
  once per process that maps them. A peak shorter than the interval can fall between samples.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

SAMPLE_INTERVAL_S = 0.5


class MemorySampler:
    """Samples on a daemon thread from construction until stop(); stop() returns the figures."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S):
        reset_peak_rss()  # the driver's peak from here (not what it did before, e.g. generate)
        self.interval_s = interval_s
        self.root = os.getpid()
        self.watched: set[int] = set()
        self.peak_total = 0
        self.peak_at_s = 0.0
        self.samples = 0
        self.processes: dict[int, dict] = {}  # pid -> {"name", "peak_rss_bytes"}
        self._started = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._result: dict | None = None
        self._thread = threading.Thread(target=self._loop, name="memory-sampler", daemon=True)
        self._thread.start()

    def watch(self, pids) -> None:
        """Also sample these pids (shard actors), where they live on this machine."""
        with self._lock:
            self.watched.update(int(p) for p in pids)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        with self._lock:
            pids = _descendants(self.root) | {p for p in self.watched if Path(f"/proc/{p}").exists()}
            total = 0
            for pid in pids:
                status = _status(pid)
                if status is None:
                    continue
                entry = self.processes.setdefault(pid, {"name": status.get("Name", "?"), "peak_rss_bytes": 0})
                entry["peak_rss_bytes"] = max(entry["peak_rss_bytes"], status.get("VmHWM", 0))
                total += _pss(pid)
            self.samples += 1
            if total > self.peak_total:
                self.peak_total = total
                self.peak_at_s = time.perf_counter() - self._started

    def stop(self) -> dict:
        """Stop sampling (after one last sample); the figures for summary.json (same dict on
        every call)."""
        if self._result is not None:
            return self._result
        self._stop.set()
        self._thread.join()
        self.sample()
        processes = sorted(self.processes.items(), key=lambda item: -item[1]["peak_rss_bytes"])
        self._result = {
            "peak_all_processes_bytes": int(self.peak_total),
            "peak_all_processes_at_s": round(self.peak_at_s, 3),
            "measure": "largest sum of Pss over samples (shared pages counted once)",
            "sample_interval_s": self.interval_s,
            "samples": self.samples,
            "driver_peak_rss_bytes": int(self.processes.get(self.root, {}).get("peak_rss_bytes", 0)),
            "processes": [{"pid": pid, "name": e["name"], "peak_rss_bytes": int(e["peak_rss_bytes"])}
                          for pid, e in processes],
        }
        return self._result


def reset_peak_rss() -> None:
    """Set this process's VmHWM back to its current resident size (Linux clear_refs 5)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_bytes() -> int:
    """This process's VmHWM, bytes (0 where /proc has none)."""
    status = _status(os.getpid()) or {}
    return int(status.get("VmHWM", 0))


def available_memory_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (None where there is none)."""
    return _kib_field("/proc/meminfo", "MemAvailable")


def rss_bytes(pid: int) -> int | None:
    """The resident size of a process now (None once it is gone)."""
    return _kib_field(f"/proc/{pid}/status", "VmRSS")


def _status(pid: int) -> dict | None:
    """Name and peak resident size (VmHWM, bytes) of /proc/PID/status; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    out: dict = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "Name":
            out["Name"] = value.strip()
        elif key == "VmHWM":
            out["VmHWM"] = int(value.split()[0]) * 1024
    return out


def _pss(pid: int) -> int:
    return _kib_field(f"/proc/{pid}/smaps_rollup", "Pss") or 0


def _kib_field(path: str, key: str) -> int | None:
    """Bytes of the "KEY: N kB" line of a /proc file (None when the file or line is missing)."""
    prefix = key + ":"
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(prefix):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _descendants(root: int) -> set[int]:
    """root and every process below it (from each process's parent in /proc/PID/stat)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry.name}/stat").read_text()
        except OSError:
            continue
        parent = int(stat[stat.rindex(")") + 2:].split()[1])  # field 4, after "(comm) state"
        children.setdefault(parent, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in out:
            continue
        out.add(pid)
        todo.extend(children.get(pid, ()))
    return out
