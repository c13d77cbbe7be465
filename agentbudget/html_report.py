"""The HTML page of ``agentbudget report --html``: one self-contained file.

Inline CSS and inline SVG charts; no JavaScript, no network, no external assets. Every
string that comes from the ledger (user and team ids, agent and model names, run ids,
limits, errors) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from ._format import plural, usd_rate
from .report import RunReport
from .reporting import SpendReport, describe_window
from .sinks.ledger import SpendRow

__all__ = ["render_html", "write_html"]

_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bar: #3b82f6;
        --bar2: #8b5cf6; --warn: #dc2626; --bg: #f8fafc; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--ink); background: var(--bg); }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 0 0 10px; }
.sub { color: var(--muted); margin-bottom: 18px; }
.cards { display: grid; grid-template-columns: repeat(6, 1fr); gap: 12px; margin-bottom: 18px; }
.card, section { background: #fff; border: 1px solid var(--line); border-radius: 8px; }
.card { padding: 10px 14px; }
.card .v { font-size: 20px; font-weight: 600; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; }
section { padding: 14px 18px; margin-bottom: 16px; }
.two { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.two section { margin-bottom: 0; }
.row2 { margin-bottom: 16px; }
svg { display: block; width: 100%; height: auto; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg text.v { fill: var(--ink); }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 4px 8px; border-bottom: 1px solid var(--line); text-align: left; }
th { color: var(--muted); font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
tr.calls td { background: #f1f5f9; color: var(--muted); font-size: 12px; }
tr.run td { border-top: 2px solid var(--line); }
.bad { color: var(--warn); font-weight: 600; }
.empty { color: var(--muted); font-style: italic; }
"""


def _e(text: object) -> str:
    """Escaped for HTML text and attributes."""
    return html.escape(str(text), quote=True)


