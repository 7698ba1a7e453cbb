"""report.html: written by every run, self-contained, every image decodes; the Run API reads
the folder back as pandas with named categoricals; wrong paths are refused (exit 2)."""

from __future__ import annotations

import base64
import io
import json
from html.parser import HTMLParser

import matplotlib.image
import pandas as pd
import pytest

from xpay.cli import main
from xpay.runs import load_run, named_codes, named_statuses

SMALL_RUN = ["--users", "3000", "--epochs", "4", "--seed", "5", "--in-process", "--quiet"]


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.sources.append(attrs.get("src", ""))
        for key in ("src", "href"):
            value = attrs.get(key)
            if value and not value.startswith(("data:", "#")):
                self.external.append(value)


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["run", *SMALL_RUN, "--out", str(out)]) == 0
    return out


def decoded_images(page: str) -> list:
    parser = _Images()
    parser.feed(page)
    assert not parser.external, f"the page links outside itself: {parser.external}"
    images = []
    for source in parser.sources:
        assert source.startswith("data:image/png;base64,")
        data = base64.b64decode(source.split(",", 1)[1], validate=True)
        images.append(matplotlib.image.imread(io.BytesIO(data), format="png"))
    return images


def test_every_run_writes_a_self_contained_report(run_folder):
    page = (run_folder / "report.html").read_text()
    images = decoded_images(page)
    assert len(images) >= 3  # throughput, status mix, invariants at least
    for image in images:
        assert image.shape[0] > 100 and image.shape[1] > 100
        assert image.std() > 0.01  # not a blank canvas
    pngs = sorted(p.name for p in (run_folder / "plots").glob("*.png"))
    assert len(pngs) == len(images)
    assert "Configuration and versions" in page


def test_no_report_skips_it(tmp_path):
    assert main(["run", *SMALL_RUN, "--no-strict-serial", "--no-report", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "report.html").exists()
    assert main(["report", str(tmp_path)]) == 0
    assert decoded_images((tmp_path / "report.html").read_text())


def test_compare_puts_two_runs_side_by_side(run_folder, tmp_path):
    assert main(["compare", str(run_folder), str(run_folder), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text()
    assert len(decoded_images(page)) >= 6
    assert page.count(str(run_folder)) >= 2


@pytest.mark.parametrize("args", [["report", "{run}/summary.json"], ["report", "{run}/nothing"],
                                  ["compare", "{run}", "{run}/results.parquet"]])
def test_a_wrong_path_is_refused_with_exit_2(run_folder, capsys, args):
    assert main([a.format(run=run_folder) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xpay: refused:")


def test_load_run_gives_pandas_with_named_categoricals(run_folder):
    run = load_run(run_folder)
    assert run.summary == json.loads((run_folder / "summary.json").read_text())
    results = run.results()
    assert isinstance(results.status.dtype, pd.CategoricalDtype)
    assert "exceeds_credits" in results.status.cat.categories  # every name, seen or not
    assert int((results.status == "ok").sum()) == run.summary["status_counts"]["ok"]
    workload = run.workload()
    assert isinstance(workload.code.dtype, pd.CategoricalDtype)
    assert len(workload) == len(results) == run.summary["rows"]
    assert len(run.balances()) == run.summary["accounts"]
    assert set(run.audit().columns) >= {"epoch", "ledger", "double_entry", "overdraft"}
    assert "rows/s" in repr(run)


def test_names_refuse_unknown_codes():
    assert list(named_statuses([0, 21])) == ["ok", "exceeds_credits"]
    assert list(named_codes([1, 15, 42])) == ["p2p", "tip", "code_42"]
    with pytest.raises(ValueError, match="row 1: status\\(=22\\)"):
        named_statuses([0, 22])
    with pytest.raises(ValueError, match="code\\(=100\\)"):
        named_codes([100])


def test_open_loop_releases_epochs_when_due_and_counts_backlog_as_latency(tmp_path):
    slow, flood = tmp_path / "slow", tmp_path / "flood"
    assert main(["run", *SMALL_RUN, "--no-strict-serial", "--no-report", "--rate", "150000",
                 "--out", str(slow)]) == 0
    run = load_run(slow)
    epochs = run.epochs()
    pacer_speed = run.summary["offered_rows_per_s"]
    assert pacer_speed == 150000
    # never earlier: each epoch starts at or after its release, released at its last row's due time
    assert (epochs.start_s >= epochs.release_s - 1e-6).all()
    total_rows, span_us = run.summary["rows"], epochs.sim_end_us.iloc[-1] - epochs.sim_start_us.iloc[0]
    due_s = (epochs.sim_end_us - epochs.sim_start_us.iloc[0]) / (span_us / (total_rows / 150000))
    assert ((epochs.release_s - due_s).abs() < 1e-6).all()
    assert (epochs.final_s >= epochs.start_s).all() and (epochs.commit_s >= epochs.final_s).all()
    latency = run.summary["payment_latency_ms"]
    assert latency["all"]["count"] == total_rows
    assert sum(k["count"] for k in latency["by_kind"].values()) == total_rows
    assert int(run.latency().query("kind == 'all'")["count"].sum()) == total_rows
    # offered far above capacity: every epoch is due at once, the backlog is the latency
    assert main(["run", *SMALL_RUN, "--no-strict-serial", "--no-report", "--rate", "1e12",
                 "--out", str(flood)]) == 0
    flooded = load_run(flood)
    last_final_ms = flooded.epochs().final_s.iloc[-1] * 1000
    assert flooded.summary["payment_latency_ms"]["all"]["max"] >= 0.95 * last_final_ms


def test_closed_loop_reports_batch_latency_only(run_folder):
    run = load_run(run_folder)
    assert run.summary["latency_kind"] == "batch latency"
    assert "payment_latency_ms" not in run.summary
    assert not (run_folder / "latency.parquet").exists()
    assert len(run.epochs()) == run.summary["epochs"]
    assert int(run.epochs().rows.sum()) == run.summary["rows"]
