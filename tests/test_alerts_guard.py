"""Alerts given to a Guard: evaluated on every report, off the call path."""

from __future__ import annotations

import threading
from typing import Any

from agents import Agent

import agentbudget as ab
from agentbudget.testing import reply, scripted_model


def agent(input_tokens: int = 1_000, output_tokens: int = 100) -> Agent[Any]:
    return Agent(
        name="a",
        model=scripted_model(
            "gpt-4o", [reply("ok", input_tokens=input_tokens, output_tokens=output_tokens)]
        ),
    )


async def test_a_guard_with_alerts_fires_run_cost_off_the_call_path() -> None:
    fired: list[tuple[ab.Alert, str]] = []
    alerts = ab.Alerts(
        run_cost_usd="0.003",
        daily_spike_factor=None,
        user_share=None,
        on_alert=lambda alert: fired.append((alert, threading.current_thread().name)),
        log=False,
    )
    guard = ab.Guard(alerts=alerts)
    cheap = ab.report_of(await guard.run(agent(100, 10), "q", user="u1"))  # $0.00035
    dear = ab.report_of(await guard.run(agent(1_000, 100), "q", user="u1"))  # $0.0035
    assert await guard.aflush(timeout=10)
    assert [(a.kind, a.subject) for a, _ in fired] == [("run_cost", dear.run_id)]
    assert cheap.cost_usd is not None and cheap.cost_usd < dear.cost_usd  # type: ignore[operator]
    assert fired[0][1] != threading.current_thread().name  # not on the event loop's thread
    assert await guard.aclose()


async def test_a_budgets_soft_threshold_becomes_an_alert() -> None:
    fired: list[ab.Alert] = []
    budgets = ab.Budgets(
        store="memory://",
        allowances=[ab.Allowance(per="user", window="day", tokens=2_000, soft=0.5)],
    )
    alerts = ab.Alerts(
        run_cost_usd=None, daily_spike_factor=None, user_share=None, on_alert=fired.append
    )
    guard = ab.Guard(budgets=budgets, alerts=alerts)
    await guard.run(agent(1_000, 100), "q", user="u1")  # 1,100 of 2,000 tokens: past 50%
    await budgets.drain()
    assert await guard.aflush(timeout=10)
    assert [(a.kind, a.subject) for a in fired] == [("budget_threshold", "u1")]
    await budgets.close()


def test_configure_takes_alerts_and_refuses_what_is_not_alerts() -> None:
    import pytest

    alerts = ab.Alerts(log=False)
    assert ab.configure(alerts=alerts).alerts is alerts
    with pytest.raises(ab.ConfigurationError, match=r"alerts must be an agentbudget\.Alerts"):
        ab.Guard(alerts=print)  # type: ignore[arg-type]


async def test_a_guard_checks_each_runs_user_for_a_forecast_exhaustion() -> None:
    from datetime import datetime, timezone

    at = datetime(2026, 12, 2, 6, tzinfo=timezone.utc).timestamp()
    clock = lambda: at  # noqa: E731 - six hours into the day
    fired: list[ab.Alert] = []
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="day", tokens=10_000)], clock=clock
    )
    alerts = ab.Alerts(
        run_cost_usd=None,
        daily_spike_factor=None,
        user_share=None,
        budget_thresholds=False,
        forecast_exhaustion_hours=24,
        on_alert=fired.append,
        clock=clock,
        log=False,
    )
    guard = ab.Guard(budgets=budgets, alerts=alerts)
    # 1,100 tokens in the day's first 6 hours: 10,000 run out 48 hours in, not today
    await guard.run(agent(1_000, 100), "q", user="u1")
    await budgets.drain()
    assert await guard.aflush(timeout=10)  # the check runs on the dispatcher's worker
    assert fired == []
    await guard.run(agent(2_000, 100), "q", user="u1")  # 3,200 by 06:00: out at 18:45
    await budgets.drain()
    assert await guard.aflush(timeout=10)
    assert [(a.kind, a.subject) for a in fired] == [("forecast_exhaustion", "u1")]
    await guard.run(agent(100, 10), "q", user="u1")
    await budgets.drain()
    assert await guard.aflush(timeout=10)
    assert len(fired) == 1  # once per window
    await budgets.close()