def _usd(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${usd_rate(amount)}"


def _nice_max(value: float, *, whole: bool) -> float:
    """The top of a chart's axis: four equal steps of 1, 2, 2.5 or 5 x 10^k (whole numbers
    for counts) at or above ``value``."""
    if value <= 0:
        return 4.0 if whole else 1.0
    if whole:
        return float(-(-math.ceil(value) // 4) * 4)
    step = value / 4
    scale = 10.0 ** math.floor(math.log10(step))
    for factor in (1, 2, 2.5, 5, 10):
        if factor * scale >= step * (1 - 1e-9):
            return 4 * factor * scale
    return 40 * scale


def _tick(value: float, step: float, money: bool) -> str:
    """An axis label with as many decimals as the step needs (at least 2 for money)."""
    decimals = 0
    while decimals < 9 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6:
        decimals += 1
    if money:
        return f"${value:,.{max(decimals, 2) if value or decimals else 0}f}"
    return f"{value:,.{decimals}f}"


def _day(key: str) -> str:
    """``2026-11-30`` as ``Nov 30``."""
    try:
        return datetime.strptime(key, "%Y-%m-%d").strftime("%b %d")
    except ValueError:
        return key


def _columns(
    labels: Sequence[str],
    values: Sequence[float],
    tips: Sequence[str],
    *,
    title: str,
    money: bool,
    color: str,
    height: int = 240,
) -> str:
    """A vertical bar chart (one bar per label) as inline SVG."""
    width, left, bottom, top = 960, 70, 28, 12
    plot_w, plot_h = width - left - 12, height - bottom - top
    peak = _nice_max(max(values, default=0), whole=not money)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
    ]
    for i in range(5):
        value = peak * i / 4
        y = top + plot_h - plot_h * i / 4
        parts.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - 12}" y2="{y:.1f}" stroke="#e4e7eb"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_e(_tick(value, peak / 4, money))}</text>"
        )
    n = max(len(values), 1)
    slot = plot_w / n
    bar = max(min(slot * 0.7, 48), 1)
    every = max(1, math.ceil(n * 56 / plot_w))  # a label needs about 56 units
    for i, (label, value, tip) in enumerate(zip(labels, values, tips, strict=True)):
        h = plot_h * value / peak
        x = left + slot * i + (slot - bar) / 2
        parts.append(
            f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar:.1f}" '
            f'height="{h:.1f}" fill="{color}" rx="2"><title>{_e(label)}: '
            f"{_e(tip)}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{height - 8}" '
                f'text-anchor="middle">{_e(_day(label))}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _bars(rows: Sequence[SpendRow], *, title: str, color: str) -> str:
    """A horizontal bar chart of cost per row (label, bar, exact amount) as inline SVG."""
    if not rows:
        return '<p class="empty">No spend in this window.</p>'
    line, label_w, value_w, width = 24, 130, 110, 470
    height = line * len(rows) + 8
    peak = max(float(r.cost_usd) for r in rows) or 1.0
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
    ]
    for i, row in enumerate(rows):
        y = 4 + i * line
        name = "(none)" if row.key is None else row.key
        shown = name if len(name) <= 20 else name[:19] + "\u2026"
        w = (width - label_w - value_w) * float(row.cost_usd) / peak
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end" class="v">'
            f"<title>{_e(name)}</title>{_e(shown)}</text>"
            f'<rect x="{label_w}" y="{y + 4}" width="{max(w, 1):.1f}" height="{line - 8}" '
            f'fill="{color}" rx="2"/>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 16}">{_e(_usd(row.cost_usd))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _spend_table(rows: Sequence[SpendRow], by: str) -> str:
    head = (
        f"<tr><th>{_e(by)}</th><th class=n>runs</th><th class=n>LLM calls</th>"
        "<th class=n>tokens</th><th class=n>cost (USD)</th><th class=n>saved (USD)</th>"
        "<th class=n>tripped</th></tr>"
    )
    body = "".join(
        f"<tr><td>{_e('(none)' if r.key is None else r.key)}</td><td class=n>{r.runs:,}</td>"
        f"<td class=n>{r.llm_calls:,}</td><td class=n>{r.input_tokens + r.output_tokens:,}</td>"
        f"<td class=n>{_e(usd_rate(r.cost_usd))}</td>"
        f"<td class=n>{'-' if by == 'model' else _e(usd_rate(r.saved_usd))}</td>"
        f"<td class=n>{r.tripped:,}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _runs_table(runs: Sequence[RunReport], *, calls: bool) -> str:
    if not runs:
        return '<p class="empty">None in this window.</p>'
    head = (
        "<tr><th>started (UTC)</th><th>run</th><th>user</th><th>team</th><th>agent</th>"
        "<th>outcome</th><th class=n>LLM calls</th><th class=n>tool calls</th>"
        "<th class=n>tokens</th><th class=n>cost</th></tr>"
    )
    body: list[str] = []
    for run in runs:
        outcome = run.outcome + (f" ({run.tripped_limit})" if run.tripped_limit else "")
        css = ' class="bad"' if run.outcome in ("tripped", "error") else ""
        body.append(
            f'<tr class="run"><td>{_e(_when(run.started_at))}</td><td>{_e(run.run_id)}</td>'
            f"<td>{_e(run.user or '')}</td><td>{_e(run.team or '')}</td><td>{_e(run.agent)}</td>"
            f"<td{css}>{_e(outcome)}</td><td class=n>{len(run.calls):,}</td>"
            f"<td class=n>{run.tool_calls:,}</td><td class=n>{run.total_tokens:,}</td>"
            f"<td class=n>{_e(_usd(run.cost_usd))}</td></tr>"
        )
        if calls:
            for n, call in enumerate(run.calls, 1):
                marks = [
                    m
                    for m, on in (
                        ("estimated", call.estimated),
                        ("streamed", call.streamed),
                        ("local", call.local),
                        (call.degraded or "", bool(call.degraded)),
                    )
                    if on
                ]
                body.append(
                    f'<tr class="calls"><td></td><td>call {n}</td><td colspan=2>'
                    f"{_e(call.model)}</td><td>{_e(call.agent)}</td>"
                    f"<td>{_e(', '.join(marks))}</td>"
                    f"<td class=n colspan=2>in {call.input_tokens:,} "
                    f"(cached {call.cached_input_tokens:,})</td>"
                    f"<td class=n>out {call.output_tokens:,}</td>"
                    f"<td class=n>{_e(_usd(call.cost_usd))}</td></tr>"
                )
    return f"<table>{head}{''.join(body)}</table>"


def _costliest(shown: Sequence[RunReport], count: int) -> str:
    return f" (the {len(shown)} costliest)" if 0 < len(shown) < count else ""


def render_html(report: SpendReport, *, title: str = "agentbudget spend report") -> str:
    """The report as one self-contained HTML page (read it with ``details=True``)."""
    total = report.total
    cards = [
        ("cost", _usd(total.cost_usd)),
        ("runs", f"{total.runs:,}"),
        ("LLM calls", f"{total.llm_calls:,}"),
        ("tokens", f"{total.input_tokens + total.output_tokens:,}"),
        ("tripped runs", f"{total.tripped:,}"),
        ("cache savings", _usd(total.saved_usd)),
    ]
    days = [r.key or "" for r in report.days]
    spend = _columns(
        days,
        [float(r.cost_usd) for r in report.days],
        [_usd(r.cost_usd) for r in report.days],
        title="spend per day (USD)",
        money=True,
        color="#3b82f6",
    )
    tripped = _columns(
        days,
        [float(r.tripped) for r in report.days],
        [plural(r.tripped, "tripped run") for r in report.days],
        title="tripped runs per day",
        money=False,
        color="#dc2626",
        height=150,
    )
    unpriced = (
        f" {total.unpriced_calls:,} LLM calls had no price and are not in the cost."
        if total.unpriced_calls
        else ""
    )
    card_html = "".join(
        f'<div class="card"><div class="k">{_e(k)}</div><div class="v">{_e(v)}</div></div>'
        for k, v in cards
    )
    no_runs = '<p class="empty">No runs in this window.</p>'
    users = _bars(report.users[:10], title="cost per user", color="#3b82f6")
    models = _bars(report.models[:10], title="cost per model", color="#8b5cf6")
    body = (
        f"<h1>{_e(title)}</h1>\n"
        f'<div class="sub">{_e(describe_window(report))} &middot; generated '
        f"{_e(_when(report.generated_at))} UTC &middot; amounts in USD, exact to the "
        f"nano-dollar.{_e(unpriced)}</div>\n"
        f'<div class="cards">{card_html}</div>\n'
        f"<section><h2>Spend over time (per UTC day)</h2>{spend if report.days else no_runs}"
        "</section>\n"
        f'<div class="two row2"><section><h2>Top users</h2>{users}</section>\n'
        f"<section><h2>Top models</h2>{models}</section></div>\n"
        f"<section><h2>Spend by {_e(report.by)}</h2>{_spend_table(report.rows, report.by)}"
        "</section>\n"
        f"<section><h2>Tripped runs: {total.tripped:,}"
        f"{_costliest(report.tripped_runs, total.tripped)}"
        f"</h2>{tripped if total.tripped else ''}"
        f"{_runs_table(report.tripped_runs, calls=False)}</section>\n"
        f"<section><h2>Biggest runs and their calls{_costliest(report.biggest_runs, total.runs)}"
        "</h2>"
        f"{_runs_table(report.biggest_runs, calls=True)}</section>\n"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}</body></html>\n"
    )


def write_html(report: SpendReport, path: str | os.PathLike[str]) -> None:
    """Write ``render_html(report)`` to ``path`` (UTF-8)."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(render_html(report))
