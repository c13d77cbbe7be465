"""``agentbudget report``: totals equal the exact sums of the reports (SQLite and
PostgreSQL), windows, --top, errors on one line, progress, and the HTML page.

The PostgreSQL tests follow tests/sinks/test_ledger_postgres.py: the server at
``AGENTBUDGET_TEST_POSTGRES_URL``, a fresh schema per test, dropped afterwards.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import socket
import subprocess
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agents import Agent
from helpers.report_support import START, png_pixels, run, two_weeks
from helpers.report_support import call as priced_call
from rich.console import Console

import agentbudget as ab
from agentbudget import reporting
from agentbudget._format import usd_rate
from agentbudget.cli import main
from agentbudget.errors import ConfigurationError
from agentbudget.html_report import render_html
from agentbudget.reporting import open_ledger, parse_moment, spend_report
from agentbudget.sinks.ledger import SpendRow
from agentbudget.testing import reply, scripted_model

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get(
    "AGENTBUDGET_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

# (user, model, input tokens, cached input tokens, output tokens): two models, three users
SIX = [
    ("alice", "gpt-4o", 1_234, 512, 321),
    ("alice", "gpt-4o-mini", 807, 0, 203),
    ("bob", "gpt-4o", 2_011, 1_024, 517),
    ("bob", "gpt-4o-mini", 433, 128, 97),
    ("carol", "gpt-4o-mini", 611, 0, 151),
    ("carol", "gpt-4o", 3_007, 2_048, 809),
]


def report_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(["report", *argv])
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


async def six_runs(ledger: ab.SQLiteLedger | None = None) -> list[ab.RunReport]:
    """Six governed runs on scripted models, priced by the bundled table."""
    guard = ab.Guard(sinks=[ledger] if ledger is not None else [])
    reports = []
    for user, model, inp, cached, out in SIX:
        agent = Agent(
            name="support",
            model=scripted_model(
                model,
                [
                    reply(
                        "Shipped.", input_tokens=inp, cached_input_tokens=cached, output_tokens=out
                    )
                ],
            ),
        )
        result = await guard.run(agent, "Where is my order?", user=user, team="t-1")
        reports.append(ab.report_of(result))
    assert await guard.aflush(timeout=10)  # the ledger is written off the call path
    return reports


def expected(reports: list[ab.RunReport], by: str) -> dict[str | None, dict[str, Any]]:
    """Per-user or per-model figures summed from the reports themselves."""
    sums: dict[str | None, dict[str, Any]] = {}
    for report in reports:
        if by == "user":
            parts = [(report.user, report.calls, report.cost_usd or Decimal(0))]
        else:
            models = {c.model for c in report.calls}
            parts = [
                (m, tuple(c for c in report.calls if c.model == m), None) for m in sorted(models)
            ]
        for key, calls, cost in parts:
            row = sums.setdefault(
                key,
                {"runs": 0, "llm_calls": 0, "input": 0, "output": 0, "cost": Decimal(0)},
            )
            row["runs"] += 1
            row["llm_calls"] += len(calls)
            row["input"] += sum(c.input_tokens for c in calls)
            row["output"] += sum(c.output_tokens for c in calls)
            row["cost"] += (
                cost
                if cost is not None
                else sum((c.cost_usd or Decimal(0) for c in calls), Decimal(0))
            )
    return sums


def from_json(out: str) -> tuple[dict[str | None, dict[str, Any]], dict[str, Any]]:
    document = json.loads(out, parse_float=lambda text: pytest.fail(f"a float: {text}"))
    rows = {
        row["key"]: {
            "runs": row["runs"],
            "llm_calls": row["llm_calls"],
            "input": row["input_tokens"],
            "output": row["output_tokens"],
            "cost": Decimal(row["cost_usd"]),
        }
        for row in document["rows"]
    }
    return rows, document["total"]


def from_csv(out: str, by: str) -> dict[str | None, dict[str, Any]]:
    rows = list(csv.DictReader(io.StringIO(out)))
    return {
        row[by]: {
            "runs": int(row["runs"]),
            "llm_calls": int(row["llm_calls"]),
            "input": int(row["input_tokens"]),
            "output": int(row["output_tokens"]),
            "cost": Decimal(row["cost_usd"]),
        }
        for row in rows
    }


@pytest.fixture
async def six(tmp_path: Path) -> tuple[Path, list[ab.RunReport]]:
    path = tmp_path / "spend.db"
    ledger = ab.SQLiteLedger(path)
    reports = await six_runs(ledger)  # written by the guard's sink, as in production
    ledger.close()
    return path, reports


@pytest.mark.parametrize("by", ["user", "model"])
def test_sqlite_totals_equal_the_exact_sums_of_the_reports(
    by: str, six: tuple[Path, list[ab.RunReport]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, reports = six
    want = expected(reports, by)
    assert len(want) == (3 if by == "user" else 2)
    # The costs are not round: an error in a nano-dollar would show.
    assert all(row["cost"] != row["cost"].quantize(Decimal("0.0001")) for row in want.values())

    code, out, err = report_cli([str(path), "--by", by, "--format", "json"], capsys)
    assert (code, err) == (0, "")
    rows, total = from_json(out)
    assert rows == want
    assert Decimal(total["cost_usd"]) == sum(
        (r.cost_usd or Decimal(0) for r in reports), Decimal(0)
    )
    assert total["runs"] == 6 and total["llm_calls"] == 6
    assert total["tokens"] == sum(r.input_tokens + r.output_tokens for r in reports)

    code, out, _ = report_cli([f"sqlite:///{path}", "--by", by, "--format", "csv"], capsys)
    assert code == 0 and from_csv(out, by) == want


def test_the_table_shows_each_row_and_the_exact_total(
    six: tuple[Path, list[ab.RunReport]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, reports = six
    code, out, _ = report_cli([str(path)], capsys)
    assert code == 0
    lines = [line.split() for line in out.splitlines()]
    header = next(line for line in lines if line[:2] == ["user", "runs"])
    assert " ".join(header) == "user runs LLM calls tokens cost (USD) saved (USD) tripped"
    for user, want in expected(reports, "user").items():
        (row,) = [line for line in lines if line and line[0] == user]
        assert row[1:4] == ["2", "2", f"{want['input'] + want['output']:,}"]
        assert Decimal(row[4]) == want["cost"]
    (total,) = [line for line in lines if line and line[0] == "total"]
    assert Decimal(total[4]) == sum((r.cost_usd or Decimal(0) for r in reports), Decimal(0))
    assert total[1:3] == ["6", "6"]


def _dated(tmp_path: Path) -> Path:
    """Runs on three days (Nov 16, 17, 18 2026), one tripped, in a SQLite ledger."""
    path = tmp_path / "dated.db"
    ledger = ab.SQLiteLedger(path)
    ledger.record_batch(
        [
            run("d1", (priced_call("gpt-4o", 1_000, 100),), user="alice", at=START),
            run("d2", (priced_call("gpt-4o-mini", 2_000, 50),), user="bob", at=START),
            run(
                "d3",
                (priced_call("gpt-4o", 3_000, 300),),
                user="bob",
                at=START + timedelta(days=1),
                outcome="tripped",
                tripped_limit="max_cost_usd",
            ),
            run("d4", (priced_call("gpt-4o", 500, 20),), user="carol", at=START + timedelta(2)),
        ]
    )
    ledger.close()
    return path


def test_since_and_until_select_the_window(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(_dated(tmp_path))
    code, out, _ = report_cli(
        [path, "--since", "2026-11-17", "--until", "2026-11-18", "--format", "json"], capsys
    )
    rows, total = from_json(out)
    assert code == 0 and list(rows) == ["bob"] and total["runs"] == 1 and total["tripped"] == 1
    assert rows["bob"]["cost"] == priced_call("gpt-4o", 3_000, 300).cost_usd
    # --since alone is inclusive; --until alone is exclusive
    _, out, _ = report_cli([path, "--since", "2026-11-17T00:00", "--format", "json"], capsys)
    assert from_json(out)[1]["runs"] == 2
    _, out, _ = report_cli([path, "--until", "2026-11-17", "--format", "json"], capsys)
    rows, total = from_json(out)
    assert sorted(rows) == ["alice", "bob"] and total["runs"] == 2
    # --by day: the three days, each with its own runs
    _, out, _ = report_cli([path, "--by", "day", "--format", "csv"], capsys)
    days = {row["day"]: int(row["runs"]) for row in csv.DictReader(io.StringIO(out))}
    assert days == {"2026-11-16": 2, "2026-11-17": 1, "2026-11-18": 1}


def test_a_duration_counts_back_from_now(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(timezone.utc)
    path = tmp_path / "recent.db"
    ledger = ab.SQLiteLedger(path)
    ledger.record_batch(
        [
            run("old", (priced_call("gpt-4o", 100, 10),), user="old", at=now - timedelta(days=9)),
            run("new", (priced_call("gpt-4o", 100, 10),), user="new", at=now - timedelta(hours=30)),
        ]
    )
    ledger.close()
    for since, users in (("7d", ["new"]), ("24h", []), ("10d", ["new", "old"]), ("2w", None)):
        _, out, _ = report_cli([str(path), "--since", since, "--format", "json"], capsys)
        assert sorted(from_json(out)[0]) == (users if users is not None else ["new", "old"])


def test_parse_moment() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=timezone.utc)
    assert parse_moment("24h", now=now) == datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert parse_moment("7d", now=now) == datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
    assert parse_moment("90m", now=now) == datetime(2026, 12, 2, 10, 30, tzinfo=timezone.utc)
    assert parse_moment("2026-11-30", now=now) == datetime(2026, 11, 30, tzinfo=timezone.utc)
    assert parse_moment("2026-11-30T10:00+02:00", now=now) == datetime(
        2026, 11, 30, 8, 0, tzinfo=timezone.utc
    )
    for bad in ("7 days", "0d", "yesterday", "-3d", ""):
        with pytest.raises(ConfigurationError):
            parse_moment(bad, now=now)


def test_top_keeps_the_biggest_rows_and_the_total_of_all(
    six: tuple[Path, list[ab.RunReport]], capsys: pytest.CaptureFixture[str]
) -> None:
    path, reports = six
    want = expected(reports, "user")
    biggest = sorted(want, key=lambda user: -want[user]["cost"])
    code, out, _ = report_cli([str(path), "--top", "2", "--format", "json"], capsys)
    document = json.loads(out)
    assert code == 0 and [row["key"] for row in document["rows"]] == biggest[:2]
    assert document["others"] == 1 and document["total"]["runs"] == 6
    _, out, _ = report_cli([str(path), "--top", "2"], capsys)
    assert "1 more user not shown (--top)" in out and biggest[2] not in out


def test_a_missing_user_is_a_row_of_its_own(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "anon.db"
    ledger = ab.SQLiteLedger(path)
    ledger.record_batch([run("a", (priced_call("gpt-4o", 10, 1),), user=None, at=START)])
    ledger.close()
    _, out, _ = report_cli([str(path), "--format", "json"], capsys)
    assert [row["key"] for row in json.loads(out)["rows"]] == [None]
    _, out, _ = report_cli([str(path), "--format", "csv"], capsys)
    assert out.splitlines()[1].startswith(",1,1,")
    _, out, _ = report_cli([str(path)], capsys)
    assert "(none)" in out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{db}", "--by", "country"], "argument --by: invalid choice: 'country'"),
        (["{db}", "--since", "7 days"], "--since: expected a duration (24h, 7d, 30d)"),
        (["{db}", "--until", "soon"], "--until: expected a duration"),
        (["{db}", "--since", "0h"], "a duration must be more than 0"),
        (["{db}", "--since", "2026-11-18", "--until", "2026-11-17"], "must be before --until"),
        (["{db}", "--top", "0"], "argument --top: must be 1 or more, got 0"),
        (["{db}", "--format", "xml"], "argument --format: invalid choice: 'xml'"),
        (["{db}", "--schema", "x"], "--schema is for PostgreSQL ledgers"),
        (["{dir}/missing.db"], "the file does not exist"),
        (["{dir}"], "is a directory"),
        (["{dir}/notes.txt"], "is not a SQLite ledger"),
        (["{dir}/empty.db"], "is not an agentbudget ledger (no ab_runs table)"),
        (["redis://localhost/0"], "unknown ledger 'redis://localhost/0'"),
        (["postgresql://postgres@127.0.0.1:{port}/test"], "failed"),
        (["{db}", "--html", "{dir}/no/such/dir/out.html"], "No such file or directory"),
    ],
)
def test_each_misuse_prints_one_line_and_exits_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    db = _dated(tmp_path)
    (tmp_path / "notes.txt").write_text("not a database, just text\n" * 100)
    sqlite3.connect(tmp_path / "empty.db").close()
    values = {"db": str(db), "dir": str(tmp_path), "port": str(_free_port())}
    code, out, err = report_cli([a.format(**values) for a in argv], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("agentbudget report: error: "), err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "dated.db",
        "empty.db",
        "notes.txt",
    ], "a report creates no file"


def test_a_report_does_not_write_to_the_ledger(tmp_path: Path) -> None:
    path = _dated(tmp_path)
    before = path.read_bytes()
    assert main(["report", str(path), "--by", "model", "--html", str(tmp_path / "r.html")]) == 0
    assert path.read_bytes() == before


# Progress.


def test_progress_shows_on_a_terminal_for_a_large_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = open_ledger(str(_dated(tmp_path)))
    terminal = io.StringIO()
    piped = io.StringIO()
    monkeypatch.setattr(reporting, "PROGRESS_MIN_RUNS", 4)  # the window holds 4 runs
    for out, is_terminal in ((terminal, True), (piped, False)):
        console = Console(file=out, force_terminal=is_terminal, width=100)
        report = spend_report(ledger, by="team", details=True, progress=console)
        assert report.total.runs == 4 and len(report.biggest_runs) == 4
    assert "reading 4 runs" in terminal.getvalue()
    assert piped.getvalue() == ""
    monkeypatch.setattr(reporting, "PROGRESS_MIN_RUNS", 5)  # a smaller window shows none
    small = io.StringIO()
    spend_report(ledger, details=True, progress=Console(file=small, force_terminal=True))
    assert small.getvalue() == ""


def test_the_cli_prints_no_progress_when_stderr_is_not_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reporting, "PROGRESS_MIN_RUNS", 1)
    code, out, err = report_cli([str(_dated(tmp_path)), "--format", "csv"], capsys)
    assert code == 0 and err == "" and out.startswith("user,runs,")


# HTML.

EVIL_USER = "<script>alert(1)</script>"
EVIL_AGENT = '"><img src=x onerror=alert(2)>'


def _html_ledger(tmp_path: Path) -> Path:
    path = tmp_path / "html.db"
    ledger = ab.SQLiteLedger(path)
    evil = run(
        "evil-run",
        (priced_call("gpt-4o", 90_000, 9_000, agent=EVIL_AGENT),),
        user=EVIL_USER,
        team="<b>team</b>",
        agent=EVIL_AGENT,
        at=START + timedelta(days=3),
        outcome="tripped",
        tripped_limit="max_cost_usd",
    )
    ledger.record_batch([*two_weeks(), evil])
    ledger.close()
    return path


def test_the_html_is_self_contained_has_charts_and_escapes_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    code, _, err = report_cli([str(_html_ledger(tmp_path)), "--html", str(out)], capsys)
    assert code == 0 and err == f"agentbudget report: wrote {out}\n"
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    # no network and no external assets
    assert not re.search(r"https?://", page, re.I)
    assert not re.search(r"<script|<link|<iframe|<img|@import|url\(", page, re.I)
    # four inline charts: spend per day, top users, top models, tripped runs per day
    assert page.count("<svg") == 4 and page.count("</svg>") == 4
    assert page.count("<rect") >= 14 + 5 + 3 + 14
    for title in ("spend per day (USD)", "cost per user", "cost per model", "tripped runs per day"):
        assert f'aria-label="{title}"' in page
    # every name from the ledger is escaped
    assert EVIL_USER not in page and EVIL_AGENT not in page and "<b>team" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    # sections and figures
    for heading in ("Spend over time", "Top users", "Top models", "Tripped runs", "Biggest runs"):
        assert heading in page
    reports = ab.SQLiteLedger(tmp_path / "html.db").runs(limit=None)
    total = sum((r.cost_usd or Decimal(0) for r in reports), Decimal(0))
    assert f"${usd_rate(total)}" in page  # the exact total
    assert f"Tripped runs: {sum(r.outcome == 'tripped' for r in reports)}" in page
    # the biggest run is listed first, with its call
    assert page.index("evil-run") < page.index('class="calls"')


def test_render_html_of_an_empty_window() -> None:
    empty = SpendRow(None, 0, 0, 0, 0, Decimal(0), 0, 0, 0, 0, Decimal(0))
    report = reporting.SpendReport(
        by="user",
        since=None,
        until=None,
        generated_at=START,
        rows=(),
        others=0,
        total=empty,
        days=(),
    )
    page = render_html(report)
    assert "No runs in this window." in page and "<svg" not in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="no chromium (apt-get install chromium)")
def test_the_html_renders_its_charts_in_headless_chromium_offline(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    assert main(["report", str(_html_ledger(tmp_path)), "--html", str(page)]) == 0
    shot = tmp_path / "report.png"
    done = subprocess.run(
        [
            str(_chromium()),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--proxy-server=127.0.0.1:9",  # a dead proxy: nothing can be fetched
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--screenshot={shot}",
            "--window-size=1280,1600",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    width, height, pixels = png_pixels(shot.read_bytes())
    assert (width, height) == (1280, 1600)
    colors = Counter(pixels)
    assert len(colors) > 50, "a blank page"
    # The bars are drawn: the chart colours cover real areas of the page.
    blue, purple, red = (0x3B, 0x82, 0xF6), (0x8B, 0x5C, 0xF6), (0xDC, 0x26, 0x26)
    assert colors[blue] > 20_000, colors[blue]  # spend per day and top users
    assert colors[purple] > 2_000, colors[purple]  # top models
    assert colors[red] > 2_000, colors[red]  # tripped runs per day


def test_the_committed_screenshot_is_a_real_png_under_300_kb() -> None:
    shot = ROOT / "docs" / "img" / "report.png"
    data = shot.read_bytes()
    assert len(data) < 300_000
    width, height, pixels = png_pixels(data)
    assert (width, height) == (1280, 1600)
    assert Counter(pixels)[(0x3B, 0x82, 0xF6)] > 20_000


# PostgreSQL.


@pytest.fixture
def pg_schema() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg", reason="psycopg not installed (extra postgres)")
    try:
        psycopg.connect(PG_URL, connect_timeout=2).close()
    except psycopg.Error as exc:
        pytest.skip(f"no PostgreSQL server answers at {PG_URL}: {exc}".strip())
    name = f"ab_test_{uuid.uuid4().hex}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.mark.parametrize("by", ["user", "model"])
async def test_postgres_totals_equal_the_exact_sums_of_the_reports(
    by: str, pg_schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = await six_runs()
    await ab.PostgresLedger(PG_URL, schema=pg_schema).record_batch(reports)
    want = expected(reports, by)
    code, out, err = report_cli(
        [PG_URL, "--schema", pg_schema, "--by", by, "--format", "json"], capsys
    )
    assert (code, err) == (0, "")
    rows, total = from_json(out)
    assert rows == want
    assert Decimal(total["cost_usd"]) == sum(
        (r.cost_usd or Decimal(0) for r in reports), Decimal(0)
    )
    code, out, _ = report_cli(
        [PG_URL, "--schema", pg_schema, "--by", by, "--format", "csv"], capsys
    )
    assert code == 0 and from_csv(out, by) == want


async def test_postgres_window_top_and_html(
    pg_schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = two_weeks()
    await ab.PostgresLedger(PG_URL, schema=pg_schema).record_batch(reports)
    since, until = START + timedelta(days=3), START + timedelta(days=5)
    inside = [r for r in reports if since <= r.started_at < until]
    code, out, _ = report_cli(
        [
            PG_URL,
            "--schema",
            pg_schema,
            "--since",
            since.isoformat(),
            "--until",
            until.isoformat(),
            "--top",
            "2",
            "--format",
            "json",
            "--html",
            str(tmp_path / "pg.html"),
        ],
        capsys,
    )
    assert code == 0
    document = json.loads(out)
    assert len(document["rows"]) == 2 and document["others"] == 3
    assert document["total"]["runs"] == len(inside)
    assert Decimal(document["total"]["cost_usd"]) == sum(
        (r.cost_usd or Decimal(0) for r in inside), Decimal(0)
    )
    by_user = expected(inside, "user")
    for row in document["rows"]:
        assert Decimal(row["cost_usd"]) == by_user[row["key"]]["cost"]
    page = (tmp_path / "pg.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 4 and not re.search(r"https?://", page)


# The example and the demo.


def test_the_monitoring_example_reports_its_six_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio
    import runpy

    module = runpy.run_path(str(ROOT / "examples" / "monitoring.py"))
    reports = asyncio.run(module["main"](tmp_path))
    out = capsys.readouterr().out
    assert len(reports) == 6 and {r.user for r in reports} == {"alice", "bob", "carol"}
    assert {c.model for r in reports for c in r.calls} == {"gpt-4o", "gpt-4o-mini"}
    assert [r.outcome for r in reports].count("tripped") == 1
    totals = [line.split() for line in out.splitlines() if line.split()[:1] == ["total"]]
    cost = sum((r.cost_usd or Decimal(0) for r in reports), Decimal(0))
    assert len(totals) == 2 and all(Decimal(t[4]) == cost for t in totals)  # by user, by model
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") == 4
