"""Budget planning: ``agentbudget plan``, ``Budgets.forecast``, ``spend --forecast`` and the
forecast alert. Every expectation is computed here from the price table's rates or from
the runs the test writes, never copied from the code's output."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest
from helpers.report_support import call, run

import agentbudget as ab
from agentbudget.cli import main
from agentbudget.planning import measured_plan, parse_mix, plan_budget
from agentbudget.usage import TokenUsage

UTC = timezone.utc


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def tokens_bought(budget: int, model: str, *, a: int = 3, b: int = 1, cached: str = "0") -> int:
    """The price table's arithmetic, by hand: tokens at an a:b input:output split."""
    price = ab.PriceTable.default().get(model)
    share = Fraction(Decimal(cached))
    cached_rate = Fraction(price.cached_input if price.cached_input is not None else price.input)
    input_rate = (1 - share) * Fraction(price.input) + share * cached_rate
    usd_per_token = (a * input_rate + b * Fraction(price.output)) / ((a + b) * 1_000_000)
    return math.floor(Fraction(budget) / usd_per_token)


# -- plan from the price table -------------------------------------------------------------


def test_plan_prints_the_tokens_each_model_buys_to_the_token(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["plan", "--budget", "50", "--period", "month", "--model", "gpt-4o-mini"]
    code, out, err = cli([*argv, "--model", "gpt-4o"], capsys)
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.strip()}
    for model in ("gpt-4o-mini", "gpt-4o"):
        expected = tokens_bought(50, model)
        assert rows[model][2] == f"{expected:,}"
        # and the cost of those tokens fits the budget, one more token does not
        price = ab.PriceTable.default().get(model)
        rate = (3 * price.input + price.output) / 4 / 1_000_000
        assert expected * rate <= 50 < (expected + 1) * rate


def test_plan_json_runs_days_users_and_cached_share(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(
        [
            "plan",
            "--budget",
            "200",
            "--model",
            "gpt-4o",
            "--cached-share",
            "0.5",
            "--io-ratio",
            "4:1",
            "--run-tokens",
            "5000",
            "--users",
            "100",
            "--format",
            "json",
        ],
        capsys,
    )
    assert code == 0
    (row,) = json.loads(out)["plan"]["rows"]  # one model: no mix
    tokens = tokens_bought(200, "gpt-4o", a=4, b=1, cached="0.5")
    assert row["tokens"] == tokens
    assert tokens > tokens_bought(200, "gpt-4o", a=4, b=1)  # the cache discount buys more
    assert row["runs"] == tokens // 5000
    assert row["tokens_per_day"] == tokens // 30
    assert row["runs_per_user_day"] == tokens // (5000 * 30 * 100)


def test_a_routed_mix_is_priced_at_the_share_weighted_rate() -> None:
    plan = plan_budget(
        "100", models=["gpt-4o", "gpt-4o-mini"], mix=parse_mix("simple:0.9,complex:0.1")
    )
    mix = plan.rows[-1]
    assert mix.name == "mix"
    assert dict(mix.shares) == {"gpt-4o-mini": Decimal("0.9"), "gpt-4o": Decimal("0.1")}
    table = ab.PriceTable.default()
    per_token = sum(
        share * (3 * Fraction(table.get(m).input) + Fraction(table.get(m).output)) / 4_000_000
        for m, share in ((("gpt-4o-mini"), Fraction(9, 10)), ("gpt-4o", Fraction(1, 10)))
    )
    assert mix.tokens == math.floor(100 / per_token)
    cheap, strong = plan.rows[1].tokens, plan.rows[0].tokens
    assert cheap is not None and strong is not None and strong < mix.tokens < cheap


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--budget", "0"], "budget must be more than 0"),
        (["--budget", "ten"], "budget must be a number"),
        (["--budget", "10", "--mix", "simple:0.5,complex:0.2"], "must add up to 1"),
        (["--budget", "10", "--io-ratio", "3"], "ratio must look like 3:1"),
        (["--budget", "10", "--cached-share", "1.5"], "cached_share must be a fraction"),
        (["--budget", "10", "--model", "no-such-model-x"], "no-such-model-x"),
        (["--budget", "10", "--ledger", "missing.db"], "no ledger at"),
    ],
)
def test_plan_misuse_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(["plan", *argv], capsys)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1


