"""SQLiteLedger: exact round trips, idempotent retries, several processes, migrations."""

from __future__ import annotations

import asyncio
import os
import runpy
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from agents import Agent
from helpers.ledger_support import T0, call, realistic, run, spread

import agentbudget as ab
from agentbudget.errors import ConfigurationError, StoreUnavailable
from agentbudget.sinks.ledger import SCHEMA_VERSION, SpendRow, SQLiteLedger
from agentbudget.sinks.ledger import sqlite as ledger_sqlite
from agentbudget.sinks.ledger._common import CALL_COLUMNS, RUN_COLUMNS
from agentbudget.testing import reply, scripted_model

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[SQLiteLedger]:
    ledger = SQLiteLedger(tmp_path / "spend.db")
    yield ledger
    ledger.close()


def test_a_realistic_report_comes_back_exactly(ledger: SQLiteLedger) -> None:
    report = realistic()
    ledger.record(report)
    (back,) = ledger.runs()
    assert back == report
    assert back.calls[0].cost_usd == Decimal("0.008796001")
    assert back.calls[1].cost_usd is None and back.calls[1].price_key is None
    assert back.cost_usd == Decimal("0.011241002")
    assert [c.service_tier for c in back.calls] == ["priority", None, None]
    assert back.calls[2].degraded == "downgrade" and back.calls[2].estimated
    assert back.started_at == T0 and back.started_at.tzinfo is not None


def test_rows_hold_nanos_and_every_bucket(ledger: SQLiteLedger) -> None:
    ledger.record(realistic())
    db = sqlite3.connect(ledger.path)
    run_row = db.execute(
        "SELECT cost_nanos, unpriced_calls, llm_calls, outcome, tripped_limit, user_id, "
        "team_id, route_model, started_at FROM ab_runs"
    ).fetchone()
    assert run_row == (
        11_241_002,
        1,
        3,
        "tripped",
        "max_tool_calls",
        "u-42",
        "t-7",
        "gpt-4o",
        "2026-11-30T09:15:30.123456Z",
    )
    calls = db.execute(
        "SELECT seq, model, input_tokens, cached_input_tokens, cache_write_tokens, "
        "output_tokens, reasoning_tokens, cost_nanos FROM ab_llm_calls ORDER BY seq"
    ).fetchall()
    assert calls == [
        (0, "gpt-4o-2024-08-06", 2048, 1024, 0, 512, 0, 8_796_001),
        (1, "my-finetune", 700, 0, 64, 90, 0, None),
        (2, "gpt-4o-mini", 300, 0, 0, 4000, 3000, 2_445_001),
    ]
    # No prompt or output text: the tables hold exactly the documented columns.
    columns = {
        table: [row[1] for row in db.execute(f"PRAGMA table_info({table})")]
        for table in ("ab_runs", "ab_llm_calls")
    }
    assert columns == {"ab_runs": list(RUN_COLUMNS), "ab_llm_calls": list(CALL_COLUMNS)}
    db.close()


def test_the_same_batch_twice_is_written_once(ledger: SQLiteLedger) -> None:
    batch = spread()
    ledger.record_batch(batch)
    ledger.record_batch(batch)  # a retry after a failure that was not one
    ledger.record(batch[0])
    assert sorted(r.run_id for r in ledger.runs()) == [r.run_id for r in batch]
    db = sqlite3.connect(ledger.path)
    assert db.execute("SELECT COUNT(*) FROM ab_llm_calls").fetchone() == (5,)
    db.close()


def test_a_locked_database_raises_store_unavailable_and_the_retry_lands_once(
    tmp_path: Path,
) -> None:
    ledger = SQLiteLedger(tmp_path / "spend.db", busy_timeout_s=0.2)
    ledger.record(run("before"))
    blocker = sqlite3.connect(ledger.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with pytest.raises(StoreUnavailable, match="locked"):
        ledger.record_batch([run("a"), run("b")])
    blocker.execute("ROLLBACK")
    blocker.close()
    ledger.record_batch([run("a"), run("b")])
    assert sorted(r.run_id for r in ledger.runs()) == ["a", "b", "before"]
    ledger.close()


@pytest.mark.slow
def test_four_processes_write_800_runs_without_a_lock_error(tmp_path: Path) -> None:
    db = tmp_path / "spend.db"
    start_at = time.time() + 1.5  # all four start writing together
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), *sys.path])}
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "ledger_worker.py"),
                str(db),
                f"p{n}",
                "200",
                "20",
                str(start_at),
            ],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    errors = [w.communicate(timeout=120)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], errors
    assert not any("locked" in e for e in errors)
    ledger = SQLiteLedger(db)
    by_user = {row.key: row for row in ledger.summary(by="user")}
    assert {k: by_user[k].runs for k in ("p0", "p1", "p2", "p3")} == dict.fromkeys(
        ("p0", "p1", "p2", "p3"), 200
    )
    assert by_user["u-1"].runs == 20  # the shared runs, written by all four, kept once
    assert sum(row.runs for row in by_user.values()) == 820
    assert by_user["p2"].cost_usd == Decimal("0.000200000")
    ledger.close()


