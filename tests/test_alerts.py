"""Alerts: each rule fires at its figure and not below, once per window per subject,
across processes sharing a store; delivery, the webhook, and store outages."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

import agentbudget as ab
from agentbudget.budgets import BudgetAlert

REDIS_URL = os.environ.get("AGENTBUDGET_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
POSTGRES_URL = os.environ.get(
    "AGENTBUDGET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
WORKER = Path(__file__).with_name("alerts_worker.py")
DAY = 86_400
# 2026-03-10 12:00 UTC: the middle of a day, so whole days can be added and removed.
NOON = datetime(2026, 3, 10, 12, tzinfo=timezone.utc).timestamp()
TODAY = "2026-03-10"


class Clock:
    def __init__(self, now: float = NOON) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(cost: str, user: str | None = "u1", run_id: str | None = None) -> ab.RunReport:
    return ab.RunReport(
        run_id=run_id or uuid.uuid4().hex,
        user=user,
        agent="support",
        started_at=datetime.now(timezone.utc),
        cost_usd=Decimal(cost),
    )


def _redis_reachable() -> bool:
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1, socket_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _delete_prefix(prefix: str) -> None:
    """Delete one test's keys from the shared database (never a flush)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"ab:{{{prefix}}}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def _require_postgres() -> None:
    try:
        import psycopg

        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except Exception as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_URL} is unreachable (CI=true: must run)")
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} is unreachable: {exc!r}")


def _delete_postgres_prefix(prefix: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_URL) as conn:
        for table in ("ab_alert_counters", "ab_alert_claims"):
            conn.execute(f"DELETE FROM {table} WHERE key LIKE %s", (prefix + "|%",))


def _require(kind: str) -> None:
    if kind == "redis":
        _require_redis()
    elif kind == "postgres":
        _require_postgres()


def _cleanup(kind: str, prefix: str) -> None:
    if kind == "redis":
        _delete_prefix(prefix)
    elif kind == "postgres":
        _delete_postgres_prefix(prefix)


def _require_redis() -> None:
    if not _redis_reachable():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis at {REDIS_URL} is unreachable (CI=true: must run)")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable")


STORES = [
    pytest.param("memory", id="memory"),
    pytest.param("sqlite", id="sqlite"),
    pytest.param("redis", id="redis", marks=pytest.mark.redis),
    pytest.param("postgres", id="postgres"),
]


class StoreEnv:
    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.url = {
            "memory": "memory://",
            "sqlite": f"sqlite:///{tmp_path}/alerts.db",
            "redis": REDIS_URL,
            "postgres": POSTGRES_URL,
        }[kind]
        self.prefix = f"test-{uuid.uuid4().hex}"
        self.made: list[ab.Alerts] = []

    def make(self, **options: Any) -> ab.Alerts:
        options.setdefault("prefix", self.prefix)
        alerts = ab.Alerts(store=self.url, **options)
        self.made.append(alerts)
        return alerts


@pytest.fixture(params=STORES)
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreEnv]:
    _require(request.param)
    store_env = StoreEnv(request.param, tmp_path)
    try:
        yield store_env
    finally:
        for alerts in store_env.made:
            alerts.close()
        _cleanup(request.param, store_env.prefix)


def seed_history(alerts: ab.Alerts, clock: Clock, per_day: str, days: int = 7) -> None:
    """``per_day`` of spend on each of the ``days`` days before today."""
    today = clock.now
    for n in range(1, days + 1):
        clock.now = today - n * DAY
        alerts.observe(run(per_day, user=None))
    clock.now = today