def test_plan_rejects_bad_values_at_construction() -> None:
    with pytest.raises(ab.ConfigurationError, match="period"):
        plan_budget(10, period="year")
    with pytest.raises(ab.ConfigurationError, match="run_tokens"):
        plan_budget(10, run_tokens=0)
    with pytest.raises(ab.ConfigurationError, match="budget"):
        plan_budget(10.0)  # type: ignore[arg-type]


# -- plan from a ledger --------------------------------------------------------------------

WEEK_START = datetime(2026, 11, 23, tzinfo=UTC)  # a Monday


def week_of_runs(path: Path) -> ab.SQLiteLedger:
    """Day d (0..6) has d + 1 users, each with two gpt-4o-mini runs of 10,000 input and
    2,000 output tokens; the support agent also calls gpt-4o once a day."""
    ledger = ab.SQLiteLedger(path)
    reports = []
    for d in range(7):
        at = WEEK_START + timedelta(days=d, hours=9)
        for u in range(d + 1):
            for n in range(2):
                reports.append(
                    run(
                        f"r{d}-{u}-{n}",
                        (call("gpt-4o-mini", 10_000, 2_000, agent="billing"),),
                        user=f"user-{u}",
                        agent="billing",
                        at=at + timedelta(minutes=u * 10 + n),
                    )
                )
        reports.append(
            run(f"s{d}", (call("gpt-4o", 1_000, 500),), user="user-0", at=at + timedelta(hours=1))
        )
    ledger.record_batch(reports)
    return ledger


def test_measured_plan_from_a_week_of_runs(tmp_path: Path) -> None:
    ledger = week_of_runs(tmp_path / "spend.db")
    until = WEEK_START + timedelta(days=7)
    plan = measured_plan(ledger, "100", since=WEEK_START, until=until, margin="0.25")
    # by hand: gpt-4o-mini runs cost 10,000 x 0.15 + 2,000 x 0.60 per 1M = $0.0027
    mini_run = Fraction(10_000 * 15 + 2_000 * 60, 100 * 1_000_000)
    gpt4o_run = Fraction(1_000 * 250 + 500 * 1_000, 100 * 1_000_000)  # $0.0075
    mini_runs = 2 * sum(d + 1 for d in range(7))  # 56
    total = mini_runs * mini_run + 7 * gpt4o_run
    assert plan.runs == mini_runs + 7
    assert plan.cost_usd == Decimal(total.numerator) / Decimal(total.denominator)
    rows = {(r.agent, r.model): r for r in plan.rows}
    assert rows["billing", "gpt-4o-mini"].runs == mini_runs
    assert rows["billing", "gpt-4o-mini"].runs_bought == math.floor(100 / mini_run)
    assert rows["support", "gpt-4o"].runs_bought == math.floor(100 / gpt4o_run)
    # user-days: 1 + 2 + ... + 7 = 28; the spend per user-day is all spend over them
    assert plan.user_days == 28 and plan.peak_daily_users == 7
    per_user_day = total / 28
    assert plan.supported_daily_users == math.floor(Fraction(100, 30) / per_user_day)
    # the allowance: 7 users spending it every day keep 25% of $100/30 per day
    expected = Fraction(100, 30) * Fraction(3, 4) / 7
    allowance = plan.suggested_daily_allowance_usd
    assert allowance is not None
    assert allowance == Decimal(math.floor(expected * 10_000)) / 10_000
    assert 7 * 30 * allowance <= Decimal("75") < 7 * 30 * (allowance + Decimal("0.0001"))
    # a planned number of users wins over the peak
    planned = measured_plan(ledger, "100", since=WEEK_START, until=until, users=50)
    assert planned.planned_users == 50
    assert (
        planned.suggested_daily_allowance_usd
        == Decimal(math.floor(Fraction(100, 30) * Fraction(4, 5) / 50 * 10_000)) / 10_000
    )
    ledger.close()


