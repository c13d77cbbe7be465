"""PostgresLedger against the PostgreSQL server these machines run.

``AGENTBUDGET_TEST_POSTGRES_URL`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
names the server. Each test works in its own fresh schema ``ab_test_<uuid>``, dropped
afterwards; nothing else is dropped or truncated. Without a server the tests are skipped
with the reason (``.ci/run`` fails under ``CI=true`` when a "postgres" test skipped).
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from helpers.ledger_support import T0, call, realistic, run, spread

import agentbudget as ab
from agentbudget.errors import ConfigurationError, StoreUnavailable
from agentbudget.sinks.ledger import SCHEMA_VERSION, PostgresLedger, SQLiteLedger
from agentbudget.sinks.ledger._common import GROUPS
from agentbudget.sinks.ledger.postgres import APPLICATION_NAME

psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (extra postgres)")

URL = os.environ.get("AGENTBUDGET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")

_server: list[str | None] = []


def _server_error() -> str | None:
    if not _server:
        try:
            psycopg.connect(URL, connect_timeout=2).close()
            _server.append(None)
        except psycopg.Error as exc:
            _server.append(f"no PostgreSQL server answers at {URL}: {exc}".strip())
    return _server[0]


def sql(statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(URL, autocommit=True) as conn:
        cur = conn.execute(statement, params or None)
        return cur.fetchall() if cur.description else []


@pytest.fixture
def schema() -> Iterator[str]:
    error = _server_error()
    if error:
        pytest.skip(error)
    name = f"ab_test_{uuid.uuid4().hex}"
    yield name
    sql(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
async def ledger(schema: str) -> AsyncIterator[PostgresLedger]:
    yield PostgresLedger(URL, schema=schema)


async def test_postgres_round_trip_of_a_realistic_report(
    ledger: PostgresLedger, schema: str
) -> None:
    report = realistic()
    await ledger.record(report)
    (back,) = await ledger.runs()
    assert back == report
    assert back.calls[1].cost_usd is None
    assert back.cost_usd == Decimal("0.011241002")
    rows = sql(
        f"SELECT seq, input_tokens, cached_input_tokens, cache_write_tokens, output_tokens, "
        f'reasoning_tokens, cost_nanos, service_tier FROM "{schema}".ab_llm_calls ORDER BY seq'
    )
    assert rows == [
        (0, 2048, 1024, 0, 512, 0, 8_796_001, "priority"),
        (1, 700, 0, 64, 90, 0, None, None),
        (2, 300, 0, 0, 4000, 3000, 2_445_001, None),
    ]
    assert sql(f'SELECT cost_nanos, outcome, tripped_limit FROM "{schema}".ab_runs') == [
        (11_241_002, "tripped", "max_tool_calls")
    ]


async def test_postgres_the_same_batch_twice_is_written_once(
    ledger: PostgresLedger, schema: str
) -> None:
    batch = spread()
    await ledger.record_batch(batch)
    await ledger.record_batch(batch)
    assert sql(f'SELECT COUNT(*) FROM "{schema}".ab_runs') == [(6,)]
    assert sql(f'SELECT COUNT(*) FROM "{schema}".ab_llm_calls') == [(5,)]


async def test_postgres_summary_matches_sqlite_exactly(
    ledger: PostgresLedger, tmp_path: Path
) -> None:
    reports = spread()
    await ledger.record_batch(reports)
    lite = SQLiteLedger(tmp_path / "spend.db")
    lite.record_batch(reports)  # the SQLite figures are pinned in test_ledger_sqlite.py
    for by in GROUPS:
        assert await ledger.summary(by=by) == lite.summary(by=by), by  # type: ignore[arg-type]
    window: dict[str, Any] = {
        "since": T0.replace(hour=10),
        "until": T0 + timedelta(days=1, minutes=1),
    }
    assert await ledger.summary(**window, by="model") == lite.summary(**window, by="model")
    assert await ledger.runs(**window) == lite.runs(**window)
    assert [r.run_id for r in await ledger.runs(user="bob")] == ["r4", "r3"]
    lite.close()


async def test_postgres_top_runs_equal_sqlite_s(ledger: PostgresLedger, tmp_path: Path) -> None:
    reports = spread()
    await ledger.record_batch(reports)
    lite = SQLiteLedger(tmp_path / "spend.db")
    lite.record_batch(reports)  # the SQLite order is pinned in test_ledger_sqlite.py
    top = await ledger.top_runs(limit=10)
    assert [r.run_id for r in top] == ["r2", "r1", "r3", "r5", "r6", "r4"]
    assert top == lite.top_runs(limit=10)
    window: dict[str, Any] = {"since": T0 + timedelta(minutes=30), "until": T0 + timedelta(days=2)}
    assert await ledger.top_runs(**window, limit=3) == lite.top_runs(**window, limit=3)
    assert ledger.top_runs_sync(outcome="tripped") == lite.top_runs(outcome="tripped")
    with pytest.raises(ConfigurationError, match="outcome must be one of"):
        await ledger.top_runs(outcome="failed")
    lite.close()


async def test_postgres_twenty_concurrent_tasks_write_every_run_once(
    ledger: PostgresLedger, schema: str
) -> None:
    async def task(n: int) -> None:
        own = [run(f"t{n}-{i}", (call(cost="0.000000003"),), user=f"u{n}") for i in range(10)]
        shared = [run(f"shared-{i}", (call(),), user="shared") for i in range(5)]
        await ledger.record_batch(own + shared)

    await asyncio.gather(*(task(n) for n in range(20)))
    rows = {row.key: row for row in await ledger.summary(by="user")}
    assert len(rows) == 21 and all(rows[f"u{n}"].runs == 10 for n in range(20))
    assert rows["shared"].runs == 5
    assert sum(r.cost_usd for r in rows.values()) == Decimal("0.000000600") + Decimal("0.03")


async def test_postgres_concurrent_first_use_migrates_once(schema: str) -> None:
    ledgers = [PostgresLedger(URL, schema=schema) for _ in range(8)]
    await asyncio.gather(*(lg.record(run(f"r{i}")) for i, lg in enumerate(ledgers)))
    assert await ledgers[0].schema_version() == SCHEMA_VERSION
    assert sql(f'SELECT COUNT(*) FROM "{schema}".ab_runs') == [(8,)]


@pytest.mark.slow
def test_postgres_two_processes_migrate_at_once(schema: str) -> None:
    code = (
        "import asyncio, sys\n"
        "from agentbudget.sinks.ledger import PostgresLedger\n"
        "print(asyncio.run(PostgresLedger(sys.argv[1], schema=sys.argv[2]).migrate()))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, URL, schema], stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    found = sorted(int(p.communicate(timeout=60)[0]) for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert found == [0, SCHEMA_VERSION]  # one created the schema, the other found it done


async def test_postgres_migrates_a_version_1_schema_and_keeps_its_rows(
    ledger: PostgresLedger, schema: str
) -> None:
    assert await ledger.migrate(target=1) == 0
    assert await ledger.schema_version() == 1
    sql(
        f'INSERT INTO "{schema}".ab_runs VALUES (%s, %s, %s, NULL, %s, %s, NULL, NULL, 1, 0, '
        "0, '[]', 10, 5, 15, 42, 0.5, false, 0, 'gpt-4o', 'simple')",
        "old",
        T0,
        "u",
        "a",
        "completed",
    )
    sql(
        f'INSERT INTO "{schema}".ab_llm_calls VALUES (%s, 0, %s, %s, %s, %s, %s, 10, 0, 0, 5, '
        "0, 42, false, false, NULL, false)",
        "old",
        T0,
        "a",
        "gpt-4o",
        "gpt-4o",
        "bundled",
    )
    await ledger.record(realistic())
    assert await ledger.schema_version() == SCHEMA_VERSION == 2
    old, new = await ledger.runs()  # same started_at: ordered by run id
    assert new == realistic()
    assert (old.run_id, old.cost_usd, old.route) == (
        "old",
        Decimal("0.000000042"),
        ab.Route(model="gpt-4o", reason="simple"),
    )
    assert old.calls[0].service_tier is None


async def test_postgres_a_newer_schema_is_refused(ledger: PostgresLedger, schema: str) -> None:
    await ledger.migrate()
    sql(f"UPDATE \"{schema}\".ab_ledger_meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(ConfigurationError, match="schema version 99 is newer"):
        await PostgresLedger(URL, schema=schema).record(run("x"))


def test_postgres_sync_wrappers_work_inside_and_outside_a_loop(
    ledger: PostgresLedger,
) -> None:
    ledger.record_sync(realistic())
    assert [r.run_id for r in ledger.runs_sync()] == ["run-realistic"]

    async def inside() -> Any:
        return ledger.summary_sync(by="agent")

    (row,) = asyncio.run(inside())
    assert (row.key, row.cost_usd, row.tripped) == ("triage", Decimal("0.011241002"), 1)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_postgres_unreachable_server_raises_store_unavailable() -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{_closed_port()}/test"
    ledger = PostgresLedger(url, connect_timeout_s=1)
    with pytest.raises(StoreUnavailable) as caught:
        await ledger.record(run("x"))
    assert caught.value.url is not None and "secret" not in caught.value.url
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    ("url", "schema", "match"),
    [
        ("sqlite:///spend.db", None, "PostgreSQL ledger URL"),
        ("redis://127.0.0.1:6379/0", None, "PostgreSQL ledger URL"),
        ("127.0.0.1:5432", None, "PostgreSQL ledger URL"),
        (URL, "bad-name; DROP", "schema must be a PostgreSQL identifier"),
        (URL, "", "schema must be a PostgreSQL identifier"),
    ],
)
def test_postgres_bad_configuration_is_refused_at_construction(
    url: str, schema: str | None, match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        PostgresLedger(url, schema=schema)


def test_postgres_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ConfigurationError, match=r"agentbudget-sdk\[postgres\]"):
        PostgresLedger(URL)


async def test_postgres_default_schema_is_the_search_path(schema: str) -> None:
    """Without schema=, the tables go to the connection's search_path (here: our schema)."""
    sql(f'CREATE SCHEMA "{schema}"')
    url = f"{URL}?options=-csearch_path%3D{schema}"
    ledger = PostgresLedger(url)
    await ledger.record(realistic())
    assert sql(f'SELECT run_id FROM "{schema}".ab_runs') == [("run-realistic",)]
    assert [r.run_id for r in await ledger.runs()] == ["run-realistic"]


