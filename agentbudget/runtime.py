"""``instrument()``: route the SDK's runs through agentbudget's governed run pipeline.

``instrument()`` replaces ``AgentRunner.run`` and ``AgentRunner.run_streamed`` (which
``Runner.run``, ``Runner.run_sync`` and ``Runner.run_streamed`` all go through) and the
run loop's model resolution (``_sdk`` lists these private internals, each with its
reason). A run is *governed* when ``Guard.run`` started it, when a ``budget()`` scope is
active, when it is nested in a governed run (``Agent.as_tool``) or while an observer is
registered; ``pipeline`` runs it. Any other run goes straight to the SDK, untouched.
``uninstrument()`` restores exactly what was there. Both are idempotent.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from . import _sdk, compaction, pipeline
from ._sdk import SDK_RANGE, check_sdk
from .report import RunReport

__all__ = [
    "SDK_RANGE",
    "add_observer",
    "check_sdk",
    "instrument",
    "is_instrumented",
    "propagate",
    "remove_observer",
    "uninstrument",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


def instrument() -> None:
    """Route the SDK's runs through agentbudget. Idempotent; ungoverned runs are untouched.

    Raises:
        ConfigurationError: the installed ``openai-agents`` lacks an internal agentbudget
            patches (it is tested with the releases in ``SDK_RANGE``).
    """
    _sdk.install(
        pipeline.governed_run,
        pipeline.governed_run_streamed,
        pipeline.metered_get_model,
        compaction.metered_compaction_client,
    )


def uninstrument() -> None:
    """Restore exactly what ``instrument()`` replaced. Idempotent."""
    _sdk.uninstall()


def is_instrumented() -> bool:
    return _sdk.installed()


def add_observer(observer: Callable[[RunReport], None]) -> None:
    """Govern *every* run while ``observer`` is registered, and give it each run's report.

    The pytest plugin uses this to record the runs of a test, plain ``Runner`` calls
    included. Calls ``instrument()``.
    """
    instrument()
    pipeline.add_observer(observer)


def remove_observer(observer: Callable[[RunReport], None]) -> None:
    """Stop giving reports to ``observer`` (no error if it was not registered)."""
    pipeline.remove_observer(observer)


def propagate(fn: Callable[_P, _R]) -> Callable[_P, _R]:
    """Carry the governing context into another thread: ``fn``, to run there governed.

    Governance travels in context variables (the current run, ``Guard.run``'s request,
    ``budget()`` scopes). ``asyncio.to_thread`` copies them into its thread;
    ``loop.run_in_executor`` and ``ThreadPoolExecutor.submit`` do not, so a run started
    there (``Runner.run_sync`` in a tool's worker thread) would escape every limit and
    budget. Wrap the function where the work is handed over::

        await loop.run_in_executor(None, ab.propagate(work), arg)
        pool.submit(ab.propagate(work), arg)

    A run started by ``work`` is then nested in the run (or scope) that called
    ``propagate``: its calls count against that run's limits, user and budgets, and
    appear in its report. The context is captured when ``propagate`` is called; each
    call of the returned function runs in its own copy of it, so parallel calls do not
    share context changes.
    """
    context = contextvars.copy_context()

    @functools.wraps(fn)
    def governed(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        return context.copy().run(fn, *args, **kwargs)

    return governed