def test_plan_command_with_a_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    week_of_runs(tmp_path / "spend.db").close()
    argv = ["plan", "--budget", "100", "--ledger", str(tmp_path / "spend.db")]
    argv += ["--since", "2026-11-23", "--until", "2026-11-30"]
    code, out, err = cli([*argv, "--format", "json"], capsys)
    assert code == 0, err
    measured = json.loads(out)["measured"]
    assert "plan" not in json.loads(out)  # no --model: the ledger's plan only
    assert measured["user_days"] == 28 and measured["runs"] == 63
    code, out, _ = cli(argv, capsys)
    assert code == 0
    allowance = measured["suggested_daily_allowance_usd"]
    assert f'Allowance(per="user", window="day", usd="{allowance}")' in out
    assert f"daily users supported:    {measured['supported_daily_users']:,}" in out


# -- forecast ------------------------------------------------------------------------------


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


async def spend(budgets: ab.Budgets, user: str, tokens: int) -> None:
    reservation, result = await budgets.reserve_call(user, None, tokens, 0)
    assert result.ok
    await budgets.settle(reservation, TokenUsage(input_tokens=tokens), 0)


async def test_forecast_without_a_ledger_is_the_window_rate_so_far() -> None:
    clock = Clock(datetime(2026, 12, 2, 6, tzinfo=UTC))
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="day", tokens=10_000, soft=None)],
        clock=clock,
    )
    await spend(budgets, "u1", 3_000)
    (forecast,) = await budgets.forecast(user="u1")
    # 3,000 tokens in 6 hours: 500 an hour; 18 more hours make 12,000; 7,000 left last 14h
    assert forecast.rate_per_hour == 500
    assert forecast.projected == 12_000
    assert forecast.exhausts_at == datetime(2026, 12, 2, 20, tzinfo=UTC)
    assert forecast.hours_left == Decimal("14.00")
    await spend(budgets, "u2", 100)
    (slow,) = await budgets.forecast(user="u2")
    assert slow.exhausts_at is None and slow.projected == 400  # will not run out today
    await budgets.close()


async def test_forecast_with_a_ledger_uses_the_last_hours_and_the_weekday_profile(
    tmp_path: Path,
) -> None:
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)  # a Friday
    ledger = ab.SQLiteLedger(tmp_path / "spend.db")
    history = []
    for n in range(1, 29):  # 28 days: 1,000 tokens each weekday, nothing at weekends
        day = now - timedelta(days=n)
        if day.weekday() < 5:
            history.append(run(f"h{n}", (call("gpt-4o-mini", 800, 200),), user="u9", at=day))
    # the last 6 hours: u1 used 600 tokens (100 an hour); an older run is outside them
    history.append(
        run("now", (call("gpt-4o-mini", 500, 100),), user="u1", at=now - timedelta(hours=3))
    )
    history.append(
        run("old", (call("gpt-4o-mini", 9_000, 0),), user="u1", at=now - timedelta(hours=7))
    )
    ledger.record_batch(history)
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="month", tokens=5_000, soft=None)],
        clock=Clock(now),
    )
    await spend(budgets, "u1", 600)
    (forecast,) = await budgets.forecast(user="u1", ledger=ledger)
    assert forecast.rate_per_hour == 100
    assert "weekday profile" in forecast.basis
    # 4,400 left: Friday's 12 hours take 1,200, the weekend nothing, Monday 2,400, and
    # the last 800 run out 8 hours into Tuesday (without the profile: Sunday 08:00)
    assert forecast.exhausts_at == datetime(2026, 12, 8, 8, tzinfo=UTC)
    (flat,) = await budgets.forecast(user="u1", ledger=ledger, profile_days=6)
    assert flat.exhausts_at == datetime(2026, 12, 6, 8, tzinfo=UTC)
    await budgets.close()
    ledger.close()


def test_spend_forecast_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        ["spend", "--allowance", "user:day:tokens=1000", "--user", "u1", "--forecast"], capsys
    )
    assert code == 0, err
    header, row, basis = out.splitlines()
    assert "rate/hour" in header and "exhausted" in header
    assert row.split()[:6] == ["user/day", "u1", row.split()[2], "tokens", "1,000", "0"]
    assert row.endswith("not this window") and basis == "rate of user/day: window so far"
    code, _, err = cli(["spend", "--allowance", "user:day:tokens=1", "--ledger", "x.db"], capsys)
    assert code == 2 and "--forecast" in err


# -- the forecast alert --------------------------------------------------------------------


