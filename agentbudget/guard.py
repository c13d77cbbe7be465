"""``Guard``: run agents with limits, exact prices and reports."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from agents import Agent, Runner
from agents.result import RunResult, RunResultStreaming

from .budgets import Budgets
from .errors import ConfigurationError
from .limits import Limits
from .pricing import PriceTable
from .report import RunReport
from .runtime import GUARD_REQUEST, GuardRequest, instrument
from .sinks import CostSink
from .stores.base import check_id

__all__ = ["Guard", "configure", "default_guard"]

logger = logging.getLogger("agentbudget")


def _check_id(name: str, value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigurationError(f"{name} must be a non-empty string or None, got {value!r}")
    if value is not None:
        check_id(name, value)  # valid Unicode: a lone surrogate cannot reach a store


class Guard:
    """Runs agents under per-run limits, prices every LLM call and sends reports to sinks.

    With no limit hit, ``run`` returns exactly what ``Runner.run`` returns; the
    ``RunReport`` is available through ``report_of(result)``.

    Args:
        limits: per-run circuit breakers (also applied to each run inside ``budget()``
            scopes when this is the default guard).
        prices: the price table; ``PriceTable.default()`` when omitted.
        budgets: per-user, per-team and global allowances (``Budgets``).
        sinks: where each run's report goes (``LogSink``, ``JsonlSink``, any ``CostSink``).
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        prices: PriceTable | None = None,
        budgets: Budgets | None = None,
        sinks: Iterable[CostSink] = (),
    ) -> None:
        if budgets is not None and not isinstance(budgets, Budgets):
            raise ConfigurationError(f"budgets must be an agentbudget.Budgets, got {budgets!r}")
        self.budgets = budgets
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be an agentbudget.Limits, got {limits!r}")
        if prices is not None and not isinstance(prices, PriceTable):
            raise ConfigurationError(f"prices must be an agentbudget.PriceTable, got {prices!r}")
        self.limits = limits or Limits()
        self.prices = prices or PriceTable.default()
        self.sinks = list(sinks)
        for sink in self.sinks:
            if not callable(getattr(sink, "record", None)):
                raise ConfigurationError(f"sink {sink!r} has no record(report) method")

    def emit(self, report: RunReport) -> None:
        """Send a report to every sink; a failing sink is logged, the others still run."""
        for sink in self.sinks:
            try:
                sink.record(report)
            except Exception:
                logger.exception(
                    "agentbudget: sink %r failed to record run %s", sink, report.run_id
                )

    def _request(self, user: str | None, team: str | None) -> GuardRequest:
        _check_id("user", user)
        _check_id("team", team)
        instrument()
        return GuardRequest(guard=self, user=user, team=team)

    async def run(
        self,
        agent: Agent[Any],
        input: Any,
        *,
        user: str | None = None,
        team: str | None = None,
        **runner_kwargs: Any,
    ) -> RunResult:
        """Run ``agent`` like ``Runner.run``, under this guard.

        Raises:
            AgentBudgetExceeded: a limit stopped the run (``.report`` has the spend so far).
            UnknownModelError: a dollar limit applies and the model has no price.
        """
        token = GUARD_REQUEST.set(self._request(user, team))
        try:
            return await Runner.run(agent, input, **runner_kwargs)
        finally:
            GUARD_REQUEST.reset(token)

    def run_sync(
        self,
        agent: Agent[Any],
        input: Any,
        *,
        user: str | None = None,
        team: str | None = None,
        **runner_kwargs: Any,
    ) -> RunResult:
        """Run ``agent`` like ``Runner.run_sync``, under this guard."""
        token = GUARD_REQUEST.set(self._request(user, team))
        try:
            return Runner.run_sync(agent, input, **runner_kwargs)
        finally:
            GUARD_REQUEST.reset(token)

    def run_streamed(
        self,
        agent: Agent[Any],
        input: Any,
        *,
        user: str | None = None,
        team: str | None = None,
        **runner_kwargs: Any,
    ) -> RunResultStreaming:
        """Run ``agent`` like ``Runner.run_streamed``, under this guard.

        The stream is cut the moment a limit would be crossed; ``stream_events()`` then
        raises the ``AgentBudgetExceeded``.
        """
        token = GUARD_REQUEST.set(self._request(user, team))
        try:
            return Runner.run_streamed(agent, input, **runner_kwargs)
        finally:
            GUARD_REQUEST.reset(token)


_default_lock = threading.Lock()
_default: Guard | None = None


def configure(
    *,
    limits: Limits | None = None,
    prices: PriceTable | None = None,
    budgets: Budgets | None = None,
    sinks: Iterable[CostSink] = (),
) -> Guard:
    """Set the process-wide default ``Guard`` that ``budget()`` scopes use. Returns it."""
    global _default
    guard = Guard(limits=limits, prices=prices, budgets=budgets, sinks=sinks)
    with _default_lock:
        _default = guard
    return guard


def default_guard() -> Guard:
    """The process-wide default ``Guard`` (``configure()`` sets it)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Guard()
        return _default


def reset_default_guard() -> None:
    """Forget the configured default guard (tests use this)."""
    global _default
    with _default_lock:
        _default = None
