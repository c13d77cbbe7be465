"""What writing to a ledger adds to a run on the call path.

Run with ``nox -s bench`` or ``python tests/bench/bench_ledger.py [ROUNDS]``. Two guards
with the same limits, one with a ``SQLiteLedger`` sink, run the one-tool-call workload in
alternating blocks; the figure is the median over rounds of the per-run difference in the
*calling thread's* CPU time (``time.thread_time``), which is the call path: the ledger's
rows are written by the dispatcher's worker thread, whose time is not the run's. The
wall-clock difference is printed beside it. Each round's reports are flushed to the
ledger outside the timed blocks, so the worker keeps up and the queue never fills.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agents import set_tracing_disabled

import agentbudget as ab

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_guard import LIMITS, tool_agent

INNER = 20
LIMIT_US = 50.0


async def block(guard: ab.Guard) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    for _ in range(INNER):
        await guard.run(tool_agent(), "question", user="u-1")
    return (time.perf_counter() - wall) / INNER, (time.thread_time() - cpu) / INNER


async def main(rounds: int) -> tuple[float, float, int]:
    set_tracing_disabled(True)
    with tempfile.TemporaryDirectory() as scratch:
        ledger = ab.SQLiteLedger(Path(scratch) / "spend.db")
        plain = ab.Guard(limits=LIMITS)
        ledgered = ab.Guard(limits=LIMITS, sinks=[ledger])
        for _ in range(5):
            await plain.run(tool_agent(), "warm")
            await ledgered.run(tool_agent(), "warm")
        await ledgered.aflush()
        gc.collect()
        gc.freeze()
        walls: list[float] = []
        cpus: list[float] = []
        for r in range(rounds):
            gc.collect()
            arms = [("plain", plain), ("ledger", ledgered)]
            if r % 2:
                arms.reverse()
            took = {name: await block(guard) for name, guard in arms}
            walls.append(took["ledger"][0] - took["plain"][0])
            cpus.append(took["ledger"][1] - took["plain"][1])
            assert await ledgered.aflush(timeout=30)
        await ledgered.aclose()
        rows = sum(row.runs for row in ledger.summary(by="user"))
        ledger.close()
    return statistics.median(cpus) * 1e6, statistics.median(walls) * 1e6, rows


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    cpu_us, wall_us, rows = asyncio.run(main(rounds))
    head = f"{'ledger on the call path':<28} {'CPU us/run':>11} {'wall us/run':>12}"
    print(f"{head}  (limit {LIMIT_US:g} us)")
    print(f"{'SQLiteLedger via dispatcher':<28} {cpu_us:>11.1f} {wall_us:>12.1f}")
    print(f"rows written: {rows} runs (5 warm-up + {rounds} x {INNER})")