def test_threads_share_a_ledger(ledger: SQLiteLedger) -> None:
    def write(n: int) -> None:
        for i in range(25):
            ledger.record(run(f"t{n}-{i}", (call(),)))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (row,) = ledger.summary(by="user")
    assert (row.runs, row.llm_calls, row.cost_usd) == (200, 200, Decimal("1.200000000"))


def test_summary_figures_are_exact(ledger: SQLiteLedger) -> None:
    ledger.record_batch(spread())
    assert ledger.summary(by="user") == [
        SpendRow("alice", 2, 3, 1215, 327, Decimal("0.030300001"), 0, 1, 0, 0, Decimal(0)),
        SpendRow("bob", 2, 2, 1201, 302, Decimal("0.000000001"), 1, 0, 0, 0, Decimal(0)),
        SpendRow("carol", 2, 0, 0, 0, Decimal(0), 0, 0, 1, 1, Decimal("0.01")),
    ]
    assert ledger.summary(by="model") == [
        SpendRow("gpt-4o", 2, 2, 1210, 320, Decimal("0.03"), 0, 1, 0, 0, Decimal(0)),
        SpendRow("gpt-4o-mini", 3, 3, 1206, 309, Decimal("0.000300002"), 1, 1, 0, 0, Decimal(0)),
    ]
    assert ledger.summary(by="day") == [
        SpendRow("2026-11-30", 3, 4, 2415, 627, Decimal("0.030300002"), 0, 1, 0, 0, Decimal(0)),
        SpendRow("2026-12-01", 3, 1, 1, 2, Decimal(0), 1, 0, 1, 1, Decimal("0.01")),
    ]
    assert [(r.key, r.runs, r.cost_usd) for r in ledger.summary(by="team")] == [
        ("t-2", 1, Decimal("0.020300001")),
        ("t-1", 5, Decimal("0.010000001")),
    ]
    assert [(r.key, r.runs, r.refused) for r in ledger.summary(by="agent")] == [
        ("support", 5, 0),
        ("billing", 1, 1),
    ]


def test_summary_equals_the_sum_of_the_reports_in_any_window(ledger: SQLiteLedger) -> None:
    reports = spread()
    ledger.record_batch(reports)
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(days=1, seconds=1)
    inside = [r for r in reports if since <= r.started_at < until]
    assert {r.run_id for r in inside} == {"r2", "r4", "r5", "r6"}
    rows = ledger.summary(since=since, until=until, by="model")
    for model in ("gpt-4o", "gpt-4o-mini"):
        (row,) = [r for r in rows if r.key == model]
        costs = [r.cost_by_model().get(model, Decimal(0)) for r in inside]
        assert row.cost_usd == sum(costs, Decimal(0))
    naive_since = since.replace(tzinfo=None)  # naive datetimes are UTC
    assert ledger.summary(since=naive_since) == ledger.summary(since=since)
    assert [r.run_id for r in ledger.runs(since=since, until=until)] == ["r4", "r5", "r6", "r2"]
    assert [r.run_id for r in ledger.runs(user="bob")] == ["r4", "r3"]
    assert [r.run_id for r in ledger.runs(limit=2)] == ["r4", "r5"]
    assert ledger.runs(agent="billing")[0].outcome == "refused"


def test_top_runs_are_the_costliest_first_with_their_calls(ledger: SQLiteLedger) -> None:
    reports = {r.run_id: r for r in spread()}
    ledger.record_batch(list(reports.values()))
    # by cost (r5 and r6 cost $0, r4 is unpriced: last), then newest, then run id
    top = ledger.top_runs(limit=10)
    assert [r.run_id for r in top] == ["r2", "r1", "r3", "r5", "r6", "r4"]
    assert top[0] == reports["r2"] and len(top[0].calls) == 2
    assert [r.run_id for r in ledger.top_runs(limit=2)] == ["r2", "r1"]
    assert [r.run_id for r in ledger.top_runs(outcome="tripped")] == ["r2"]
    assert [r.run_id for r in ledger.top_runs(outcome="refused")] == ["r6"]
    since, until = T0 + timedelta(minutes=30), T0 + timedelta(days=1, seconds=1)
    assert [r.run_id for r in ledger.top_runs(since, until)] == ["r2", "r5", "r6", "r4"]
    with pytest.raises(ConfigurationError, match="outcome must be one of"):
        ledger.top_runs(outcome="failed")
    with pytest.raises(ConfigurationError, match="limit"):
        ledger.top_runs(limit=0)


