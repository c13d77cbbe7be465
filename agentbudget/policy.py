"""``RunPolicy``: what governs a run, frozen when the run starts; and the stage interface.

``Guard`` and ``configure()`` build a policy; every governed run holds the policy it
started with (``RunMeter.policy``), so per-run state never reaches back into the facade.
A policy names the per-run limits, the price table, the budgets, where reports go
(sinks, behind one dispatcher) and the *stages* of the governed run pipeline.

A stage is one capability on the run path (the response cache, the router, context
budgets): ``pipeline.GovernedRun`` calls each configured stage's ``begin`` before the
SDK runs and its ``finish`` with the run's report. A policy without stages runs none:
an unconfigured capability costs nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from agents import Agent

from .alerts import Alerts
from .budgets import Budgets
from .limits import Limits
from .pricing import PriceTable
from .report import Route, RunReport
from .sinks import CostSink, SinkDispatcher
from .sinks.dispatch import Deferred

__all__ = ["RunPolicy", "Stage", "StageRun", "default_policy", "set_default_policy"]


class StageRun(Protocol):
    """What a stage sees of (and may change in) the run it is part of."""

    agent: Agent[Any]
    """The starting agent: a stage may replace it (a router's clone with another model)."""
    input: Any
    """The run's input: a stage may replace it."""
    kwargs: dict[str, Any]
    """The other ``Runner`` arguments (``run_config``, ``context``, ``max_turns``...): a
    stage may change them (a context budget composes ``call_model_input_filter``)."""
    streamed: bool
    """True for ``run_streamed``: ``begin`` must then finish synchronously."""
    replay: Any
    """Set by a stage to a result to return instead of running the SDK (a cache hit)."""
    state: dict[object, Any]
    """Per-run scratch space for stages, keyed by the stage (what ``begin`` leaves for
    ``finish``)."""
    cache_hit: bool
    """Set by the response cache when ``replay`` is a cached answer (copied to the report)."""
    saved_usd: Decimal
    """Set with ``cache_hit``: what the cached run cost (copied to the report)."""

    route: Route | None
    """Set by the router: the model it chose (copied to the report)."""
    fallback: Any
    """Set by a fallback router: a ``meter.FallbackChain`` for the routed agent's calls."""

    @property
    def nested(self) -> bool:
        """True for a run nested in another governed run (``Agent.as_tool``)."""
        ...

    def as_current(self) -> Any:
        """Make this the current governed run (returns the ``contextvars`` token to reset)."""
        ...

    @property
    def user(self) -> str | None: ...

    @property
    def team(self) -> str | None: ...

    @property
    def policy(self) -> RunPolicy: ...


@runtime_checkable
class Stage(Protocol):
    """One capability on the governed run path.

    ``begin(run)`` runs once, before the SDK, in the order the policy lists stages: it may
    change ``run.agent``, ``run.input`` and ``run.kwargs`` or set ``run.replay``. It may
    return an awaitable, which ``Runner.run`` and ``run_sync`` await before the SDK
    starts; ``run_streamed`` returns its result synchronously, so there a stage that
    returns an awaitable is an error (``ConfigurationError``) unless it handles
    ``run.streamed`` itself. ``finish(run, report, result)`` runs once the run's report is
    final (``result`` is None when the run raised); it must not raise (an exception is
    logged, the other consumers still run).

    A stage may define ``wants_report(run) -> bool``: when it returns False for a run, its
    ``finish`` is not called for that run, and a report nobody else takes on the call path
    is not built there (a stage with nothing to do at the end, or a cache hit, costs no
    report). Without it, ``finish`` is always called.

    A stage may set a class attribute ``stage_order`` (default 50): the stages a
    ``budget()`` scope adds are merged with the policy's in that order (the response
    cache is 0, so a hit runs nothing else; a router 10; context budgets 20).
    """

    def begin(self, run: StageRun) -> Awaitable[None] | None: ...

    def finish(self, run: StageRun, report: RunReport, result: Any) -> None: ...


@dataclass(frozen=True, slots=True, eq=False)
class RunPolicy:
    """Everything that governs a run. Built by ``Guard`` and ``configure()``; frozen."""

    limits: Limits = field(default_factory=Limits)
    prices: PriceTable = field(default_factory=PriceTable.default)
    budgets: Budgets | None = None
    sinks: tuple[CostSink, ...] = ()
    stages: tuple[Stage, ...] = ()
    prompt_cache_key: str | None = None
    """A prefix for the stable ``prompt_cache_key`` sent per tenant and agent (OpenAI's
    model classes), in place of the SDK's per-run key; None: the SDK's behaviour."""
    alerts: Alerts | None = None
    dispatcher: SinkDispatcher | None = None
    """Delivers reports to ``sinks`` and ``alerts`` off the call path (made when not
    given; None when there are neither)."""

    def __post_init__(self) -> None:
        if (self.sinks or self.alerts is not None) and self.dispatcher is None:
            object.__setattr__(self, "dispatcher", SinkDispatcher(self.sinks))

    @property
    def delivers(self) -> bool:
        """Whether finished runs' reports go anywhere off the call path."""
        return self.dispatcher is not None

    def deliver(self, report: RunReport | Deferred) -> None:
        """Queue a report for every sink and for the alerts (never blocks, never raises:
        see ``SinkDispatcher``)."""
        dispatcher = self.dispatcher
        if dispatcher is not None:
            dispatcher.submit(report)
            if self.alerts is not None:
                dispatcher.submit_event(self.alerts.observe, report)

    @property
    def watches_forecasts(self) -> bool:
        """Whether each run's user and team are checked for a forecast exhaustion alert."""
        return (
            self.alerts is not None
            and self.budgets is not None
            and self.alerts.forecast_exhaustion_hours is not None
        )

    def check_forecasts(self, user: str | None, team: str | None) -> None:
        """After a run: forecast its user's and team's windows and alert on an exhaustion
        within ``Alerts(forecast_exhaustion_hours=...)``, off the call path (an event of
        the dispatcher, awaited on its worker's loop; ``flush()`` waits for it)."""
        if self.dispatcher is not None and (user is not None or team is not None):
            self.dispatcher.submit_event(self._forecast, (user, team))

    async def _forecast(self, subjects: tuple[str | None, str | None]) -> None:
        alerts, budgets = self.alerts, self.budgets
        if alerts is None or budgets is None:
            return
        user, team = subjects
        if user is not None:
            await alerts.check_forecast(budgets, user=user)
        if team is not None:
            await alerts.check_forecast(budgets, team=team)

    @property
    def needs_prices(self) -> bool:
        """True when every call must be priced: a dollar limit or a dollar allowance."""
        return self.limits.max_cost_nanos is not None or (
            self.budgets is not None and self.budgets.needs_prices
        )


_default_lock = threading.Lock()
_default: RunPolicy | None = None


def default_policy() -> RunPolicy:
    """The policy of runs governed only by ``budget()`` scopes or observers (``configure()``
    sets it; a policy with no limits, the default price table and no budgets otherwise)."""
    global _default
    policy = _default
    if policy is not None:
        return policy
    with _default_lock:
        if _default is None:
            _default = RunPolicy()
        return _default


def set_default_policy(policy: RunPolicy | None) -> None:
    """Replace the default policy (None: back to the built-in one, made when next asked)."""
    global _default
    with _default_lock:
        _default = policy
