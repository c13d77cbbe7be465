"""What the SQLite and PostgreSQL ledgers share: columns, rows, the summary row, checks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal

from ...errors import ConfigurationError
from ...money import nanos_to_usd, usd_to_nanos
from ...report import LLMCallCost, Route, RunReport

__all__ = [
    "CALL_COLUMNS",
    "GROUPS",
    "RUN_COLUMNS",
    "SCHEMA_VERSION",
    "Group",
    "SpendRow",
    "call_rows",
    "check_filters",
    "rebuild",
    "run_row",
]

SCHEMA_VERSION = 2
"""Version 1: runs and calls. Version 2: the call's service tier and
``priced_at_standard_rate``, and the whole route as JSON (``route_json``)."""

Group = Literal["user", "team", "agent", "model", "day"]
GROUPS: tuple[str, ...] = ("user", "team", "agent", "model", "day")

RUN_COLUMNS: tuple[str, ...] = (
    "run_id",
    "started_at",
    "user_id",
    "team_id",
    "agent",
    "outcome",
    "tripped_limit",
    "error",
    "llm_calls",
    "unpriced_calls",
    "tool_calls",
    "tool_names",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_nanos",
    "duration_s",
    "cache_hit",
    "saved_nanos",
    "route_model",
    "route_reason",
    "route_json",
)

CALL_COLUMNS: tuple[str, ...] = (
    "run_id",
    "seq",
    "started_at",
    "agent",
    "model",
    "price_key",
    "price_source",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "cost_nanos",
    "estimated",
    "streamed",
    "degraded",
    "is_local",
    "service_tier",
    "priced_at_standard_rate",
)


@dataclass(frozen=True)
class SpendRow:
    """One line of ``summary()``: the spend of one user, team, agent, model or day.

    ``cost_usd`` is the exact sum of the priced calls; ``unpriced_calls`` counts the calls
    left out of it. Grouped by model, a run counts once under each model it called, and
    runs without LLM calls (cache hits) do not appear.
    """

    key: str | None
    runs: int
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    unpriced_calls: int
    tripped: int
    refused: int
    cache_hits: int
    saved_usd: Decimal


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def check_filters(
    since: datetime | None, until: datetime | None, limit: int | None = None
) -> tuple[datetime | None, datetime | None]:
    """Validate a ``since``/``until`` window (``since`` inclusive, ``until`` exclusive)."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and not isinstance(value, datetime):
            raise ConfigurationError(f"{name} must be a datetime or None, got {value!r}")
    start = utc(since) if since is not None else None
    end = utc(until) if until is not None else None
    if start is not None and end is not None and start > end:
        raise ConfigurationError(f"since ({start.isoformat()}) is after until ({end.isoformat()})")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigurationError(f"limit must be a positive int or None, got {limit!r}")
    return start, end


def check_group(by: object) -> str:
    if by not in GROUPS:
        raise ConfigurationError(f"by must be one of {', '.join(GROUPS)}; got {by!r}")
    assert isinstance(by, str)
    return by


def _nanos(amount: Decimal | None) -> int | None:
    return None if amount is None else usd_to_nanos(amount)


def run_row(report: RunReport, started_at: Any) -> tuple[Any, ...]:
    """The ``ab_runs`` row of a report, in ``RUN_COLUMNS`` order (booleans as bool)."""
    route = report.route
    return (
        report.run_id,
        started_at,
        report.user,
        report.team,
        report.agent,
        report.outcome,
        report.tripped_limit,
        report.error,
        len(report.calls),
        report.unpriced_calls,
        report.tool_calls,
        json.dumps(list(report.tool_names)),
        report.input_tokens,
        report.output_tokens,
        report.total_tokens,
        _nanos(report.cost_usd),
        report.duration_s,
        report.cache_hit,
        usd_to_nanos(report.saved_usd),
        route.model_name if route is not None else None,
        route.reason if route is not None else None,
        route.model_dump_json() if route is not None else None,
    )


