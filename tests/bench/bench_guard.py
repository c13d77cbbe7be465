"""Overhead of Guard.run over bare Runner.run, measured side by side in one process.

Run with ``nox -s bench`` or ``python tests/bench/bench_guard.py``. Each round times the
bare run and the guarded run back to back (order alternating), so machine noise hits
both; the figure is the median of the per-round ratios.

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


async def time_once(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


async def measure(
    name: str,
    bare: Callable[[], Awaitable[Any]],
    guarded: Callable[[], Awaitable[Any]],
    rounds: int,
    inner: int,
) -> dict[str, float]:
    for _ in range(5):  # warm up both paths (imports, encoders, caches)
        await bare()
        await guarded()
    # The SDK's import leaves ~160k objects for the cyclic GC to walk; a full collection
    # landing in one arm would swamp the difference. Freeze them, and collect between
    # rounds, so both arms run under the same GC conditions.
    gc.collect()
    gc.freeze()
    ratios, bare_times, guard_times = [], [], []
    for r in range(rounds):
        gc.collect()
        pair = [bare, guarded] if r % 2 == 0 else [guarded, bare]
        times = {}
        for fn in pair:
            total = 0.0
            for _ in range(inner):
                total += await time_once(fn)
            times[fn] = total / inner
        bare_times.append(times[bare])
        guard_times.append(times[guarded])
        ratios.append(times[guarded] / times[bare])
    return {
        "scenario": name,  # type: ignore[dict-item]
        "bare_ms": statistics.median(bare_times) * 1000,
        "guard_ms": statistics.median(guard_times) * 1000,
        "ratio": statistics.median(ratios),
    }


async def main(rounds: int = 30) -> list[dict[str, float]]:
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


def report(results: list[dict[str, float]]) -> str:
    lines = [f"{'scenario':<24} {'bare ms':>9} {'guard ms':>9} {'ratio':>7}  (limit 1.10)"]
    for r in results:
        lines.append(
            f"{r['scenario']:<24} {r['bare_ms']:>9.3f} {r['guard_ms']:>9.3f} {r['ratio']:>7.3f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    out = asyncio.run(main(rounds))
    print(report(out))
    if any(r["ratio"] > 1.10 for r in out):
        print("FAIL: overhead ratio above 1.10")
        sys.exit(1)
