"""Monitoring: six governed runs into a SQLite ledger, then `agentbudget report` and its HTML.

Offline: scripted models with real accounting (gpt-4o and gpt-4o-mini at their bundled
prices), three users, one run stopped by a circuit breaker. Pass a directory to keep the
ledger and the HTML page; by default they go to a temporary directory.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from agents import Agent, function_tool, set_tracing_disabled

import agentbudget as ab
from agentbudget.cli import main as agentbudget
from agentbudget.testing import reply, scripted_model, tool_loop

# (user, model, input tokens, output tokens) of each question
RUNS = [
    ("alice", "gpt-4o", 1_200, 300),
    ("alice", "gpt-4o-mini", 800, 200),
    ("bob", "gpt-4o", 2_000, 500),
    ("bob", "gpt-4o-mini", 400, 100),
    ("carol", "gpt-4o-mini", 600, 150),
]


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up an order."""
    return f"order {order_id}: shipped"


async def run_six(ledger: ab.SQLiteLedger) -> list[ab.RunReport]:
    """Five answered questions and one runaway tool loop that trips ``max_tool_calls``."""
    set_tracing_disabled(True)
    guard = ab.Guard(limits=ab.Limits(max_tool_calls=3), sinks=[ledger])
    reports = []
    for user, model, inp, out in RUNS:
        agent = Agent(
            name="support",
            model=scripted_model(model, [reply("Shipped.", input_tokens=inp, output_tokens=out)]),
        )
        result = await guard.run(agent, "Where is my order?", user=user, team="support")
        reports.append(ab.report_of(result))
    looping = Agent(
        name="researcher",
        tools=[lookup_order],
        model=scripted_model(
            "gpt-4o", tool_loop("lookup_order", times=100, arguments={"order_id": "A-17"})
        ),
    )
    try:
        await guard.run(looping, "Find every order", user="carol", team="research")
    except ab.AgentBudgetExceeded as exc:  # the 4th tool call never runs
        assert exc.report is not None
        reports.append(exc.report)
    await guard.aflush()  # the ledger is written by a worker thread: wait for it
    return reports


async def main(directory: str | Path) -> list[ab.RunReport]:
    directory = Path(directory)
    ledger = ab.SQLiteLedger(directory / "spend.db")
    reports = await run_six(ledger)
    ledger.close()
    # The command line, called in process: `agentbudget report spend.db --by ...`
    agentbudget(["report", str(ledger.path), "--by", "user"])
    agentbudget(
        ["report", str(ledger.path), "--by", "model", "--html", str(directory / "report.html")]
    )
    return reports


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            asyncio.run(main(scratch))
