"""Where the microseconds of a governed run go, stage by stage (the table in docs/performance.md).

Run with ``python tests/bench/profile_stages.py [RUNS]``. Each stage's entry points are
wrapped with a timer (``perf_counter_ns``; a stage's time excludes the timed stages it
calls, and the wrapper's own cost, measured on an empty function, is subtracted), then
``RUNS`` guarded runs of ``bench_guard``'s one-tool-call workload are timed. The
figure per stage is the median over runs of the microseconds spent inside it per run.
It is a profile, not a benchmark: the wrappers add
work, so the ratio of the whole comes from ``bench_stages.py``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import inspect
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from agents import set_tracing_disabled
from bench_guard import LIMITS, tool_agent

import agentbudget as ab
from agentbudget import accounts, guard, hooks, interceptor, pipeline

_spent: defaultdict[str, int] = defaultdict(int)
_calls: defaultdict[str, int] = defaultdict(int)
_children: list[int] = []
"""Per timed call in progress: the time its timed callees took (charged to them)."""


def _timed(stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` charging its own time, less its timed callees', to ``stage``."""

    def enter() -> int:
        _children.append(0)
        return time.perf_counter_ns()

    def leave(t: int) -> None:
        took = time.perf_counter_ns() - t
        inner = _children.pop()
        _spent[stage] += took - inner
        _calls[stage] += 1
        if _children:
            _children[-1] += took

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            t = enter()
            try:
                return await fn(*args, **kwargs)
            finally:
                leave(t)

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        t = enter()
        try:
            return fn(*args, **kwargs)
        finally:
            leave(t)

    return run


STAGES: dict[str, list[tuple[Any, str]]] = {
    "begin": [
        (guard.Guard, "_request"),
        (pipeline.GovernedRun, "begin"),
        (pipeline.GovernedRun, "_enter"),
        (pipeline._Watchdog, "start"),
        (pipeline._Watchdog, "cancel"),
    ],
    "get_model (proxy)": [(pipeline, "metered_get_model")],
    "hooks": [
        (hooks.MeterHooks, name)
        for name in (
            "on_agent_start",
            "on_llm_start",
            "on_llm_end",
            "on_tool_start",
            "on_tool_end",
            "on_agent_end",
        )
    ],
    "holds": [(interceptor, "hold"), (interceptor, "release")],
    "plan/estimate": [(interceptor.MeteredModel, "plan")],
    "settle/pricing": [
        (interceptor.MeteredModel, "_paid_usage"),
        (interceptor.MeteredModel, "_settle"),
        (interceptor.MeteredModel, "_settle_now"),
        (interceptor.MeteredModel, "_after_response"),
    ],
    "finish (report)": [(pipeline.GovernedRun, "finish")],
    "report (read)": [(ab, "report_of")],
}


def _install() -> None:
    for stage, targets in STAGES.items():
        for owner, name in targets:
            raw = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
            if isinstance(raw, classmethod):
                setattr(owner, name, classmethod(_timed(stage, raw.__func__)))
            else:
                setattr(owner, name, _timed(stage, raw))
    # the pipeline reaches these through its module globals
    pipeline.MeterHooks = hooks.MeterHooks  # type: ignore[misc]
    _ = accounts


def _wrapper_cost() -> float:
    """Nanoseconds one timer wrapper adds to a call (measured on an empty function)."""
    empty = _timed("_calibration", lambda: None)
    bare = lambda: None  # noqa: E731
    n = 200_000
    t = time.perf_counter_ns()
    for _ in range(n):
        bare()
    base = time.perf_counter_ns() - t
    t = time.perf_counter_ns()
    for _ in range(n):
        empty()
    return (time.perf_counter_ns() - t - base) / n


async def main(runs: int) -> dict[str, tuple[float, float]]:
    set_tracing_disabled(True)
    ab.instrument()
    g = ab.Guard(limits=LIMITS)
    _install()
    # the runtime patch points at pipeline.metered_get_model: re-install it
    ab.uninstrument()
    ab.instrument()
    overhead = _wrapper_cost()
    for _ in range(20):
        ab.report_of(await g.run(tool_agent(), "question"))
    gc.collect()
    gc.freeze()
    per_run: defaultdict[str, list[float]] = defaultdict(list)
    for _ in range(runs):
        _spent.clear()
        _calls.clear()
        result = await g.run(tool_agent(), "question")
        ab.report_of(result)  # a reader: the report is built here
        for stage in STAGES:
            net = _spent.get(stage, 0) - _calls.get(stage, 0) * overhead
            per_run[stage].append(net / 1000)
    return {
        stage: (statistics.median(values), statistics.quantiles(values, n=4)[2])
        for stage, values in per_run.items()
    }


if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    out = asyncio.run(main(runs))
    print(f"{'stage':<20} {'median us/run':>14} {'p75':>8}")
    for stage, (median, p75) in out.items():
        print(f"{stage:<20} {median:>14.1f} {p75:>8.1f}")
    print(f"{'sum':<20} {sum(m for m, _ in out.values()):>14.1f}")
