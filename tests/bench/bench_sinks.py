"""Cost of handing a report to a sink on the call path: ``SinkDispatcher.submit`` against
calling ``JsonlSink.record`` inline (what ``Guard.emit`` did before the dispatcher).

Run with ``nox -s bench`` or ``python tests/bench/bench_sinks.py [ROUNDS]``. Each round
times a block of inline records and a block of submits back to back (order alternating),
so machine noise hits both; the figures are medians over rounds of the wall-clock time
per report seen by the caller. The dispatcher's worker writes the same file meanwhile
(its flush is outside the timed block): that is the point, it is off the call path.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from agentbudget.report import RunReport
from agentbudget.sinks import JsonlSink, SinkDispatcher

BLOCK = 200


def main(rounds: int = 15) -> None:
    reports = [
        RunReport(
            run_id=f"run-{i}",
            user="u-42",
            agent="support",
            input_tokens=1200,
            output_tokens=300,
            total_tokens=1500,
            cost_usd=Decimal("0.0123"),
            started_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        )
        for i in range(BLOCK)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        inline = JsonlSink(Path(tmp) / "inline.jsonl")
        dispatcher = SinkDispatcher([JsonlSink(Path(tmp) / "dispatched.jsonl")])
        dispatcher.submit(reports[0])  # start the worker outside the timed blocks
        dispatcher.flush()
        inline_us: list[float] = []
        submit_us: list[float] = []
        for n in range(rounds):
            for arm in ("inline", "submit") if n % 2 == 0 else ("submit", "inline"):
                started = time.perf_counter()
                if arm == "inline":
                    for report in reports:
                        inline.record(report)
                else:
                    for report in reports:
                        dispatcher.submit(report)
                per_report = (time.perf_counter() - started) / BLOCK * 1e6
                (inline_us if arm == "inline" else submit_us).append(per_report)
                dispatcher.flush()
        dispatcher.close()
        written = len(JsonlSink(Path(tmp) / "dispatched.jsonl").read())
    inline_med, submit_med = statistics.median(inline_us), statistics.median(submit_us)
    print(f"per report on the call path, median of {rounds} rounds of {BLOCK} reports:")
    print(f"  JsonlSink.record inline   {inline_med:8.2f} us")
    print(f"  SinkDispatcher.submit     {submit_med:8.2f} us")
    print(f"  ratio inline / submit     {inline_med / submit_med:8.1f}x")
    print(f"  (the dispatcher delivered {written} reports; the worker batches its writes)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 15)
