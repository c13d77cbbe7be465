"""What ``agentbudget report`` reads from a ledger, and how it prints: a table, CSV, JSON.

``spend_report`` reads a SQLite or PostgreSQL ledger into a ``SpendReport``; ``render_table``
prints it with rich, ``to_csv`` and ``to_json`` give its exact figures (``Decimal`` strings,
never floats). The HTML page is ``agentbudget.html_report``.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sqlite3
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar
from urllib.parse import urlsplit

from ._format import plural, usd_rate
from .errors import ConfigurationError
from .report import RunReport
from .sinks.ledger import PostgresLedger, SpendRow, SQLiteLedger
from .sinks.ledger._common import GROUPS, Group

if TYPE_CHECKING:
    from rich.console import Console

    from .planning import BudgetPlan, LedgerPlan

__all__ = [
    "PROGRESS_MIN_RUNS",
    "SpendReport",
    "open_ledger",
    "parse_moment",
    "plan_to_json",
    "render_measured_plan",
    "render_plan",
    "render_table",
    "spend_report",
    "to_csv",
    "to_json",
]

_T = TypeVar("_T")
Ledger = SQLiteLedger | PostgresLedger

PROGRESS_MIN_RUNS = 10_000
"""A ledger window with at least this many runs shows progress (when stderr is a terminal)."""

_DURATION = re.compile(r"(\d+)([mhdw])\Z")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
CSV_COLUMNS: tuple[str, ...] = (
    "runs",
    "llm_calls",
    "input_tokens",
    "output_tokens",
    "tokens",
    "cost_usd",
    "unpriced_calls",
    "tripped",
    "refused",
    "cache_hits",
    "saved_usd",
)


def open_ledger(spec: str, *, schema: str | None = None) -> Ledger:
    """The ledger at ``spec``: a SQLite file path, ``sqlite:///path`` or ``postgresql://...``.

    A SQLite ledger must exist and be an agentbudget ledger (checked read-only: a report
    never creates or migrates a file). ``schema`` is the PostgreSQL schema of the tables.

    Raises:
        ConfigurationError: an unknown scheme, a missing file, a file that is not a ledger,
            or ``schema`` given for SQLite.
    """
    scheme = urlsplit(spec).scheme if "://" in spec else ""
    if scheme in ("postgresql", "postgres"):
        return PostgresLedger(spec, schema=schema)
    if scheme not in ("", "sqlite"):
        raise ConfigurationError(
            f"unknown ledger {spec!r}: give a SQLite file, sqlite:///path.db or postgresql://..."
        )
    if schema is not None:
        raise ConfigurationError("--schema is for PostgreSQL ledgers; a SQLite file has none")
    path = Path(spec.removeprefix("sqlite:///"))
    if path.is_dir():
        raise ConfigurationError(f"the ledger {str(path)!r} is a directory; give its file")
    if not path.is_file():
        raise ConfigurationError(f"no ledger at {str(path)!r}: the file does not exist")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            found = conn.execute(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'ab_runs'"
            ).fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ConfigurationError(f"{str(path)!r} is not a SQLite ledger: {exc}") from None
    if not found:
        raise ConfigurationError(f"{str(path)!r} is not an agentbudget ledger (no ab_runs table)")
    return SQLiteLedger(path)


def parse_moment(text: str, *, now: datetime, option: str = "--since") -> datetime:
    """A moment from a duration back from ``now`` (``90m``, ``24h``, ``7d``, ``2w``) or an
    ISO date or datetime (``2026-11-30``, ``2026-11-30T12:00``; naive means UTC).

    Raises:
        ConfigurationError: anything else, or a duration of 0.
    """
    match = _DURATION.match(text.strip().lower())
    if match:
        amount = int(match.group(1))
        if amount == 0:
            raise ConfigurationError(f"{option}: a duration must be more than 0, got {text!r}")
        return now - timedelta(**{_UNITS[match.group(2)]: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigurationError(
            f"{option}: expected a duration (24h, 7d, 30d) or an ISO date (2026-11-30), "
            f"got {text!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class SpendReport:
    """The spend in a ledger window, as ``agentbudget report`` shows it.

    ``rows`` are grouped by ``by``, biggest cost first (days: the biggest, oldest first),
    cut to ``top`` (``others`` counts the rows left out). ``total`` covers every run in
    the window once, also with ``by="model"``, where a run that called two models is in
    two rows. ``days`` (oldest
    first) always holds the spend per UTC day. ``users``, ``models``, ``tripped_runs``
    and ``biggest_runs`` are read for the HTML page only (``details=True``).
    """

    by: str
    since: datetime | None
    until: datetime | None
    generated_at: datetime
    rows: tuple[SpendRow, ...]
    others: int
    total: SpendRow
    days: tuple[SpendRow, ...]
    users: tuple[SpendRow, ...] = ()
    models: tuple[SpendRow, ...] = ()
    tripped_runs: tuple[RunReport, ...] = ()
    biggest_runs: tuple[RunReport, ...] = field(default=())


def _sum(key: str | None, rows: Sequence[SpendRow]) -> SpendRow:
    return SpendRow(
        key=key,
        runs=sum(r.runs for r in rows),
        llm_calls=sum(r.llm_calls for r in rows),
        input_tokens=sum(r.input_tokens for r in rows),
        output_tokens=sum(r.output_tokens for r in rows),
        cost_usd=sum((r.cost_usd for r in rows), Decimal(0)),
        unpriced_calls=sum(r.unpriced_calls for r in rows),
        tripped=sum(r.tripped for r in rows),
        refused=sum(r.refused for r in rows),
        cache_hits=sum(r.cache_hits for r in rows),
        saved_usd=sum((r.saved_usd for r in rows), Decimal(0)),
    )


def _summary(
    ledger: Ledger, since: datetime | None, until: datetime | None, by: Group
) -> list[SpendRow]:
    if isinstance(ledger, PostgresLedger):
        return ledger.summary_sync(since, until, by)
    return ledger.summary(since, until, by)


def _top_runs(
    ledger: Ledger,
    since: datetime | None,
    until: datetime | None,
    outcome: str | None,
    limit: int,
) -> list[RunReport]:
    if isinstance(ledger, PostgresLedger):
        return ledger.top_runs_sync(since, until, outcome=outcome, limit=limit)
    return ledger.top_runs(since, until, outcome=outcome, limit=limit)


def spend_report(
    ledger: Ledger,
    *,
    by: str = "user",
    since: datetime | None = None,
    until: datetime | None = None,
    top: int | None = None,
    details: bool = False,
    biggest: int = 10,
    progress: Console | None = None,
    now: datetime | None = None,
) -> SpendReport:
    """Read the spend of a ledger window.

    Args:
        by: ``user``, ``team``, ``agent``, ``model`` or ``day``.
        since, until: the window (``since`` inclusive, ``until`` exclusive).
        top: keep the ``top`` biggest rows (None: all).
        details: also read what the HTML page shows (top users and models, tripped and
            biggest runs with their calls).
        biggest: how many runs the HTML page lists, biggest and tripped.
        progress: a console (stderr) for a transient progress bar, shown when it is a
            terminal and the window holds ``PROGRESS_MIN_RUNS`` runs or more.
        now: the report's time (default: the clock).

    Raises:
        ConfigurationError: a bad ``by`` or ``top``, a window that ends before it starts.
        StoreUnavailable: the ledger cannot be read.
    """
    if by not in GROUPS:
        raise ConfigurationError(f"by must be one of {', '.join(GROUPS)}; got {by!r}")
    if top is not None and (isinstance(top, bool) or not isinstance(top, int) or top < 1):
        raise ConfigurationError(f"top must be a positive whole number, got {top!r}")
    group: Group = by  # type: ignore[assignment]
    # The spend per day counts every run once: the total, the chart, and the run count.
    days = sorted(_summary(ledger, since, until, "day"), key=lambda r: r.key or "")
    total = _sum(None, days)
    steps: list[tuple[str, Callable[[], Any]]] = []
    if group != "day":
        steps.append((f"spend by {group}", lambda: _summary(ledger, since, until, group)))
    if details:
        for name in ("user", "model"):
            if name != group:
                steps.append((f"spend by {name}", _reader(ledger, since, until, name)))
        steps.append(("tripped runs", lambda: _top_runs(ledger, since, until, "tripped", biggest)))
        steps.append(("biggest runs", lambda: _top_runs(ledger, since, until, None, biggest)))
    results = _run_steps(steps, total.runs, progress)
    if group == "day":  # the biggest days, shown oldest first
        rows = sorted(days, key=lambda r: (-r.cost_usd, -r.runs, r.key or ""))
        kept = sorted(rows if top is None else rows[:top], key=lambda r: r.key or "")
    else:
        rows = results.pop(f"spend by {group}")
        kept = rows if top is None else rows[:top]
    return SpendReport(
        by=group,
        since=since,
        until=until,
        generated_at=now or datetime.now(timezone.utc),
        rows=tuple(kept),
        others=len(rows) - len(kept),
        total=total,
        days=tuple(days),
        users=tuple(results.get("spend by user", rows if group == "user" else ())),
        models=tuple(results.get("spend by model", rows if group == "model" else ())),
        tripped_runs=tuple(results.get("tripped runs", ())),
        biggest_runs=tuple(results.get("biggest runs", ())),
    )


def _reader(
    ledger: Ledger, since: datetime | None, until: datetime | None, by: Group
) -> Callable[[], list[SpendRow]]:
    return lambda: _summary(ledger, since, until, by)


def _run_steps(
    steps: list[tuple[str, Callable[[], Any]]], runs: int, console: Console | None
) -> dict[str, Any]:
    """Run the reads, under a transient progress bar on a terminal for a large window."""
    results: dict[str, Any] = {}
    if console is None or not console.is_terminal or runs < PROGRESS_MIN_RUNS or not steps:
        for name, step in steps:
            results[name] = step()
        return results
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"reading {runs:,} runs", total=len(steps))
        for name, step in steps:
            bar.update(task, description=f"reading {runs:,} runs: {name}")
            results[name] = step()
            bar.advance(task)
    return results


# Output.


def describe_window(report: SpendReport) -> str:
    """``all time``, ``since 2026-11-30 00:00 UTC``, ``... to ...``."""

    def day(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%d %H:%M UTC")

    if report.since and report.until:
        return f"{day(report.since)} to {day(report.until)}"
    if report.since:
        return f"since {day(report.since)}"
    if report.until:
        return f"until {day(report.until)}"
    return "all time"


def _key(key: str | None) -> str:
    return "(none)" if key is None else key


def render_table(report: SpendReport, console: Console | None = None) -> None:
    """Print the report as a rich table (stdout by default), with a total line."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    if console is None:
        console = Console(file=sys.stdout)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = 160  # piped: no terminal to fit, so do not wrap names at 80
    table = Table(
        title=f"Spend by {report.by}, {describe_window(report)}",
        box=box.SIMPLE_HEAD,
        show_footer=True,
        title_justify="left",
    )
    total = report.total
    footer = [
        "total",
        f"{total.runs:,}",
        f"{total.llm_calls:,}",
        f"{total.input_tokens + total.output_tokens:,}",
        usd_rate(total.cost_usd),
        usd_rate(total.saved_usd),
        f"{total.tripped:,}",
    ]
    headers = [report.by, "runs", "LLM calls", "tokens", "cost (USD)", "saved (USD)", "tripped"]
    for n, (header, foot) in enumerate(zip(headers, footer, strict=True)):
        table.add_column(
            header,
            footer=foot,
            justify="left" if n == 0 else "right",
            no_wrap=n > 0,
            overflow="fold",
            min_width=min(max((len(_key(r.key)) for r in report.rows), default=5), 24)
            if n == 0
            else None,
        )
    for row in report.rows:
        table.add_row(
            _key(row.key),
            f"{row.runs:,}",
            f"{row.llm_calls:,}",
            f"{row.input_tokens + row.output_tokens:,}",
            usd_rate(row.cost_usd),
            "-" if report.by == "model" else usd_rate(row.saved_usd),  # runs save, not models
            f"{row.tripped:,}",
        )
    notes = []
    if report.others:
        noun = "day" if report.by == "day" else report.by
        notes.append(f"{plural(report.others, 'more ' + noun)} not shown (--top)")
    if report.by == "model" and sum(r.runs for r in report.rows) > total.runs:
        notes.append("a run that called two models counts under each; the total counts it once")
    if total.unpriced_calls:
        notes.append(f"{total.unpriced_calls:,} LLM calls had no price and are not in the cost")
    if notes:
        table.caption = "\n".join(notes)
        table.caption_justify = "left"
    console.print(table)


