"""A cost ledger: every governed run written to SQLite, then spend per user and per model.

Offline: scripted models with real accounting (gpt-4o and gpt-4o-mini at their bundled
prices). Pass a path to keep the ledger file; by default it goes to a temporary directory.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from agents import Agent, set_tracing_disabled

import agentbudget as ab
from agentbudget.testing import reply, scripted_model

# (user, model, input tokens, output tokens) of each question
RUNS = [
    ("alice", "gpt-4o", 1_200, 300),
    ("alice", "gpt-4o-mini", 800, 200),
    ("bob", "gpt-4o", 2_000, 500),
    ("bob", "gpt-4o-mini", 400, 100),
    ("carol", "gpt-4o-mini", 600, 150),
    ("carol", "gpt-4o", 3_000, 800),
]


async def main(path: str | Path) -> list[ab.RunReport]:
    set_tracing_disabled(True)
    ledger = ab.SQLiteLedger(path)
    guard = ab.Guard(sinks=[ledger])  # each run's report goes to the ledger, off the call path
    reports = []
    for user, model, inp, out in RUNS:
        agent = Agent(
            name="support",
            model=scripted_model(model, [reply("Shipped.", input_tokens=inp, output_tokens=out)]),
        )
        result = await guard.run(agent, "Where is my order?", user=user, team="support")
        reports.append(ab.report_of(result))
    await guard.aflush()  # the ledger is written by a worker thread: wait for it

    for by in ("user", "model"):
        print(f"{'by ' + by:<14} {'runs':>4} {'input':>7} {'output':>7} {'cost (USD)':>12}")
        for row in ledger.summary(by=by):
            print(
                f"{row.key:<14} {row.runs:>4} {row.input_tokens:>7} {row.output_tokens:>7} "
                f"{row.cost_usd:>12}"
            )
        print()
    total = sum((r.cost_usd or Decimal(0) for r in reports), Decimal(0))
    print(f"total: ${total} over {len(ledger.runs(limit=None))} runs in {ledger.path}")
    ledger.close()
    return reports


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(sys.argv[1]))
    else:
        with tempfile.TemporaryDirectory() as scratch:
            asyncio.run(main(Path(scratch) / "spend.db"))
