"""``report.html``: one self-contained page per run (or two runs side by side), images inline.

`write_report(DIR)` draws every figure of `xpay.plots` from the run folder, writes each as
``DIR/plots/NAME.png`` and embeds the same bytes in ``DIR/report.html`` as base64 data URIs,
so the page can be mailed or opened offline. A figure the run cannot have (say, payment
latency of a closed-loop run) is listed with the reason instead. `write_comparison(A, B, OUT)`
does the same with the two runs' figures in two columns and their key figures in one table.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import numpy as np

from xpay import plots
from xpay.runs import Run, load_run

REPORT_FILE = "report.html"
PLOTS_FOLDER = "plots"
KEY_FIGURES = (
    ("rows", "rows"), ("epochs", "epochs"), ("committed", "committed"), ("shards", "shards"),
    ("rows_per_s", "rows per second"), ("engine_seconds", "engine seconds"),
    ("startup_seconds", "start-up seconds"), ("strict_serial_divergence", "strict-serial divergence"),
    ("engine_bytes_per_account", "bytes per account in the shards"),
    ("engine_bytes_per_windowed_id", "bytes per transfer id in the idempotency window"),
)


def figures(run: Run) -> list[tuple[str, str, object]]:
    """(name, title, Figure or the reason it is missing) for every figure of the report."""
    drawers = [
        ("throughput", "Throughput over time", plots.throughput_over_time),
        ("latency_cdf", "Latency CDF by payment kind", plots.latency_cdf),
        ("status_mix", "Status mix by payment kind", plots.status_mix_by_kind),
        ("arrivals", "Arrivals against the scenario's rate curve",
         lambda r: plots.arrivals_against_curve(r, expected_hourly_share(r.summary))),
        ("shard_load", "Per-shard load", plots.shard_load),
        ("invariants", "Conservation and invariants over time", plots.invariant_timeline),
    ]
    out = []
    for name, title, draw in drawers:
        try:
            out.append((name, title, draw(run)))
        except plots.PlotUnavailable as missing:
            out.append((name, title, str(missing)))
    return out


def expected_hourly_share(summary: dict) -> np.ndarray | None:
    """The scenario's arrival rate per model hour of day as shares of the day, or None when
    the run names no scenario file the model can load."""
    name = summary.get("configuration", {}).get("scenario")
    if not name:
        return None
    from workloads.arrivals import RateCurve
    from workloads.scenario import load_scenario

    try:
        scenario = load_scenario(name)
    except Exception:  # a scenario file that has since moved: draw the realised rows alone
        return None
    curve = RateCurve(scenario)
    days = max(1, math.ceil(scenario.time.days))
    seconds = (np.arange(days * 86_400) + 0.5).astype(float)
    rate = curve.base_rate(seconds)
    for burst in scenario.bursts:
        rate = rate + curve.burst_rate(burst, seconds)
    hourly = np.bincount(((seconds // 3_600) % 24).astype(np.int64), weights=rate, minlength=24)
    return hourly / hourly.sum()


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plots.plt.close(figure)
    return buffer.getvalue()


def _render_figures(run: Run, plots_dir: Path) -> list[tuple[str, str, bytes | str]]:
    plots_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, title, figure in figures(run):
        if isinstance(figure, str):
            out.append((name, title, figure))
            continue
        data = _png(figure)
        (plots_dir / f"{name}.png").write_bytes(data)
        out.append((name, title, data))
    return out


def _img(data: bytes | str, title: str) -> str:
    if isinstance(data, str):
        return f'<p class="missing">Not in this run: {html.escape(data)}</p>'
    encoded = base64.b64encode(data).decode("ascii")
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{encoded}">'


def _figure_value(summary: dict, key: str) -> str:
    value = summary.get(key)
    if value is None:
        return "n/a"
    if key == "strict_serial_divergence":
        return f"{value:.4%}"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else html.escape(str(value))


def _summary_rows(summaries: list[dict]) -> str:
    rows = []
    for key, label in KEY_FIGURES:
        cells = "".join(f"<td>{_figure_value(s, key)}</td>" for s in summaries)
        rows.append(f"<tr><th>{label}</th>{cells}</tr>")
    for name in ("p50", "p99", "p99.9", "max"):
        cells = "".join(f"<td>{_latency_value(s, name)}</td>" for s in summaries)
        rows.append(f"<tr><th>{_latency_label(summaries[0])} {name} (ms)</th>{cells}</tr>")
    verdicts = "".join("<td>" + ", ".join(f"{k} {'held' if v else 'BROKEN'}" for k, v in
                                            s.get("invariants", {}).items()) + "</td>"
                       for s in summaries)
    rows.append(f"<tr><th>invariants</th>{verdicts}</tr>")
    return "\n".join(rows)


def _latency_label(summary: dict) -> str:
    return "payment latency" if "payment_latency_ms" in summary else "epoch latency"


def _latency_value(summary: dict, name: str) -> str:
    block = summary.get("payment_latency_ms", {}).get("all") or summary.get("epoch_latency_ms", {})
    value = block.get(name)
    return "n/a" if value is None else f"{value:,.1f}"


STYLE = """body{font-family:sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
img{max-width:100%}.missing{color:#888;font-style:italic}.cols{display:flex;gap:1em}
.cols>div{flex:1}pre{background:#f6f6f6;padding:1em;overflow:auto;font-size:small}"""


def _page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"{body}\n</body></html>\n")


def _configuration(summary: dict) -> str:
    shown = {k: summary.get(k) for k in ("configuration", "versions", "hardware")}
    return f"<pre>{html.escape(json.dumps(shown, indent=2, default=str))}</pre>"


def write_report(folder) -> Path:
    """Draw every figure of the run in `folder`; write report.html and plots/*.png there."""
    run = load_run(folder)
    rendered = _render_figures(run, run.folder / PLOTS_FOLDER)
    sections = "\n".join(f"<h2>{html.escape(title)}</h2>\n{_img(data, title)}"
                         for _, title, data in rendered)
    body = (f"<table>{_summary_rows([run.summary])}</table>\n{sections}\n"
            f"<h2>Configuration and versions</h2>\n{_configuration(run.summary)}")
    path = run.folder / REPORT_FILE
    _write_text(path, _page(f"xpay run: {run.folder.name}", body))
    return path


def write_comparison(folder_a, folder_b, out) -> Path:
    """Two runs side by side: key figures in one table, each figure in two columns."""
    runs = [load_run(folder_a), load_run(folder_b)]
    out = Path(out)
    rendered = [_render_figures(run, out / PLOTS_FOLDER / label)
                for run, label in zip(runs, ("a", "b"))]
    head = "".join(f"<td><b>{html.escape(str(run.folder))}</b></td>" for run in runs)
    table = f"<table><tr><th></th>{head}</tr>{_summary_rows([r.summary for r in runs])}</table>"
    sections = []
    for (name, title, data_a), (_, _, data_b) in zip(*rendered):
        sections.append(f"<h2>{html.escape(title)}</h2><div class='cols'><div>{_img(data_a, title)}"
                        f"</div><div>{_img(data_b, title)}</div></div>")
    configs = "".join(f"<div>{_configuration(run.summary)}</div>" for run in runs)
    body = (f"{table}\n" + "\n".join(sections) +
            f"\n<h2>Configuration and versions</h2><div class='cols'>{configs}</div>")
    path = out / REPORT_FILE
    _write_text(path, _page(f"xpay compare: {runs[0].folder.name} vs {runs[1].folder.name}", body))
    return path


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