# -- construction ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "fix"),
    [
        ({"run_cost_usd": 1.5}, "floats are not exact"),
        ({"run_cost_usd": "-1"}, "must not be negative"),
        ({"daily_spike_factor": 1}, "greater than 1"),
        ({"daily_spike_factor": "0.5"}, "greater than 1"),
        ({"daily_spike_factor": "lots"}, "must be a number"),
        ({"daily_spike_factor": True}, "must be a number"),
        ({"user_share": 0}, "0 < share <= 1"),
        ({"user_share": 1.5}, "0 < share <= 1"),
        ({"user_share": float("nan")}, "finite"),
        ({"budget_thresholds": "yes"}, "True or False"),
        ({"on_alert": 5}, "callable"),
        ({"on_alert": [print, "not callable"]}, "must be callable"),
        ({"store": "ftp://host"}, "known schemes: memory, sqlite, redis"),
        ({"store": "alerts.db"}, "must be a URL"),
        ({"store": "sqlite:///:memory:"}, "use 'memory://'"),
        ({"store": "sqlite:///no/such/directory/a.db"}, "cannot be used"),
        ({"store": "redis://127.0.0.1:6379/db"}, "redis"),
        ({"global_budget_usd": "0"}, "more than 0"),
        ({"budgets": "100"}, "agentbudget.Budgets"),
        ({"user_share_min_total_usd": 1.0}, "floats are not exact"),
        ({"tz": "Mars/Olympus"}, "unknown time zone"),
        ({"clock": 5}, "clock must be a callable"),
        ({"log": "no"}, "True or False"),
        ({"prefix": "a{b}"}, "braces"),
        ({"timeout_s": 0}, "positive number"),
    ],
)
def test_bad_configuration_is_refused_at_construction(options: dict[str, Any], fix: str) -> None:
    with pytest.raises(ab.ConfigurationError, match=fix.replace("(", r"\(")):
        ab.Alerts(**options)


def test_defaults_match_the_contract() -> None:
    alerts = ab.Alerts()
    assert alerts.run_cost_usd == Decimal("1.00")
    assert alerts.daily_spike_factor == 2
    assert alerts.user_share == Decimal("0.1")
    assert alerts.budget_thresholds is True
    assert alerts.store_url == "memory://"