def _fields(row: SpendRow) -> dict[str, Any]:
    return {
        "runs": row.runs,
        "llm_calls": row.llm_calls,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "tokens": row.input_tokens + row.output_tokens,
        "cost_usd": format(row.cost_usd, "f"),
        "unpriced_calls": row.unpriced_calls,
        "tripped": row.tripped,
        "refused": row.refused,
        "cache_hits": row.cache_hits,
        "saved_usd": format(row.saved_usd, "f"),
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(timezone.utc).isoformat()


def to_json(report: SpendReport) -> str:
    """The report as JSON: amounts are exact decimal strings (``"0.030300001"``)."""
    document = {
        "by": report.by,
        "since": _iso(report.since),
        "until": _iso(report.until),
        "rows": [{"key": row.key, **_fields(row)} for row in report.rows],
        "others": report.others,
        "total": _fields(report.total),
    }
    return json.dumps(document, indent=2)


def to_csv(report: SpendReport, out: TextIO | None = None) -> str:
    """The rows as CSV (a header, then one line per row; no total line). The first column
    is named after ``by``; a missing user or team is an empty field."""
    buffer = out or io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([report.by, *CSV_COLUMNS])
    for row in report.rows:
        values = _fields(row)
        writer.writerow(["" if row.key is None else row.key, *(values[c] for c in CSV_COLUMNS)])
    return buffer.getvalue() if isinstance(buffer, io.StringIO) else ""


# Budget plans (``agentbudget plan``).


def _count(value: int | None) -> str:
    return "unbounded" if value is None else f"{value:,}"


def _share_text(share: Decimal) -> str:
    return f"{(share * 100).normalize():f}%"


def _console(console: Console | None) -> Console:
    from rich.console import Console

    if console is None:
        console = Console(file=sys.stdout)
        if not console.is_terminal and "COLUMNS" not in os.environ:
            console.width = 160
    return console


def render_plan(plan: BudgetPlan, console: Console | None = None) -> None:
    """Print what a budget buys per model (``planning.plan_budget``) as a rich table."""
    from rich import box
    from rich.table import Table

    console = _console(console)
    a, b = plan.input_output
    table = Table(
        title=(
            f"What ${usd_rate(plan.budget_usd)} per {plan.period} buys (price table "
            f"{plan.price_table}; input:output {a}:{b}, cached input "
            f"{_share_text(plan.cached_share)}, a run is {plan.run_tokens:,} tokens"
            + (f", {plan.users:,} daily users" if plan.users else "")
            + ")"
        ),
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    headers = ["model", "USD / 1M tokens", f"tokens / {plan.period}", f"runs / {plan.period}"]
    daily = plan.days > 1  # per-day columns, unless the period is a day
    headers += (["tokens / day", "runs / day"] if daily else []) + (
        ["runs / user / day"] if plan.users else []
    )
    for n, header in enumerate(headers):
        table.add_column(header, justify="left" if n == 0 else "right", no_wrap=n > 0)
    for row in plan.rows:
        name = row.name
        if name == "mix":
            name = "mix " + " + ".join(f"{_share_text(s)} {m}" for m, s in row.shares)
        cells = [
            name,
            usd_rate(row.usd_per_million),
            _count(row.tokens),
            _count(row.runs),
        ]
        if daily:
            cells += [_count(row.tokens_per_day), _count(row.runs_per_day)]
        if plan.users:
            cells.append(_count(row.runs_per_user_day))
        table.add_row(*cells)
    table.caption = "long-context tiers not applied"
    if plan.period == "month":
        table.caption = f"a month is planned as {plan.days} days; {table.caption}"
    table.caption_justify = "left"
    console.print(table)


def render_measured_plan(plan: LedgerPlan, console: Console | None = None) -> None:
    """Print a budget plan measured from a ledger (``planning.measured_plan``)."""
    from rich import box
    from rich.table import Table

    console = _console(console)
    since = plan.since.strftime("%Y-%m-%d %H:%M") if plan.since else "the start"
    table = Table(
        title=(
            f"What ${usd_rate(plan.budget_usd)} per {plan.period} buys at the costs measured "
            f"from {since} to {plan.until:%Y-%m-%d %H:%M} UTC ({plural(plan.runs, 'run')}, "
            f"${usd_rate(plan.cost_usd)})"
        ),
        box=box.SIMPLE_HEAD,
        title_justify="left",
    )
    headers = ["agent", "model", "runs", "cost / run (USD)", f"runs / {plan.period}"]
    headers.append(f"tokens / {plan.period}")
    for n, header in enumerate(headers):
        table.add_column(header, justify="left" if n < 2 else "right", no_wrap=n > 1)
    for row in plan.rows:
        table.add_row(
            row.agent,
            row.model,
            f"{row.runs:,}",
            usd_rate(row.cost_per_run_usd),
            _count(row.runs_bought),
            _count(row.tokens_bought),
        )
    console.print(table)
    lines = [
        f"cost per run:             ${usd_rate(plan.cost_per_run_usd)} "
        f"({_count(plan.runs_bought)} runs per {plan.period})",
        f"spend per user per day:   ${usd_rate(plan.spend_per_user_day_usd)} "
        f"({plural(plan.user_days, 'user-day')}, peak {plan.peak_daily_users:,} users a day)",
        "daily users supported:    "
        + ("-" if plan.supported_daily_users is None else f"{plan.supported_daily_users:,}")
        + f" (${usd_rate(plan.budget_usd)} over {plan.days} days)",
    ]
    if plan.suggested_daily_allowance_usd is not None and plan.planned_users is not None:
        lines.append(
            f"suggested allowance:      ${usd_rate(plan.suggested_daily_allowance_usd)} per "
            f"user per day ({plural(plan.planned_users, 'user')}, "
            f"{_share_text(plan.margin)} margin): "
            f'Allowance(per="user", window="day", usd="{plan.suggested_daily_allowance_usd}")'
        )
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def _money_text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def plan_to_json(plan: BudgetPlan | None, measured: LedgerPlan | None = None) -> str:
    """A plan (and a measured plan) as JSON: amounts as exact decimal strings."""
    document: dict[str, Any] = {}
    if plan is not None:
        document["plan"] = {
            "budget_usd": _money_text(plan.budget_usd),
            "period": plan.period,
            "days": plan.days,
            "input_output": list(plan.input_output),
            "cached_share": _money_text(plan.cached_share),
            "run_tokens": plan.run_tokens,
            "users": plan.users,
            "price_table": plan.price_table,
            "rows": [
                {
                    "name": row.name,
                    "shares": {m: _money_text(s) for m, s in row.shares},
                    "usd_per_million": _money_text(row.usd_per_million),
                    "tokens": row.tokens,
                    "runs": row.runs,
                    "tokens_per_day": row.tokens_per_day,
                    "runs_per_day": row.runs_per_day,
                    "runs_per_user_day": row.runs_per_user_day,
                }
                for row in plan.rows
            ],
        }
    if measured is not None:
        document["measured"] = {
            "budget_usd": _money_text(measured.budget_usd),
            "period": measured.period,
            "since": _iso(measured.since),
            "until": _iso(measured.until),
            "runs": measured.runs,
            "cost_usd": _money_text(measured.cost_usd),
            "cost_per_run_usd": _money_text(measured.cost_per_run_usd),
            "runs_bought": measured.runs_bought,
            "rows": [
                {
                    "agent": row.agent,
                    "model": row.model,
                    "runs": row.runs,
                    "calls": row.calls,
                    "tokens": row.tokens,
                    "cost_usd": _money_text(row.cost_usd),
                    "cost_per_run_usd": _money_text(row.cost_per_run_usd),
                    "runs_bought": row.runs_bought,
                    "tokens_bought": row.tokens_bought,
                }
                for row in measured.rows
            ],
            "user_days": measured.user_days,
            "peak_daily_users": measured.peak_daily_users,
            "spend_per_user_day_usd": _money_text(measured.spend_per_user_day_usd),
            "supported_daily_users": measured.supported_daily_users,
            "planned_users": measured.planned_users,
            "margin": _money_text(measured.margin),
            "suggested_daily_allowance_usd": _money_text(measured.suggested_daily_allowance_usd),
        }
    return json.dumps(document, indent=2)