def test_migrates_a_version_1_database_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    ledger_sqlite.migrate(db, target=1)
    db.execute(
        "INSERT INTO ab_runs VALUES ('old', '2026-11-01T00:00:00.000000Z', 'u', NULL, 'a', "
        "'completed', NULL, NULL, 1, 0, 0, '[]', 10, 5, 15, 42, 0.5, 0, 0, 'gpt-4o', 'simple')"
    )
    db.execute(
        "INSERT INTO ab_llm_calls VALUES ('old', 0, '2026-11-01T00:00:00.000000Z', 'a', "
        "'gpt-4o', 'gpt-4o', 'bundled', 10, 0, 0, 5, 0, 42, 0, 0, NULL, 0)"
    )
    db.execute("COMMIT")
    db.close()
    ledger = SQLiteLedger(path)
    assert ledger.schema_version() == 1
    ledger.record(realistic())
    assert ledger.schema_version() == SCHEMA_VERSION == 2
    old, new = sorted(ledger.runs(), key=lambda r: r.run_id)
    assert (old.run_id, old.cost_usd, old.route) == (
        "old",
        Decimal("0.000000042"),
        ab.Route(model="gpt-4o", reason="simple"),
    )
    assert old.calls[0].service_tier is None and not old.calls[0].priced_at_standard_rate
    assert new == realistic()
    ledger.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE ab_ledger_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO ab_ledger_meta VALUES ('schema_version', '99')")
    db.commit()
    db.close()
    with pytest.raises(ConfigurationError, match="schema version 99 is newer"):
        SQLiteLedger(path).record(run("x"))


def test_a_file_that_is_not_a_database_is_a_configuration_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_text("not a database" * 100)
    with pytest.raises(ConfigurationError, match="unusable"):
        SQLiteLedger(path).record(run("x"))


@pytest.mark.parametrize(
    ("path", "match"),
    [
        (":memory:", "needs a file"),
        ("sqlite:///:memory:", "needs a file"),
        ("postgresql://localhost/db", "use PostgresLedger"),
        ("", "file path"),
        ("/no/such/dir/spend.db", "does not exist"),
    ],
)
def test_bad_paths_are_refused_at_construction(path: str, match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SQLiteLedger(path)


def test_bad_arguments_are_refused(tmp_path: Path, ledger: SQLiteLedger) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        SQLiteLedger(tmp_path)
    with pytest.raises(ConfigurationError, match="busy_timeout_s"):
        SQLiteLedger(tmp_path / "x.db", busy_timeout_s=0)
    with pytest.raises(ConfigurationError, match="by must be one of"):
        ledger.summary(by="week")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"since .* is after until"):
        ledger.summary(since=T0, until=T0 - timedelta(seconds=1))
    with pytest.raises(ConfigurationError, match="limit"):
        ledger.runs(limit=0)
    assert SQLiteLedger(f"sqlite:///{tmp_path / 'u.db'}").path == str(tmp_path / "u.db")


async def test_a_guard_writes_each_run_to_the_ledger(ledger: SQLiteLedger) -> None:
    guard = ab.Guard(sinks=[ledger])
    agent = Agent(
        name="support",
        model=scripted_model("gpt-4o", [reply("Shipped.", input_tokens=30, output_tokens=6)]),
    )
    result = await guard.run(agent, "Where is my order?", user="u-42", team="t-1")
    assert await guard.aflush(timeout=10)  # written off the call path
    (back,) = ledger.runs()
    assert back == ab.report_of(result)
    (row,) = ledger.summary(by="model")
    # 30 input x $2.50 + 6 output x $10 per 1M tokens
    assert (row.key, row.cost_usd, row.input_tokens, row.output_tokens) == (
        "gpt-4o",
        Decimal("0.000135"),
        30,
        6,
    )


def test_the_example_totals_equal_the_exact_sums_of_its_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six runs, two models, three users: the ledger's totals are the reports' sums."""
    module = runpy.run_path(str(ROOT / "examples" / "ledger.py"))
    reports = asyncio.run(module["main"](tmp_path / "spend.db"))
    assert len(reports) == 6 and {r.user for r in reports} == {"alice", "bob", "carol"}
    ledger = SQLiteLedger(tmp_path / "spend.db")
    by_user = {row.key: row.cost_usd for row in ledger.summary(by="user")}
    by_model = {row.key: row.cost_usd for row in ledger.summary(by="model")}
    for user in ("alice", "bob", "carol"):
        assert by_user[user] == sum((r.cost_usd for r in reports if r.user == user), Decimal(0))
    for model in ("gpt-4o", "gpt-4o-mini"):
        assert by_model[model] == sum(
            (r.cost_by_model().get(model, Decimal(0)) for r in reports), Decimal(0)
        )
    assert by_model == {"gpt-4o": Decimal("0.0315"), "gpt-4o-mini": Decimal("0.00054")}
    assert "total: $0.032040000 over 6 runs" in capsys.readouterr().out
    ledger.close()