async def test_forecast_alert_fires_once_per_window() -> None:
    clock = Clock(datetime(2026, 12, 2, 6, tzinfo=UTC))
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="day", tokens=10_000, soft=None)],
        clock=clock,
    )
    fired: list[ab.Alert] = []
    alerts = ab.Alerts(
        run_cost_usd=None,
        daily_spike_factor=None,
        user_share=None,
        forecast_exhaustion_hours=24,
        on_alert=fired.append,
        clock=clock,
        log=False,
    )
    late = ab.Alerts(forecast_exhaustion_hours="10", clock=clock, log=False)
    off = ab.Alerts(clock=clock, log=False)
    await spend(budgets, "u1", 3_000)  # exhausts in 14 hours
    assert await late.check_forecast(budgets, user="u1") == []  # 14 > 10
    assert await off.check_forecast(budgets, user="u1") == []  # opt-in
    (alert,) = await alerts.check_forecast(budgets, user="u1")
    assert alert.kind == "forecast_exhaustion" and alert.subject == "u1"
    assert alert.window == "2026-12-02" and alert.observed == Decimal("14.00")
    clock.now += 3600
    await spend(budgets, "u1", 2_000)
    assert await alerts.check_forecast(budgets, user="u1") == []  # once per window
    assert len(fired) == 1
    clock.now += 86_400  # the next day's window
    await spend(budgets, "u1", 9_000)
    (again,) = await alerts.check_forecast(budgets, user="u1")
    assert again.window == "2026-12-03" and len(fired) == 2
    await budgets.close()


def test_forecast_alert_hours_are_validated() -> None:
    with pytest.raises(ab.ConfigurationError, match="forecast_exhaustion_hours"):
        ab.Alerts(forecast_exhaustion_hours=0)
    with pytest.raises(ab.ConfigurationError, match="forecast_exhaustion_hours"):
        ab.Alerts(forecast_exhaustion_hours="soon")


# -- the same on PostgreSQL ------------------------------------------------------------------


async def test_plan_and_forecast_read_a_postgres_ledger_alike(tmp_path: Path) -> None:
    import os
    import uuid

    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (extra postgres)")
    url = os.environ.get(
        "AGENTBUDGET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    )
    try:
        psycopg.connect(url, connect_timeout=2).close()
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server at {url}: {exc}")
    schema = f"ab_test_{uuid.uuid4().hex}"
    sqlite = week_of_runs(tmp_path / "spend.db")
    postgres = ab.PostgresLedger(url, schema=schema)
    try:
        await postgres.record_batch(sqlite.runs(limit=None))
        until = WEEK_START + timedelta(days=7)
        want = measured_plan(sqlite, "100", since=WEEK_START, until=until)
        got = await asyncio.to_thread(measured_plan, postgres, "100", since=WEEK_START, until=until)
        assert got == want and got.user_days == 28
        now = until + timedelta(hours=2)  # the last day's runs are 16 and 15 hours back
        budgets = ab.Budgets(
            allowances=[ab.Allowance(per="user", window="month", tokens=10**6, soft=None)],
            clock=Clock(now),
        )
        (on_sqlite,) = await budgets.forecast(user="user-0", ledger=sqlite, hours=24)
        (on_postgres,) = await budgets.forecast(user="user-0", ledger=postgres, hours=24)
        # user-0's runs of the last 24 hours: two of 12,000 tokens and one of 1,500
        assert on_sqlite.rate_per_hour == Decimal(25_500) / 24
        assert on_postgres == on_sqlite
        await budgets.close()
    finally:
        sqlite.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_a_daily_plan_has_no_per_day_columns_twice(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(["plan", "--budget", "5", "--period", "day", "--model", "gpt-4o"], capsys)
    assert code == 0
    header = next(line for line in out.splitlines() if "USD / 1M tokens" in line)
    assert header.count("tokens / day") == 1 and "planned as" not in out
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("gpt-4o"))
    assert row[2] == f"{tokens_bought(5, 'gpt-4o'):,}"


async def test_forecast_options_are_checked_before_reading() -> None:
    budgets = ab.Budgets(allowances=[ab.Allowance(per="user", window="day", tokens=10)])
    with pytest.raises(ab.ConfigurationError, match="SQLiteLedger or a PostgresLedger"):
        await budgets.forecast(user="u1", ledger="spend.db")
    with pytest.raises(ab.ConfigurationError, match="hours"):
        await budgets.forecast(ledger=None, hours=0)  # no per-user row: still checked
    await budgets.close()
