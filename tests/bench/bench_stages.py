"""What each stage of a governed run costs: every configuration's ratio to a bare run.

Run with ``nox -s bench`` or ``python tests/bench/bench_stages.py [RUNS] [--check]``.

Configurations, each adding one stage to the one before (so the step between two rows is
what that stage costs), all against bare ``Runner.run`` on the one-tool-call workload of
``bench_guard.py`` (``ScriptedModel``: a tool call, then an answer; tracing off):

- ``limits``: ``Guard(limits=...)`` with all five limits set (tool calls, LLM calls,
  tokens, dollars, seconds), nothing tripped;
- ``+ budgets``: ``Budgets`` on ``memory://`` (one per-user token allowance), ``user=``;
- ``+ sinks``: a ``JsonlSink`` behind the sink dispatcher (a temporary file);
- ``+ cache miss``: a ``ResponseCache`` on ``memory://``, every run a miss (``no_store``);
- ``+ context``: a ``ContextBudget`` (8,000 input tokens; never trims here);
- ``+ router``: a router stage routing every run to the agent's own scripted model
  (``ROUTER`` below): the stage's work without a model the workload cannot run.

and, for the streamed path, bare ``run_streamed`` against ``limits`` on a stream of
2,000 text deltas.

Each round runs every configuration once, back to back, in an order that rotates from
round to round (interleaved pairs with the bare run), so machine noise hits every arm; a
configuration's figure is the median over rounds of its run's CPU time (the calling
thread's: the sink worker's writes are off the call path) divided by the bare run's of
the same round (the wall-clock ratio is printed beside it, and the CPU
ratio's interquartile range as its noise). ``RUNS`` is the number of rounds (default
400; the stream runs a quarter as many).

``--check`` compares the ``limits`` ratios with ``baseline.json`` (next to this file) and
exits 1 when one exceeds its recorded ratio by more than its recorded noise: the
regression guard of ``nox -s bench``. See docs/performance.md to update the baseline.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from agents import Runner, set_tracing_disabled
from bench_guard import LIMITS, drain, stream_agent, tool_agent

import agentbudget as ab

BASELINE = Path(__file__).with_name("baseline.json")


class _KeepModel:
    """A router that routes every run to the starting agent's own (scripted) model: the
    stage's work - the request, the decision, the agent clone, the recorded route -
    without a model the scripted workload cannot run."""

    async def route(self, request: Any) -> ab.Route:
        return self.route_sync(request)

    def route_sync(self, request: Any) -> ab.Route:
        return ab.Route(model=request.agent.model, reason="bench: the agent's own model")


ROUTER: Callable[[], Any] | None = _KeepModel
"""Builds the router of the ``+ router`` configuration (``Guard(router=...)``)."""

Arm = Callable[[], Awaitable[Any]]


def configurations(jsonl: Path) -> list[tuple[str, Arm]]:
    """The arms of the tool-call workload: bare first, then one stage more per row."""
    budgets = ab.Budgets(
        store="memory://",
        allowances=[ab.Allowance(per="user", window="day", tokens=10**12)],
    )
    sink = ab.JsonlSink(jsonl)
    cache = ab.ResponseCache(store="memory://", cache_tool_runs=True)
    context = ab.ContextBudget(max_input_tokens=8_000)
    guards: list[tuple[str, ab.Guard, dict[str, Any]]] = [
        ("limits", ab.Guard(limits=LIMITS), {}),
        ("+ budgets", ab.Guard(limits=LIMITS, budgets=budgets), {"user": "u-1"}),
        (
            "+ sinks",
            ab.Guard(limits=LIMITS, budgets=budgets, sinks=[sink]),
            {"user": "u-1"},
        ),
        (
            "+ cache miss",
            ab.Guard(limits=LIMITS, budgets=budgets, sinks=[sink], cache=cache),
            {"user": "u-1", "no_store": True},
        ),
        (
            "+ context",
            ab.Guard(limits=LIMITS, budgets=budgets, sinks=[sink], cache=cache, context=context),
            {"user": "u-1", "no_store": True},
        ),
    ]
    if ROUTER is not None:
        guards.append(
            (
                "+ router",
                ab.Guard(
                    limits=LIMITS,
                    budgets=budgets,
                    sinks=[sink],
                    cache=cache,
                    context=context,
                    router=ROUTER(),
                ),
                {"user": "u-1", "no_store": True},
            )
        )
    arms: list[tuple[str, Arm]] = [("bare", lambda: Runner.run(tool_agent(), "question"))]
    for name, guard, kwargs in guards:
        arms.append((name, _guarded(guard, kwargs)))
    return arms


_FLUSH: list[ab.Guard] = []
"""The guards with sinks, flushed after every timed run."""


def _guarded(guard: ab.Guard, kwargs: dict[str, Any]) -> Arm:
    if guard.sinks:
        _FLUSH.append(guard)
    return lambda: guard.run(tool_agent(), "question", **kwargs)


def stream_configurations() -> list[tuple[str, Arm]]:
    guard = ab.Guard(limits=LIMITS)
    return [
        ("bare", lambda: drain(Runner.run_streamed(stream_agent(), "question"))),
        ("limits", lambda: drain(guard.run_streamed(stream_agent(), "question"))),
    ]


async def _once(fn: Arm) -> tuple[float, float]:
    """Wall and CPU seconds of one call of ``fn``, then every guard's sinks flushed (not
    timed), so no run's report is written while another arm is timed.

    CPU is this thread's (``time.thread_time``): the call path runs here, and the sink
    dispatcher's worker thread, whose writes are off the call path by design, would
    otherwise charge its work to whichever arm runs beside it.
    """
    wall, cpu = time.perf_counter(), time.thread_time()
    await fn()
    took = time.perf_counter() - wall, time.thread_time() - cpu
    for guard in _FLUSH:
        guard.flush()
    return took


async def measure(arms: list[tuple[str, Arm]], rounds: int) -> list[dict[str, Any]]:
    """Per arm: median per-run wall and CPU ms, median CPU and wall ratios to bare, and the
    interquartile range of the CPU ratio (its noise)."""
    for _ in range(5):  # warm up every path (imports, encoders, caches)
        for _, fn in arms:
            await fn()
    # The SDK's import leaves ~160k objects for the cyclic GC to walk; a full collection
    # landing in one arm would swamp the difference. Freeze them, collect now and then
    # outside the timed calls.
    gc.collect()
    gc.freeze()
    took: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in arms}
    for r in range(rounds):
        if r % 20 == 0:
            gc.collect()
        shift = r % len(arms)
        for name, fn in arms[shift:] + arms[:shift]:
            took[name].append(await _once(fn))
    bare = took["bare"]
    rows = []
    for name, _ in arms:
        cpu_ratios = [t[1] / b[1] for t, b in zip(took[name], bare, strict=True)]
        wall_ratios = [t[0] / b[0] for t, b in zip(took[name], bare, strict=True)]
        quartiles = statistics.quantiles(cpu_ratios, n=4)
        rows.append(
            {
                "configuration": name,
                "wall_ms": statistics.median(t[0] for t in took[name]) * 1000,
                "cpu_ms": statistics.median(t[1] for t in took[name]) * 1000,
                "wall_ratio": statistics.median(wall_ratios),
                "cpu_ratio": statistics.median(cpu_ratios),
                "iqr": quartiles[2] - quartiles[0],
            }
        )
    return rows


async def main(runs: int = 400) -> dict[str, list[dict[str, Any]]]:
    set_tracing_disabled(True)
    ab.instrument()  # every arm runs with agentbudget installed, as users would
    with tempfile.TemporaryDirectory() as tmp:
        tool = await measure(configurations(Path(tmp) / "runs.jsonl"), runs)
        stream = await measure(stream_configurations(), max(runs // 4, 2))
    return {"tool": tool, "stream": stream}


def table(results: dict[str, list[dict[str, Any]]]) -> str:
    lines = []
    for workload, rows in results.items():
        lines.append(
            f"{workload:<7}{'configuration':<14} {'CPU ms':>8} {'wall ms':>8} "
            f"{'CPU ratio':>10} {'wall ratio':>11} {'CPU IQR':>8}"
        )
        for row in rows:
            lines.append(
                f"{'':<7}{row['configuration']:<14} {row['cpu_ms']:>8.3f} {row['wall_ms']:>8.3f} "
                f"{row['cpu_ratio']:>10.3f} {row['wall_ratio']:>11.3f} {row['iqr']:>8.3f}"
            )
    return "\n".join(lines)


def check(results: dict[str, list[dict[str, Any]]], baseline: dict[str, Any]) -> list[str]:
    """The regressions: a ``limits`` ratio above its recorded ratio plus its noise."""
    failures = []
    for workload, rows in results.items():
        recorded = baseline.get(workload)
        if recorded is None:
            continue
        ratio = next(r["cpu_ratio"] for r in rows if r["configuration"] == "limits")
        allowed = recorded["ratio"] + recorded["noise"]
        if ratio > allowed:
            failures.append(
                f"{workload}: limits-only CPU ratio {ratio:.3f} > recorded "
                f"{recorded['ratio']:.3f} + noise {recorded['noise']:.3f}"
            )
    return failures


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--check"]
    out = asyncio.run(main(int(args[0]) if args else 400))
    print(table(out))
    if "--check" in sys.argv[1:]:
        problems = check(out, json.loads(BASELINE.read_text()))
        for problem in problems:
            print("FAIL:", problem)
        if problems:
            sys.exit(1)
        print(f"OK: limits-only ratios within {BASELINE.name}")
