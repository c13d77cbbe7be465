"""A response cache hit against a bare ``ScriptedModel`` run, side by side in one process.

Run with ``nox -s bench`` or ``python tests/bench/bench_cache.py [ROUNDS]``. Each round
times a block of bare ``Runner.run`` calls (no agentbudget governance) and a block of
``Guard.run`` calls answered from a ``memory://`` cache, back to back (order
alternating); the figure is the median of the per-round ratios of CPU time (the
wall-clock ratio is printed beside it). Acceptance: a hit takes at most 0.05 of a bare
run.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from typing import Any

from agents import Agent, Runner, set_tracing_disabled

import agentbudget as ab
from agentbudget.testing import reply, scripted_model

BLOCK = 50
QUESTION = "When will my order ship?"


def agent(runs: int) -> Agent[Any]:
    return Agent(
        name="bench",
        instructions="Answer the customer's question in one sentence.",
        model=scripted_model("gpt-4o", [reply("Orders ship within two days.")] * runs),
    )


async def block(run: Any) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(BLOCK):
        await run()
    return time.perf_counter() - wall, time.process_time() - cpu


async def main(rounds: int) -> float:
    set_tracing_disabled(True)
    ab.instrument()  # both arms run with agentbudget installed; only the hit is governed
    guard = ab.Guard(cache=ab.ResponseCache())
    cached = agent(1)
    await guard.run(cached, QUESTION, user="u")  # stored: every further run is a hit

    async def hit() -> None:
        result = await guard.run(cached, QUESTION, user="u")
        assert ab.report_of(result).cache_hit

    gc.collect()
    gc.freeze()
    bare_wall: list[float] = []
    bare_cpu: list[float] = []
    hit_wall: list[float] = []
    hit_cpu: list[float] = []
    ratios: list[float] = []
    wall_ratios: list[float] = []
    for n in range(rounds):
        bare_agent = agent(BLOCK)

        async def bare(a: Agent[Any] = bare_agent) -> None:
            await Runner.run(a, QUESTION)

        gc.collect()
        if n % 2:
            b, h = await block(bare), await block(hit)
        else:
            h, b = await block(hit), await block(bare)
        bare_wall.append(b[0] / BLOCK)
        bare_cpu.append(b[1] / BLOCK)
        hit_wall.append(h[0] / BLOCK)
        hit_cpu.append(h[1] / BLOCK)
        ratios.append(h[1] / b[1] if b[1] else float("nan"))
        wall_ratios.append(h[0] / b[0])
    ratio = statistics.median(ratios)
    print(f"{'':<28}{'bare Runner.run':>18}{'cache hit':>14}{'wall ratio':>12}{'CPU ratio':>12}")
    print(
        f"{'one answer, ScriptedModel':<28}"
        f"{statistics.median(bare_wall) * 1e3:>15.3f} ms"
        f"{statistics.median(hit_wall) * 1e3:>11.3f} ms"
        f"{statistics.median(wall_ratios):>12.3f}{ratio:>12.3f}"
    )
    print(
        f"median CPU per run: bare {statistics.median(bare_cpu) * 1e6:.0f} us, "
        f"hit {statistics.median(hit_cpu) * 1e6:.0f} us ({rounds} rounds of {BLOCK})"
    )
    return ratio


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    ratio = asyncio.run(main(rounds))
    sys.exit(0 if ratio <= 0.05 else 1)