def test_postgres_driver_is_imported_only_when_a_postgres_ledger_is_made() -> None:
    code = (
        "import sys, agentbudget as ab\n"
        "assert 'psycopg' not in sys.modules\n"
        "ab.PostgresLedger('postgresql://127.0.0.1/x')\n"
        "assert 'psycopg' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


async def test_postgres_a_connection_killed_mid_batch_writes_nothing_and_the_retry_lands_once(
    ledger: PostgresLedger, schema: str
) -> None:
    await ledger.migrate()
    batch = [run("a", (call(),)), run("b", (call(),)), run("contended", (call(),))]
    # Another session inserts "contended" and does not commit: the ledger's batch waits
    # on that row after writing a and b; then its connection is killed.
    blocker = await psycopg.AsyncConnection.connect(URL)
    try:
        await blocker.execute(
            f'INSERT INTO "{schema}".ab_runs (run_id, started_at, agent, outcome, llm_calls, '
            "unpriced_calls, tool_calls, tool_names, input_tokens, output_tokens, "
            "total_tokens, duration_s, cache_hit, saved_nanos) VALUES ('contended', now(), "
            "'x', 'completed', 0, 0, 0, '[]', 0, 0, 0, 0, false, 0)"
        )
        write = asyncio.create_task(ledger.record_batch(batch))
        waiting: list[tuple[Any, ...]] = []
        for _ in range(200):
            waiting = sql(
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s "
                "AND wait_event_type = 'Lock' AND query LIKE %s",
                APPLICATION_NAME,
                f'%"{schema}".ab_runs%',
            )
            if waiting:
                break
            await asyncio.sleep(0.05)
        assert len(waiting) == 1, "the batch never waited on the contended row"
        sql("SELECT pg_terminate_backend(%s)", waiting[0][0])
        with pytest.raises(StoreUnavailable):
            await write
        await blocker.rollback()
    finally:
        await blocker.close()
    assert sql(f'SELECT COUNT(*) FROM "{schema}".ab_runs') == [(0,)]  # a and b rolled back
    await ledger.record_batch(batch)  # the dispatcher's retry
    await ledger.record_batch(batch)
    assert sql(f'SELECT run_id FROM "{schema}".ab_runs ORDER BY run_id') == [
        ("a",),
        ("b",),
        ("contended",),
    ]
    assert sql(f'SELECT COUNT(*) FROM "{schema}".ab_llm_calls') == [(3,)]


async def test_postgres_a_guard_writes_each_run_through_its_dispatcher(
    ledger: PostgresLedger,
) -> None:
    from agents import Agent

    from agentbudget.testing import reply, scripted_model

    guard = ab.Guard(sinks=[ledger])  # record_batch is async: awaited on the worker's loop
    agent = Agent(
        name="support",
        model=scripted_model("gpt-4o", [reply("Shipped.", input_tokens=30, output_tokens=6)]),
    )
    result = await guard.run(agent, "Where is my order?", user="u-42", team="t-1")
    assert await guard.aflush(timeout=30)
    (back,) = await ledger.runs()
    assert back == ab.report_of(result)
    assert await guard.aclose()
