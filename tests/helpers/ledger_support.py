"""Reports for the ledger tests: realistic ones, with every field set somewhere."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

from agentbudget.report import LLMCallCost, Route, RunReport

T0 = datetime(2026, 11, 30, 9, 15, 30, 123456, tzinfo=timezone.utc)


def call(
    model: str = "gpt-4o",
    *,
    agent: str = "support",
    input_tokens: int = 1200,
    output_tokens: int = 300,
    cost: str | None = "0.006000000",
    **fields: object,
) -> LLMCallCost:
    return LLMCallCost(
        agent=agent,
        model=model,
        price_key=model if cost is not None else None,
        price_source="bundled 2026.11.29" if cost is not None else None,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_usd=Decimal(cost) if cost is not None else None,
        **fields,  # type: ignore[arg-type]
    )


def run(
    run_id: str,
    calls: tuple[LLMCallCost, ...] = (),
    *,
    user: str | None = "u-1",
    team: str | None = "t-1",
    agent: str = "support",
    at: datetime = T0,
    outcome: str = "completed",
    **fields: object,
) -> RunReport:
    priced = [c.cost_usd for c in calls if c.cost_usd is not None]
    inp = sum(c.input_tokens for c in calls)
    out = sum(c.output_tokens for c in calls)
    values: dict[str, object] = {
        "run_id": run_id,
        "user": user,
        "team": team,
        "agent": agent,
        "calls": calls,
        "input_tokens": inp,
        "output_tokens": out,
        "total_tokens": inp + out,
        "cost_usd": sum(priced, Decimal(0)) if priced or not calls else None,
        "unpriced_calls": sum(c.cost_usd is None for c in calls),
        "started_at": at,
        "outcome": outcome,
        "duration_s": 1.25,
    }
    values.update(fields)
    return RunReport(**values)  # type: ignore[arg-type]


def realistic() -> RunReport:
    """Three calls across two agents and models (one unpriced, one estimated and degraded),
    tools, a route, a tripped limit."""
    return run(
        "run-realistic",
        (
            call(
                "gpt-4o-2024-08-06",
                input_tokens=2048,
                output_tokens=512,
                cost="0.008796001",
                cached_input_tokens=1024,
                reasoning_tokens=0,
                streamed=True,
                service_tier="priority",
                priced_at_standard_rate=True,
            ),
            call(
                "my-finetune",
                agent="writer",
                input_tokens=700,
                output_tokens=90,
                cost=None,
                cache_write_tokens=64,
            ),
            call(
                "gpt-4o-mini",
                agent="writer",
                input_tokens=300,
                output_tokens=4000,
                cost="0.002445001",
                reasoning_tokens=3000,
                estimated=True,
                degraded="downgrade",
            ),
        ),
        user="u-42",
        team="t-7",
        agent="triage",
        tool_calls=4,
        tool_names=("search", "search", "lookup", "search"),
        route=Route(model="gpt-4o", reason="complex: 3 questions"),
        outcome="tripped",
        tripped_limit="max_tool_calls",
        error="ToolCallLimitExceeded: 4 tool calls > 3",
        duration_s=12.75,
    )


def spread(prefix: str = "r") -> list[RunReport]:
    """Six runs across two models, three users and two days (exact figures in the tests)."""
    day1, day2 = T0, T0 + timedelta(days=1)
    return [
        run(f"{prefix}1", (call("gpt-4o", cost="0.010000000"),), user="alice", at=day1),
        run(
            f"{prefix}2",
            (
                call("gpt-4o", cost="0.020000000", input_tokens=10, output_tokens=20),
                call("gpt-4o-mini", cost="0.000300001", input_tokens=5, output_tokens=7),
            ),
            user="alice",
            team="t-2",
            at=day1 + timedelta(hours=1),
            outcome="tripped",
            tripped_limit="max_cost_usd",
        ),
        run(f"{prefix}3", (call("gpt-4o-mini", cost="0.000000001"),), user="bob", at=day1),
        run(
            f"{prefix}4",
            (call("gpt-4o-mini", cost=None, input_tokens=1, output_tokens=2),),
            user="bob",
            at=day2,
        ),
        run(
            f"{prefix}5",
            (),
            user="carol",
            at=day2,
            cache_hit=True,
            saved_usd=Decimal("0.010000000"),
        ),
        run(f"{prefix}6", (), user="carol", at=day2, outcome="refused", agent="billing"),
    ]