def call_rows(report: RunReport, started_at: Any) -> list[tuple[Any, ...]]:
    """The ``ab_llm_calls`` rows of a report, in ``CALL_COLUMNS`` order."""
    return [
        (
            report.run_id,
            seq,
            started_at,
            call.agent,
            call.model,
            call.price_key,
            call.price_source,
            call.input_tokens,
            call.cached_input_tokens,
            call.cache_write_tokens,
            call.output_tokens,
            call.reasoning_tokens,
            _nanos(call.cost_usd),
            call.estimated,
            call.streamed,
            call.degraded,
            call.local,
            call.service_tier,
            call.priced_at_standard_rate,
        )
        for seq, call in enumerate(report.calls)
    ]


def _usd(nanos: int | None) -> Decimal | None:
    return None if nanos is None else nanos_to_usd(int(nanos))


def _route(row: Mapping[str, Any]) -> Route | None:
    if row.get("route_json") is not None:
        raw = row["route_json"]
        return Route.model_validate_json(raw if isinstance(raw, str) else json.dumps(raw))
    if row.get("route_model") is not None:
        return Route(model=row["route_model"], reason=row["route_reason"] or "")
    return None


def rebuild(
    run: Mapping[str, Any], calls: Iterable[Mapping[str, Any]], started_at: datetime
) -> RunReport:
    """A ``RunReport`` from its ledger rows (columns by name)."""
    tool_names = run["tool_names"]
    if isinstance(tool_names, str):
        tool_names = json.loads(tool_names)
    return RunReport(
        run_id=run["run_id"],
        user=run["user_id"],
        team=run["team_id"],
        agent=run["agent"],
        calls=tuple(
            LLMCallCost(
                agent=c["agent"],
                model=c["model"],
                price_key=c["price_key"],
                price_source=c["price_source"],
                input_tokens=c["input_tokens"],
                cached_input_tokens=c["cached_input_tokens"],
                cache_write_tokens=c["cache_write_tokens"],
                output_tokens=c["output_tokens"],
                reasoning_tokens=c["reasoning_tokens"],
                cost_usd=_usd(c["cost_nanos"]),
                estimated=bool(c["estimated"]),
                streamed=bool(c["streamed"]),
                degraded=c["degraded"],
                local=bool(c["is_local"]),
                service_tier=c.get("service_tier"),
                priced_at_standard_rate=bool(c.get("priced_at_standard_rate") or False),
            )
            for c in calls
        ),
        tool_calls=run["tool_calls"],
        tool_names=tuple(tool_names or ()),
        input_tokens=run["input_tokens"],
        output_tokens=run["output_tokens"],
        total_tokens=run["total_tokens"],
        cost_usd=_usd(run["cost_nanos"]),
        unpriced_calls=run["unpriced_calls"],
        duration_s=run["duration_s"],
        started_at=started_at,
        cache_hit=bool(run["cache_hit"]),
        saved_usd=_usd(run["saved_nanos"]) or Decimal(0),
        route=_route(run),
        outcome=run["outcome"],
        tripped_limit=run["tripped_limit"],
        error=run["error"],
    )


def spend_row(row: Sequence[Any]) -> SpendRow:
    """A ``SpendRow`` from a summary query's columns (key, runs, llm_calls, input, output,
    cost_nanos, unpriced, tripped, refused, cache_hits, saved_nanos)."""
    key, runs, llm_calls, inp, out, cost, unpriced, tripped, refused, hits, saved = row
    return SpendRow(
        key=key,
        runs=int(runs),
        llm_calls=int(llm_calls or 0),
        input_tokens=int(inp or 0),
        output_tokens=int(out or 0),
        cost_usd=nanos_to_usd(int(cost or 0)),
        unpriced_calls=int(unpriced or 0),
        tripped=int(tripped or 0),
        refused=int(refused or 0),
        cache_hits=int(hits or 0),
        saved_usd=nanos_to_usd(int(saved or 0)),
    )