@pytest.mark.parametrize(
    ("args", "fix"),
    [
        (("ftp://example.com",), "http:// or https://"),
        (("http://",), "http:// or https://"),
    ],
)
def test_bad_webhooks_are_refused(args: tuple[str], fix: str) -> None:
    with pytest.raises(ab.ConfigurationError, match=fix):
        ab.Alerts.webhook(*args)
    with pytest.raises(ab.ConfigurationError, match="str to str"):
        ab.Alerts.webhook("http://x", headers={"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ab.ConfigurationError, match="positive number"):
        ab.Alerts.webhook("http://x", timeout=0)


# -- run cost -----------------------------------------------------------------------------


def test_run_cost_fires_above_the_figure_not_at_it(env: StoreEnv) -> None:
    got: list[ab.Alert] = []
    alerts = env.make(clock=Clock(), on_alert=got.append, daily_spike_factor=None)
    assert alerts.observe(run("1.00", run_id="at")) == []
    assert alerts.observe(run("0.999999999", run_id="below")) == []
    fired = alerts.observe(run("1.000000001", run_id="over"))
    assert [(a.kind, a.subject, a.window, a.observed, a.threshold, a.run_id) for a in fired] == [
        ("run_cost", "over", TODAY, Decimal("1.000000001"), Decimal("1.00"), "over")
    ]
    assert got == fired
    assert str(fired[0]) == (
        "agentbudget alert [run_cost] run over (user u1, agent support) cost $1.000000001, "
        "over the $1.00 per-run threshold"
    )


def test_a_run_observed_twice_alerts_once_even_from_another_process_view(env: StoreEnv) -> None:
    first, second = env.make(clock=Clock()), env.make(clock=Clock())
    if env.kind == "memory":
        second = first  # memory:// is one process's store
    assert len(first.observe(run("5", run_id="r-1"))) == 1
    assert second.observe(run("5", run_id="r-1")) == []


# -- daily spike --------------------------------------------------------------------------


def test_daily_spike_fires_once_a_day_above_factor_times_the_7_day_average(
    env: StoreEnv,
) -> None:
    clock = Clock()
    got: list[ab.Alert] = []
    alerts = env.make(clock=clock, on_alert=got.append, run_cost_usd=None, user_share=None)
    seed_history(alerts, clock, "1.00")
    assert got == []
    assert alerts.observe(run("2.00")) == []  # exactly 2x the $1.00 average: not over
    assert alerts.spent() == Decimal(2)
    fired = alerts.observe(run("0.000000001"))
    assert [(a.kind, a.subject, a.window) for a in fired] == [("daily_spike", "global", TODAY)]
    assert fired[0].observed == Decimal("2.000000001")
    assert fired[0].threshold == Decimal("2.000000000")
    assert "over 2x the 7-day daily average of $1.000000000" in fired[0].message
    assert alerts.observe(run("10.00")) == []  # the same day: no second alert
    assert got == fired

    # the next day: the history now holds 6 x $1 and $12.000000001; average $2.571428571...
    clock.now += DAY
    assert alerts.observe(run("5.142857143")) == []  # 2 x 18.000000001 / 7 = 5.1428571431...
    again = alerts.observe(run("0.000000001"))
    assert [(a.kind, a.window) for a in again] == [("daily_spike", "2026-03-11")]


def test_no_spike_alert_without_history_and_empty_days_count_as_zero(env: StoreEnv) -> None:
    clock = Clock()
    alerts = env.make(clock=clock, run_cost_usd=None, user_share=None)
    clock.now = NOON - 8 * DAY  # outside the 7 previous days
    alerts.observe(run("100", user=None))
    clock.now = NOON
    assert alerts.observe(run("50")) == []  # no history at all: no alert however much

    clock.now = NOON + DAY  # now one day of history: $50 over 7 days = $7.142857142.../day
    assert alerts.observe(run("14.285714285")) == []
    fired = alerts.observe(run("0.000000001"))
    assert [a.kind for a in fired] == ["daily_spike"]


def test_the_spike_day_follows_the_configured_time_zone() -> None:
    clock = Clock(datetime(2026, 3, 10, 3, tzinfo=timezone.utc).timestamp())
    alerts = ab.Alerts(clock=clock, tz="America/New_York", run_cost_usd="0.5")
    (alert,) = alerts.observe(run("1", run_id="late"))
    assert alert.window == "2026-03-09"  # 22:00 the evening before, in New York


# -- user share ---------------------------------------------------------------------------


def test_user_share_of_an_explicit_daily_budget(env: StoreEnv) -> None:
    clock = Clock()
    alerts = env.make(
        clock=clock, global_budget_usd="10", run_cost_usd=None, daily_spike_factor=None
    )
    assert alerts.observe(run("0.60", user="ann")) == []
    assert alerts.observe(run("0.40", user="ann")) == []  # $1.00 = 10% of $10: not over
    fired = alerts.observe(run("0.01", user="ann"))
    assert [(a.kind, a.subject, a.window, a.observed, a.threshold) for a in fired] == [
        ("user_share", "ann", TODAY, Decimal("1.01"), Decimal("1.000000000"))
    ]
    assert "over 10% of the global daily budget of $10" in fired[0].message
    assert alerts.observe(run("3", user="ann")) == []  # once per user per day
    assert [a.subject for a in alerts.observe(run("1.5", user="bob"))] == ["bob"]
    assert alerts.spent(user="ann") == Decimal("4.01")
    clock.now += DAY
    assert alerts.observe(run("1", user="ann")) == []
    assert [a.window for a in alerts.observe(run("1", user="ann"))] == ["2026-03-11"]


def test_user_share_of_a_budgets_allowance() -> None:
    clock = Clock()
    daily = ab.Budgets(allowances=[ab.Allowance(per="global", window="day", usd="20")])
    alerts = ab.Alerts(clock=clock, budgets=daily, run_cost_usd=None, daily_spike_factor=None)
    assert alerts.observe(run("2.00", user="ann")) == []
    assert [a.threshold for a in alerts.observe(run("0.01", user="ann"))] == [Decimal(2)]

    monthly = ab.Budgets(allowances=[ab.Allowance(per="global", window="month", usd="100")])
    per_month = ab.Alerts(clock=clock, run_cost_usd=None, daily_spike_factor=None).for_budgets(
        monthly
    )
    assert per_month.observe(run("6", user="cy")) == []
    clock.now += DAY  # a month budget counts the user's spend over the month
    assert per_month.observe(run("4", user="cy")) == []
    fired = per_month.observe(run("0.01", user="cy"))
    assert [(a.subject, a.window, a.observed) for a in fired] == [
        ("cy", "2026-03", Decimal("10.01"))
    ]
    assert "global monthly budget of $100" in fired[0].message


def test_user_share_of_todays_total_needs_a_minimum_and_another_spender(
    env: StoreEnv,
) -> None:
    alerts = env.make(clock=Clock(), run_cost_usd=None, daily_spike_factor=None)
    assert alerts.observe(run("5", user="ann")) == []  # alone: 100% of the day means nothing
    assert alerts.observe(run("0.50", user="bob")) == []  # bob: 9.1% of $5.50
    fired = alerts.observe(run("0.01", user="ann"))  # ann: $5.01 of $5.51
    assert [(a.subject, a.observed, a.threshold) for a in fired] == [
        ("ann", Decimal("5.01"), Decimal("0.551000000"))
    ]
    assert "of today's total of $5.51" in fired[0].message

    small = ab.Alerts(clock=Clock(), run_cost_usd=None, daily_spike_factor=None)
    small.observe(run("0.50", user="ann"))
    assert small.observe(run("0.40", user="bob")) == []  # total $0.90 < the $1.00 minimum
    assert [a.subject for a in small.observe(run("0.10", user="bob"))] == ["bob"]  # $1.00


# -- budget thresholds --------------------------------------------------------------------


def budget_alert(window: str = TODAY, unit: str = "nanousd") -> BudgetAlert:
    allowance = ab.Allowance(per="user", window="day", usd="5", soft=0.8)
    return BudgetAlert(
        allowance=allowance,
        subject="ann",
        window=window,
        unit=unit,
        spent=4_100_000_000,
        limit=5_000_000_000,
    )


def test_a_budget_alert_becomes_one_alert_per_counter_window(env: StoreEnv) -> None:
    got: list[ab.Alert] = []
    first, second = env.make(on_alert=got.append), env.make(on_alert=got.append)
    if env.kind == "memory":
        second = first
    source = budget_alert()
    (alert,) = first.budget_alert(source)
    assert (alert.kind, alert.subject, alert.window, alert.unit) == (
        "budget_threshold",
        "ann",
        TODAY,
        "usd",
    )
    assert (alert.observed, alert.threshold) == (Decimal("4.1"), Decimal("4.000000000"))
    assert alert.budget_alert is source
    assert alert.message == str(source)
    assert second.budget_alert(budget_alert()) == []  # the same counter window: claimed
    assert [a.window for a in second.budget_alert(budget_alert("2026-03-11"))] == ["2026-03-11"]
    tokens = first.budget_alert(budget_alert(unit="tokens"))  # another counter
    assert [(a.unit, a.observed) for a in tokens] == [("tokens", Decimal(4_100_000_000))]
    assert len(got) == 3


async def test_budgets_soft_thresholds_reach_alerts_through_on_alert() -> None:
    from agents import Agent

    from agentbudget.testing import reply, scripted_model

    alerts = ab.Alerts(run_cost_usd=None, daily_spike_factor=None, user_share=None)
    budgets = ab.Budgets(
        allowances=[ab.Allowance(per="user", window="day", tokens=1000, soft=0.5)],
        on_alert=alerts.budget_alert,
    )
    got: list[ab.Alert] = []
    alerts.callbacks = (got.append,)
    agent = Agent(name="a", model=scripted_model("gpt-4o", [reply("ok", output_tokens=600)]))
    await ab.Guard(budgets=budgets).run(agent, "hi", user="ann")
    await budgets.drain()
    assert [(a.kind, a.subject) for a in got] == [("budget_threshold", "ann")]


# -- rules off, delivery ----------------------------------------------------------------------


def test_rules_turned_off_never_fire() -> None:
    called: list[ab.Alert] = []
    clock = Clock()
    alerts = ab.Alerts(
        run_cost_usd=None,
        daily_spike_factor=None,
        user_share=None,
        budget_thresholds=False,
        global_budget_usd="1",
        on_alert=called.append,
        clock=clock,
    )
    seed_history(alerts, clock, "0.01")
    assert alerts.observe(run("1000", user="ann")) == []
    assert alerts.observe(run("1000", user="bob")) == []
    assert alerts.budget_alert(budget_alert()) == []
    assert called == []
    assert alerts.spent() == Decimal(2000)  # the spend is still counted


def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    got: list[ab.Alert] = []

    def broken(alert: ab.Alert) -> None:
        raise RuntimeError("pager down")

    alerts = ab.Alerts(on_alert=[broken, got.append], clock=Clock())
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        fired = alerts.observe(run("3", run_id="big"))
    assert got == fired and len(fired) == 1
    records = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("WARNING", str(fired[0])) in records
    failure = [r for r in caplog.records if "raised" in r.getMessage()]
    assert len(failure) == 1 and failure[0].exc_info is not None
    assert "pager down" in str(failure[0].exc_info[1])


def test_log_false_delivers_without_logging(caplog: pytest.LogCaptureFixture) -> None:
    got: list[ab.Alert] = []
    alerts = ab.Alerts(on_alert=got.append, log=False, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        alerts.observe(run("3"))
    assert len(got) == 1
    assert caplog.records == []


class _Hook(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []
    status: ClassVar[int] = 204

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def hook_server() -> Iterator[tuple[str, type[_Hook]]]:
    handler = type("Hook", (_Hook,), {"received": [], "status": 204})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_the_webhook_posts_the_alert_as_json(hook_server: tuple[str, type[_Hook]]) -> None:
    url, handler = hook_server
    hook = ab.Alerts.webhook(url, headers={"authorization": "Bearer t"}, timeout=5)
    alerts = ab.Alerts(on_alert=hook, clock=Clock(), log=False)
    (alert,) = alerts.observe(run("2.50", user="ann", run_id="r-9"))
    ((headers, body),) = handler.received
    assert headers["content-type"] == "application/json"
    assert headers["authorization"] == "Bearer t"
    assert json.loads(body) == {
        "kind": "run_cost",
        "subject": "r-9",
        "window": TODAY,
        "observed": "2.50",
        "threshold": "1.00",
        "unit": "usd",
        "message": "run r-9 (user ann, agent support) cost $2.50, over the $1.00 per-run threshold",
        "run_id": "r-9",
    }
    assert json.loads(body) == alert.to_dict()


def test_a_webhook_error_status_is_logged_not_raised(
    hook_server: tuple[str, type[_Hook]], caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = hook_server
    handler.status = 500
    alerts = ab.Alerts(on_alert=ab.Alerts.webhook(url), clock=Clock(), log=False)
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        fired = alerts.observe(run("2"))
    assert len(fired) == 1 and len(handler.received) == 1
    assert any("500" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


# -- store outages ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("scheme", ["redis", "postgresql"])
def test_an_unreachable_store_never_raises_out_of_observe(
    scheme: str, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = ab.Alerts(store=f"{scheme}://127.0.0.1:{_free_port()}/0", timeout_s=0.5)
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        assert alerts.observe(run("50")) == []
        assert alerts.budget_alert(budget_alert()) == []
    assert "could not count run" in caplog.text
    assert "unavailable" in caplog.text
    with pytest.raises(ab.StoreUnavailable):
        alerts.spent()
    alerts.close()


def test_spend_seen_while_the_store_is_locked_is_counted_later(tmp_path: Path) -> None:
    path = tmp_path / "alerts.db"
    alerts = ab.Alerts(
        store=f"sqlite:///{path}",
        clock=Clock(),
        global_budget_usd="10",
        run_cost_usd=None,
        daily_spike_factor=None,
        timeout_s=0.05,
    )
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    try:
        assert alerts.observe(run("0.90", user="ann")) == []
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert alerts.spent(user="ann") == Decimal(0)  # not counted yet, kept in memory
    fired = alerts.observe(run("0.20", user="ann"))
    assert [(a.subject, a.observed) for a in fired] == [("ann", Decimal("1.10"))]
    assert alerts.spent() == Decimal("1.10")
    alerts.close()


# -- the acceptance: one spike alert across 4 processes -------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("redis", marks=pytest.mark.redis), "postgres"]
)
def test_a_3x_spike_fires_exactly_one_alert_across_4_processes(kind: str, tmp_path: Path) -> None:
    _require(kind)
    store = StoreEnv(kind, tmp_path)
    clock = Clock()
    seeder = store.make(clock=clock, run_cost_usd=None, user_share=None)
    try:
        seed_history(seeder, clock, "1.00")  # seven days at $1/day
        go = tmp_path / "go"
        # 4 processes x 30 runs x $0.025 = $3.00 today, three times the average
        workers = [
            subprocess.Popen(
                [
                    sys.executable,
                    str(WORKER),
                    store.url,
                    store.prefix,
                    str(NOON),
                    "30",
                    "0.025",
                    str(go),
                ],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        assert workers[0].stdout is not None
        for worker in workers:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
        go.touch()
        outputs = [worker.communicate(timeout=120)[0] for worker in workers]
        assert [worker.returncode for worker in workers] == [0, 0, 0, 0]
        fired = [json.loads(line) for out in outputs for line in out.splitlines() if line]
        assert len(fired) == 1
        (alert,) = fired
        assert (alert["kind"], alert["subject"], alert["window"]) == (
            "daily_spike",
            "global",
            TODAY,
        )
        # the total the claiming process saw: over 2x, at most everything ($3)
        assert Decimal(2) < Decimal(alert["observed"]) <= Decimal(3)
        assert seeder.spent() == Decimal(3)  # every run counted exactly once
        assert seeder.observe(run("1")) == []  # and the day's alert is spent
    finally:
        seeder.close()
        _cleanup(kind, store.prefix)


def test_observed_totals_come_from_the_store_not_the_process(tmp_path: Path) -> None:
    # two Alerts objects on one SQLite file stand for two processes: each sees both spends
    url = f"sqlite:///{tmp_path}/a.db"
    a = ab.Alerts(store=url, clock=Clock(), global_budget_usd="10", run_cost_usd=None)
    b = ab.Alerts(store=url, clock=Clock(), global_budget_usd="10", run_cost_usd=None)
    assert a.observe(run("0.60", user="ann")) == []
    fired = b.observe(run("0.60", user="ann"))
    assert [(x.subject, x.observed) for x in fired] == [("ann", Decimal("1.20"))]
    assert a.observe(run("0.60", user="ann")) == []  # already claimed by "the other process"
    assert a.spent(day=date(2026, 3, 10)) == Decimal("1.80")
    assert a.spent(day=date(2026, 3, 10) - timedelta(days=1)) == Decimal(0)
    a.close()
    b.close()


def test_threads_observing_at_once_count_every_run_and_alert_once(env: StoreEnv) -> None:
    clock = Clock()
    got: list[ab.Alert] = []
    alerts = env.make(clock=clock, on_alert=got.append, run_cost_usd=None, user_share=None)
    seed_history(alerts, clock, "1.00")
    barrier = threading.Barrier(4)

    def observe_many() -> None:
        barrier.wait()
        for _ in range(25):
            alerts.observe(run("0.03", user=None))

    threads = [threading.Thread(target=observe_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert alerts.spent() == Decimal(3)  # 100 x $0.03, each counted once
    assert [a.kind for a in got] == ["daily_spike"]


def test_an_explicit_budget_wins_and_budgets_without_a_global_usd_allowance_fall_back() -> None:
    tokens_only = ab.Budgets(allowances=[ab.Allowance(per="global", window="day", tokens=10)])
    daily = ab.Budgets(allowances=[ab.Allowance(per="global", window="day", usd="1000")])
    quiet = {"run_cost_usd": None, "daily_spike_factor": None, "log": False}
    explicit = ab.Alerts(clock=Clock(), global_budget_usd="10", **quiet).for_budgets(daily)
    assert [a.threshold for a in explicit.observe(run("1.01"))] == [Decimal(1)]
    fallback = ab.Alerts(clock=Clock(), budgets=tokens_only, **quiet)
    assert fallback.observe(run("5", user="ann")) == []  # share of today's total: alone
    fallback.observe(run("1", user="bob"))
    assert [a.subject for a in fallback.observe(run("0.01", user="ann"))] == ["ann"]


@pytest.mark.redis
def test_redis_day_counters_expire_after_9_days() -> None:
    _require_redis()
    import redis

    store = StoreEnv("redis", Path("."))
    alerts = store.make(clock=Clock())
    try:
        alerts.observe(run("0.10", user="ann"))
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"ab:{{{store.prefix}}}:*"))
        assert len(keys) == 2  # today's global counter and ann's
        ttls = [client.ttl(key) for key in keys]
        client.close()
        assert all(9 * DAY - 60 <= ttl <= 9 * DAY for ttl in ttls)
    finally:
        alerts.close()
        _delete_prefix(store.prefix)


def test_a_claim_that_fails_keeps_the_spend_and_fires_with_the_next_report(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    alerts = ab.Alerts(clock=Clock(), global_budget_usd="10", daily_spike_factor=None)
    store = alerts._store
    real_claim = store.claim

    def down(key: str, ttl_s: int) -> bool:
        raise ab.StoreUnavailable("down for a moment")

    monkeypatch.setattr(store, "claim", down)
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        assert alerts.observe(run("2", user="ann")) == []  # run_cost and user_share both due
    assert caplog.text.count("could not claim") == 2
    assert alerts.spent(user="ann") == Decimal(2)  # the spend itself was counted
    monkeypatch.setattr(store, "claim", real_claim)
    fired = alerts.observe(run("0.01", user="ann"))
    assert [(a.kind, a.observed) for a in fired] == [("user_share", Decimal("2.01"))]
