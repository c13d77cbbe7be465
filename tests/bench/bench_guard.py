"""Overhead of Guard.run over bare Runner.run, measured side by side in one process.

Run with ``nox -s bench`` or ``python tests/bench/bench_guard.py [ROUNDS]``. Each round
times a block of bare runs and a block of guarded runs back to back (order alternating),
so machine noise hits both; the figure is the median of the per-round ratios. The ratio
is taken on the process's CPU time, which time stolen by other tenants of this virtual
machine does not inflate; the wall-clock ratio is printed beside it.

The SDK's import-time objects are frozen out of the cyclic GC (``gc.freeze()``) and a
collection runs between rounds, so a full collection cannot land in one arm only.

Scenarios (ScriptedModel, tracing off):
- tool: one tool call, then an answer; limits on, nothing tripped.
- stream: a streamed answer of 2,000 text deltas; limits on, nothing tripped.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled

import agentbudget as ab
from agentbudget.testing import long_stream, reply, scripted_model, tool_call

LIMITS = ab.Limits(
    max_tool_calls=100, max_llm_calls=100, max_tokens=10_000_000, max_cost_usd="100", max_seconds=60
)


@function_tool
def lookup(q: str) -> str:
    """Look something up."""
    return "found " + q


def tool_agent() -> Agent[Any]:
    return Agent(
        name="bench",
        instructions="Answer briefly.",
        tools=[lookup],
        model=scripted_model("gpt-4o", [tool_call("lookup", {"q": "x"}), reply("done")]),
    )


def stream_agent() -> Agent[Any]:
    return Agent(name="bench", model=scripted_model("gpt-4o", [long_stream(2_000)]))


async def drain(result: Any) -> None:
    async for _ in result.stream_events():
        pass


async def time_block(fn: Callable[[], Awaitable[Any]], runs: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``runs`` back-to-back calls of ``fn``."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(runs):
        await fn()
    return time.perf_counter() - wall, time.process_time() - cpu


async def measure(
    name: str,
    bare: Callable[[], Awaitable[Any]],
    guarded: Callable[[], Awaitable[Any]],
    rounds: int,
    inner: int,
) -> dict[str, Any]:
    for _ in range(5):  # warm up both paths (imports, encoders, caches)
        await bare()
        await guarded()
    # The SDK's import leaves ~160k objects for the cyclic GC to walk; a full collection
    # landing in one arm would swamp the difference. Freeze them, and collect between
    # rounds, so both arms run under the same GC conditions.
    gc.collect()
    gc.freeze()
    walls: dict[str, list[float]] = {"bare": [], "guard": [], "ratio": []}
    cpus: dict[str, list[float]] = {"bare": [], "guard": [], "ratio": []}
    for r in range(rounds):
        gc.collect()
        arms = [("bare", bare), ("guard", guarded)]
        if r % 2:
            arms.reverse()
        took = {arm: await time_block(fn, inner) for arm, fn in arms}
        for index, series in ((0, walls), (1, cpus)):
            series["bare"].append(took["bare"][index] / inner)
            series["guard"].append(took["guard"][index] / inner)
            series["ratio"].append(took["guard"][index] / took["bare"][index])
    return {
        "scenario": name,
        "bare_ms": statistics.median(walls["bare"]) * 1000,
        "guard_ms": statistics.median(walls["guard"]) * 1000,
        "wall_ratio": statistics.median(walls["ratio"]),
        "ratio": statistics.median(cpus["ratio"]),
    }


async def main(rounds: int = 30) -> list[dict[str, Any]]:
    set_tracing_disabled(True)
    guard = ab.Guard(limits=LIMITS)
    ab.instrument()  # both sides run with agentbudget installed, as users would
    results = [
        await measure(
            "tool call + answer",
            lambda: Runner.run(tool_agent(), "question"),
            lambda: guard.run(tool_agent(), "question"),
            rounds,
            inner=20,
        ),
        await measure(
            "stream of 2,000 deltas",
            lambda: drain(Runner.run_streamed(stream_agent(), "question")),
            lambda: drain(guard.run_streamed(stream_agent(), "question")),
            rounds,
            inner=3,
        ),
    ]
    return results


def report(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'scenario':<24} {'bare ms':>9} {'guard ms':>9} {'wall ratio':>11} {'CPU ratio':>10}"
        "  (limit 1.10, on CPU time)"
    ]
    for r in results:
        lines.append(
            f"{r['scenario']:<24} {r['bare_ms']:>9.3f} {r['guard_ms']:>9.3f} "
            f"{r['wall_ratio']:>11.3f} {r['ratio']:>10.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    out = asyncio.run(main(rounds))
    print(report(out))
    if any(r["ratio"] > 1.10 for r in out):
        print("FAIL: overhead ratio above 1.10")
        sys.exit(1)