def summary_query(
    by: str,
    since: datetime | None,
    until: datetime | None,
    *,
    runs: str,
    calls: str,
    day: str,
    mark: str,
    when: Any = None,
) -> tuple[str, list[Any]]:
    """The summary SQL and its parameters.

    Args:
        runs, calls: the (quoted) table names.
        day: the SQL expression of a run's UTC day (``YYYY-MM-DD``) from ``started_at``.
        mark: the driver's parameter marker (``?`` or ``%s``).
        when: converts a datetime to the driver's ``started_at`` value.
    """
    convert = when or (lambda moment: moment)
    where: list[str] = []
    params: list[Any] = []
    for op, moment in ((">=", since), ("<", until)):
        if moment is not None:
            where.append(f"r.started_at {op} {mark}")
            params.append(convert(moment))
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    if by == "model":
        sql = (
            "SELECT c.model, COUNT(DISTINCT c.run_id), COUNT(*), SUM(c.input_tokens), "
            "SUM(c.output_tokens), SUM(c.cost_nanos), "
            "SUM(CASE WHEN c.cost_nanos IS NULL THEN 1 ELSE 0 END), "
            "COUNT(DISTINCT CASE WHEN r.outcome = 'tripped' THEN r.run_id END), "
            "COUNT(DISTINCT CASE WHEN r.outcome = 'refused' THEN r.run_id END), 0, 0 "
            f"FROM {calls} c JOIN {runs} r ON r.run_id = c.run_id {clause} GROUP BY c.model"
        )
        return sql, params
    key = {"user": "r.user_id", "team": "r.team_id", "agent": "r.agent", "day": day}[by]
    sql = (
        f"SELECT {key}, COUNT(*), SUM(r.llm_calls), SUM(r.input_tokens), "
        "SUM(r.output_tokens), SUM(r.cost_nanos), SUM(r.unpriced_calls), "
        "SUM(CASE WHEN r.outcome = 'tripped' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN r.outcome = 'refused' THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN r.cache_hit THEN 1 ELSE 0 END), SUM(r.saved_nanos) "
        f"FROM {runs} r {clause} GROUP BY {key}"
    )
    return sql, params


def runs_query(
    since: datetime | None,
    until: datetime | None,
    filters: Mapping[str, str | None],
    limit: int | None,
    *,
    runs: str,
    mark: str,
    when: Any = None,
) -> tuple[str, list[Any]]:
    """The SQL selecting runs, newest first, and its parameters."""
    convert = when or (lambda moment: moment)
    where: list[str] = []
    params: list[Any] = []
    for op, moment in ((">=", since), ("<", until)):
        if moment is not None:
            where.append(f"started_at {op} {mark}")
            params.append(convert(moment))
    for column, value in filters.items():
        if value is not None:
            where.append(f"{column} = {mark}")
            params.append(value)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT * FROM {runs} {clause} ORDER BY started_at DESC, run_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql, params


def top_runs_query(
    since: datetime | None,
    until: datetime | None,
    outcome: str | None,
    limit: int,
    *,
    runs: str,
    mark: str,
    when: Any = None,
) -> tuple[str, list[Any]]:
    """The SQL selecting the costliest runs (unpriced ones last), and its parameters."""
    sql, params = runs_query(
        since, until, {"outcome": outcome}, None, runs=runs, mark=mark, when=when
    )
    sql = sql.replace(
        "ORDER BY started_at DESC, run_id",
        "ORDER BY COALESCE(cost_nanos, -1) DESC, started_at DESC, run_id",
    )
    return f"{sql} LIMIT {int(limit)}", params


OUTCOMES: tuple[str, ...] = ("completed", "tripped", "refused", "error")


def check_outcome(outcome: object) -> str | None:
    if outcome is not None and outcome not in OUTCOMES:
        raise ConfigurationError(
            f"outcome must be one of {', '.join(OUTCOMES)} or None; got {outcome!r}"
        )
    return outcome


def check_text(name: str, value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a str or None, got {value!r}")
    return value


def sort_rows(rows: Iterable[SpendRow]) -> list[SpendRow]:
    """Biggest spend first, then by key."""
    return sorted(rows, key=lambda r: (-r.cost_usd, -r.runs, r.key or ""))
