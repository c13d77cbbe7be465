"""pytest plugin for ``nox -s sdk_suite``: runs the Agents SDK's own tests under agentbudget.

Loaded with ``-p agentbudget_sdk_mode``; ``AGENTBUDGET_SDK_MODE`` picks the mode:

- ``bare``: agentbudget is not touched.
- ``instrumented``: ``instrument()`` at start-up; no run is governed.
- ``scoped``: every test body runs inside a generous ``budget()`` scope (every limit set,
  none reachable), so every run the test makes is governed: metered models, wrapped
  hooks, the watchdog timer and the dollar-limit price checks all take part.

``AGENTBUDGET_SDK_OUTCOMES`` names a JSON file that receives ``{node id: outcome}``.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
from typing import Any

import pytest

import agentbudget as ab

MODE = os.environ.get("AGENTBUDGET_SDK_MODE", "scoped")
GENEROUS = {
    "max_tool_calls": 10**9,
    "max_llm_calls": 10**9,
    "max_tokens": 10**15,
    "max_cost_usd": "1000000",
    "max_seconds": 3600,
}
# The SDK's tests use made-up model names: a fallback price lets the dollar limit apply.
FALLBACK = ab.ModelPrice(
    input="1", output="2", cached_input="0.5", reasoning="2", cache_write_5m="1.25"
)

_outcomes: dict[str, str] = {}


def _scoped(fn: Any) -> Any:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            async with ab.budget(**GENEROUS):
                return await fn(*args, **kwargs)

        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with ab.budget(**GENEROUS):
            return fn(*args, **kwargs)

    return run


def pytest_configure(config: pytest.Config) -> None:
    if MODE not in ("bare", "instrumented", "scoped"):
        raise pytest.UsageError(f"AGENTBUDGET_SDK_MODE={MODE!r}: bare, instrumented or scoped")
    if MODE != "bare":
        ab.instrument()
    if MODE == "scoped":
        ab.configure(prices=ab.PriceTable.default().with_fallback(FALLBACK))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if MODE != "scoped":
        return
    for item in items:
        if isinstance(item, pytest.Function):
            item.obj = _scoped(item.obj)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    previous = _outcomes.get(report.nodeid, "passed")
    if hasattr(report, "wasxfail"):
        outcome = "xfailed" if report.skipped else "xpassed"
    elif report.failed:
        outcome = "failed" if report.when == "call" else "error"
    else:
        outcome = report.outcome
    if previous in ("failed", "error") or (previous == "skipped" and outcome == "passed"):
        return
    _outcomes[report.nodeid] = outcome


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:  # a test file that cannot be imported counts as one outcome
        _outcomes[report.nodeid] = "collection error"


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("AGENTBUDGET_SDK_OUTCOMES")
    if path:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(_outcomes, fh, indent=0, sort_keys=True)
