"""The governed run pipeline: ``begin -> stages -> SDK -> finish``, one path for all runs.

``Runner.run``, ``Runner.run_sync`` and ``Runner.run_streamed`` all reach the SDK's
``AgentRunner.run`` / ``run_streamed``, which ``instrument()`` replaces with
``governed_run`` / ``governed_run_streamed`` (see ``_sdk``). Each asks
``GovernedRun.begin`` whether the run is governed: started by ``Guard.run``, inside a
``budget()`` scope, nested in a governed run (``Agent.as_tool``), or observed (the
pytest plugin). An ungoverned run goes straight to the SDK, untouched. A governed one:

1. **begin**: a ``RunMeter`` holding the policy, the run's account and the enclosing
   runs' and scopes' accounts, the user and team;
2. **stages**: each stage of the policy (cache, router, context) in order;
3. **SDK**: the SDK's own run, with the run's hooks wrapped in ``MeterHooks``, every
   model the run loop resolves wrapped in a ``MeteredModel`` (``metered_get_model``),
   and one watchdog that stops the run at its ``max_seconds`` deadline;
4. **finish**: the ``RunReport``, handed to one list of consumers: the enclosing
   scopes, the sinks, the stages' ``finish`` and the observers.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from agents import Agent, Model, RunConfig
from agents.lifecycle import RunHooksBase
from agents.run import AgentRunner

from . import _sdk
from .accounts import Account
from .current import CURRENT_RUN, GUARD_REQUEST, SCOPES, ScopeFrame
from .errors import AgentBudgetExceeded, ConfigurationError
from .hooks import MeterHooks
from .interceptor import MeteredModel
from .limits import Limits
from .meter import FallbackChain, RunMeter, outcome_of
from .policy import RunPolicy, Stage, default_policy
from .report import Route, RunReport, attach_report
from .resolution import model_name
from .sinks.dispatch import Deferred

__all__ = [
    "GovernedRun",
    "add_observer",
    "governed_run",
    "governed_run_streamed",
    "metered_get_model",
    "observed",
    "remove_observer",
]

logger = logging.getLogger("agentbudget")

_observers: list[Callable[[RunReport], None]] = []
_observers_lock = threading.Lock()


def add_observer(observer: Callable[[RunReport], None]) -> None:
    """Govern every run while ``observer`` is registered, and give it each run's report."""
    with _observers_lock:
        _observers.append(observer)


def remove_observer(observer: Callable[[RunReport], None]) -> None:
    """Stop giving reports to ``observer`` (no error if it was not registered)."""
    with _observers_lock:
        if observer in _observers:
            _observers.remove(observer)


def observed() -> bool:
    return bool(_observers)


class GovernedRun:
    """One governed run, from ``begin`` to ``finish``. Stages see it as a ``StageRun``."""

    __slots__ = ("agent", "frames", "input", "kwargs", "meter", "replay", "state", "streamed")

    def __init__(
        self,
        meter: RunMeter,
        agent: Agent[Any],
        input: Any,
        kwargs: dict[str, Any],
        *,
        streamed: bool,
        frames: tuple[ScopeFrame, ...],
    ) -> None:
        self.meter = meter
        self.agent = agent
        self.input = input
        self.kwargs = kwargs
        self.streamed = streamed
        self.frames = frames
        self.replay: Any = None
        self.state: dict[object, Any] = {}

    @property
    def policy(self) -> RunPolicy:
        return self.meter.policy

    @property
    def user(self) -> str | None:
        return self.meter.user

    @property
    def team(self) -> str | None:
        return self.meter.team

    @property
    def stages(self) -> tuple[Stage, ...]:
        """The run's stages: the policy's, with those the enclosing ``budget()`` scopes add."""
        return self.meter.policy.stages

    @property
    def cache_hit(self) -> bool:
        return self.meter.cache_hit

    @cache_hit.setter
    def cache_hit(self, value: bool) -> None:
        self.meter.cache_hit = value

    @property
    def saved_usd(self) -> Decimal:
        return self.meter.saved_usd

    @saved_usd.setter
    def saved_usd(self, value: Decimal) -> None:
        self.meter.saved_usd = value

    @property
    def route(self) -> Route | None:
        return self.meter.route

    @route.setter
    def route(self, value: Route | None) -> None:
        self.meter.route = value

    @property
    def fallback(self) -> FallbackChain | None:
        return self.meter.fallback

    @fallback.setter
    def fallback(self, value: FallbackChain | None) -> None:
        self.meter.fallback = value

    @property
    def nested(self) -> bool:
        """True for a run nested in another governed run (``Agent.as_tool``)."""
        return self.meter.parent is not None

    def as_current(self) -> contextvars.Token[RunMeter | None]:
        """Make this the current run before the SDK starts (a stage's own agent runs, such
        as a classifier's, are then nested in it: charged to it and reported in it)."""
        return CURRENT_RUN.set(self.meter)

    # -- begin ---------------------------------------------------------------------------

    @classmethod
    def begin(
        cls, agent: Agent[Any], input: Any, kwargs: dict[str, Any], *, streamed: bool
    ) -> GovernedRun | None:
        """The governed run for this ``Runner`` call, or None when nothing governs it.

        Raises:
            UnknownModelError: dollars are limited and the run's model has no price.
        """
        parent = CURRENT_RUN.get()
        if parent is not None:
            # nested (Agent.as_tool): charged to the enclosing run's accounts, reported in it
            account = Account(Limits(), name=f"nested run of {agent.name!r}")
            meter = RunMeter(
                policy=parent.policy,
                account=account,
                agent_name=agent.name,
                accounts=(account, *parent.accounts),
                user=parent.user,
                team=parent.team,
                parent=parent,
            )
            return cls(meter, agent, input, kwargs, streamed=streamed, frames=())
        request = GUARD_REQUEST.get()
        frames = SCOPES.get()
        if request is None and not frames and not _observers:
            return None
        if request is not None:
            policy, user, team = request.policy, request.user, request.team
        else:
            policy, user, team = default_policy(), None, None
        for frame in reversed(frames):
            user = user or frame.user
            team = team or frame.team
        policy = _with_scope_stages(policy, frames)
        account = Account(policy.limits, name=f"run of {agent.name!r}")
        meter = RunMeter(
            policy=policy,
            account=account,
            agent_name=agent.name,
            accounts=(account, *(frame.account for frame in reversed(frames))),
            user=user,
            team=team,
        )
        if meter.needs_prices():
            # Fail closed before the first call when dollars are limited and the price is unknown.
            policy.prices.resolve(model_name(agent, kwargs.get("run_config")))
        return cls(meter, agent, input, kwargs, streamed=streamed, frames=frames)

    def _enter(self) -> contextvars.Token[RunMeter | None]:
        """Wrap the user's run hooks in ``MeterHooks`` and make this the current run.

        Only ``None`` and ``RunHooksBase`` are wrapped: anything else goes to the SDK
        untouched, so it rejects it with its own ``TypeError`` (``AgentHooks`` passed as
        run hooks).
        """
        hooks = self.kwargs.get("hooks")
        if hooks is None or isinstance(hooks, RunHooksBase):
            self.kwargs["hooks"] = MeterHooks(self.meter, hooks)
        return CURRENT_RUN.set(self.meter)

    # -- the SDK run -----------------------------------------------------------------------

    async def run(self, runner: AgentRunner) -> Any:
        """``AgentRunner.run`` under this run's policy."""
        try:
            for stage in self.stages:
                pending = stage.begin(self)
                if pending is not None:
                    await pending
        except BaseException as exc:
            # A stage that fails (a router's classifier tripping a limit) ends the run with
            # its report: what the stage spent is reported, not lost.
            self.finish(exc)
            raise
        if self.replay is not None:
            self.finish(None, self.replay)
            return self.replay
        token = self._enter()
        task = asyncio.current_task()
        assert task is not None
        watchdog = _Watchdog.start(self.meter, lambda: _cancel(task))
        try:
            result = await _sdk.original("run")(runner, self.agent, self.input, **self.kwargs)
        except BaseException as exc:
            if watchdog is not None and watchdog.fired:
                uncancel = getattr(task, "uncancel", None)
                if uncancel is not None:  # Python 3.11+: this cancellation was ours
                    uncancel()
                limit = watchdog.time_limit()
                self.finish(limit)
                raise limit from None
            self.finish(exc)
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
            CURRENT_RUN.reset(token)
        self.finish(None, result)
        return result

    def run_streamed(self, runner: AgentRunner) -> Any:
        """``AgentRunner.run_streamed`` under this run's policy; the report is final when
        the stream's task finishes."""
        try:
            for stage in self.stages:
                pending = stage.begin(self)
                if pending is not None:
                    close = getattr(pending, "close", None)
                    if close is not None:
                        close()  # a coroutine never awaited: closed, not left to warn
                    raise ConfigurationError(
                        f"stage {stage!r} returned an awaitable for a streamed run; "
                        "Runner.run_streamed starts synchronously, so its begin() must too"
                    )
        except BaseException as exc:
            self.finish(exc)
            raise
        if self.replay is not None:
            self.finish(None, self.replay)
            return self.replay
        meter = self.meter
        token = self._enter()
        try:
            result = _sdk.original("run_streamed")(runner, self.agent, self.input, **self.kwargs)
        except BaseException as exc:
            self.finish(exc)
            raise
        finally:
            CURRENT_RUN.reset(token)
        # Until the stream finishes (and finish attaches the final report) the run is running.
        attach_report(result, lambda: meter.report(outcome="running"))

        def stop() -> None:
            if not result.is_complete:
                _sdk.store_exception(result, _time_limit(meter))
                result.cancel()

        watchdog = _Watchdog.start(meter, stop)

        def finished(task: asyncio.Task[Any]) -> None:
            if watchdog is not None:
                watchdog.cancel()
            error = _sdk.stored_exception(result)
            if error is None and task.cancelled():
                error = asyncio.CancelledError()
            elif error is None and task.exception() is not None:
                error = task.exception()
            self.finish(error, result)

        _sdk.run_task(result).add_done_callback(finished)
        return result

    # -- finish ----------------------------------------------------------------------------

    def finish(self, error: BaseException | None, result: Any = None) -> None:
        """Build the run's report and hand it to every consumer."""
        meter = self.meter
        meter.finished_duration = time.monotonic() - meter.t0
        # The run's models and agents must not outlive it through the meter (a report built
        # later needs only the call records).
        meter.proxies.clear()
        meter.cleaned_up.clear()
        if meter.parent is None and meter.policy.watches_forecasts:
            meter.policy.check_forecasts(meter.user, meter.team)
        consumers = self._consumers()
        policy = meter.policy
        delivers = policy.delivers and meter.parent is None
        if error is None and result is not None and meter.parent is None and not consumers:
            # Nobody takes the report on the call path: it is built when report_of(result)
            # first asks, or by the dispatcher's worker for the sinks and alerts (once,
            # shared by both).
            deferred = Deferred(meter.report)
            attach_report(result, deferred.get)
            if delivers:
                policy.deliver(deferred)
            return
        report = meter.report(outcome=outcome_of(error), error=error)
        if isinstance(error, AgentBudgetExceeded):
            error.report = report
        if result is not None:
            attach_report(result, report)
        for consumer in consumers:
            try:
                consumer(report, result)
            except Exception:
                logger.exception(
                    "agentbudget: %r failed to take the report of run %s", consumer, report.run_id
                )
        if delivers:
            policy.deliver(report)

    def _consumers(self) -> list[Callable[[RunReport, Any], None]]:
        """Who takes this run's report on the call path: its scopes, the stages that want it,
        the observers (the sinks and alerts take it off the call path, after them).

        A nested run has none: its calls are already in the enclosing run's report.
        """
        if self.meter.parent is not None:
            return []
        consumers: list[Callable[[RunReport, Any], None]] = [
            _into(frame.reports) for frame in self.frames
        ]
        for stage in self.stages:
            wants = getattr(stage, "wants_report", None)
            if wants is None or wants(self):
                consumers.append(_stage_finish(stage, self))
        if _observers:
            with _observers_lock:
                consumers.extend(_observe(observer) for observer in _observers)
        return consumers


def _with_scope_stages(policy: RunPolicy, frames: tuple[ScopeFrame, ...]) -> RunPolicy:
    """``policy`` with the stages enclosing ``budget()`` scopes add (``budget(cache=...)``),
    first, innermost scope first; a stage of a kind the policy already has is not added."""
    if not any(frame.stages for frame in frames):
        return policy
    kinds = {type(stage) for stage in policy.stages}
    added: list[Stage] = []
    for frame in reversed(frames):
        for stage in frame.stages:
            if type(stage) not in kinds:
                kinds.add(type(stage))
                added.append(stage)
    if not added:
        return policy
    stages = sorted((*added, *policy.stages), key=lambda stage: getattr(stage, "stage_order", 50))
    return dataclasses.replace(policy, stages=tuple(stages))


def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()


def _into(reports: list[RunReport]) -> Callable[[RunReport, Any], None]:
    return lambda report, _result: reports.append(report)


def _stage_finish(stage: Any, run: GovernedRun) -> Callable[[RunReport, Any], None]:
    return lambda report, result: stage.finish(run, report, result)


def _observe(observer: Callable[[RunReport], None]) -> Callable[[RunReport, Any], None]:
    return lambda report, _result: observer(report)


# -- the watchdog -------------------------------------------------------------------------


def _time_limit(meter: RunMeter) -> AgentBudgetExceeded:
    """The time limit of the account whose deadline stopped the run, with the run tripped."""
    account = min(
        (a for a in meter.accounts if a.deadline() is not None), key=lambda a: a.deadline() or 0
    )
    return meter.trip(account.time_exceeded())


class _Watchdog:
    """Stops a run at its ``max_seconds`` deadline: no task and no timer of its own per run.

    ``Runner.run`` is stopped by cancelling its task (a hanging tool or model call is
    interrupted wherever it awaits); a streamed run by storing the time limit where the
    SDK raises it and cancelling the stream. The runs of one event loop share one loop
    timer (``_Deadlines``), so starting and cancelling a watchdog is two dict operations,
    not a ``call_at`` and a cancelled timer left in the loop's heap until its due time.
    """

    __slots__ = ("deadlines", "fired", "meter", "stop")

    def __init__(self, meter: RunMeter, deadline: float, stop: Callable[[], None]) -> None:
        self.meter = meter
        self.stop = stop
        self.fired = False
        self.deadlines = _Deadlines.of(asyncio.get_running_loop())
        self.deadlines.add(self, deadline)

    @classmethod
    def start(cls, meter: RunMeter, stop: Callable[[], None]) -> _Watchdog | None:
        if meter.parent is not None:
            return None  # nested runs are covered by the enclosing run's watchdog
        deadline: float | None = None
        for account in meter.accounts:
            due = account.deadline()
            if due is not None and (deadline is None or due < deadline):
                deadline = due
        if deadline is None:
            return None
        return cls(meter, deadline, stop)

    def _fire(self) -> None:
        self.fired = True
        self.stop()

    def cancel(self) -> None:
        self.deadlines.remove(self)

    def time_limit(self) -> AgentBudgetExceeded:
        """The error to raise instead of the cancellation this watchdog caused."""
        return _time_limit(self.meter)


class _Deadlines:
    """The watchdogs of one event loop and the one timer that serves them all.

    The timer is due at the earliest deadline it was armed for; when it fires, it stops
    every run whose deadline has passed and is armed again for the earliest one left. A
    run that ends only leaves the table (the timer may then fire for nobody, once). A new
    deadline earlier than the timer's re-arms it. The timer runs in an empty context and
    the table holds only live runs, so an ended run's meter, models and agents are never
    kept alive by the loop.
    """

    __slots__ = ("__weakref__", "handle", "runs", "when")

    def __init__(self) -> None:
        self.runs: dict[_Watchdog, float] = {}
        self.handle: asyncio.TimerHandle | None = None
        self.when = math.inf

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Deadlines:
        deadlines = _LOOP_DEADLINES.get(loop)
        if deadlines is None:
            deadlines = _LOOP_DEADLINES[loop] = cls()
        return deadlines

    def add(self, watchdog: _Watchdog, deadline: float) -> None:
        self.runs[watchdog] = deadline
        if deadline < self.when:
            self._arm(deadline)

    def remove(self, watchdog: _Watchdog) -> None:
        self.runs.pop(watchdog, None)

    def _arm(self, deadline: float) -> None:
        if self.handle is not None:
            self.handle.cancel()
        loop = asyncio.get_running_loop()
        self.when = deadline
        self.handle = loop.call_at(
            loop.time() + max(deadline - time.monotonic(), 0),
            self._fire,
            context=contextvars.Context(),
        )

    def _fire(self) -> None:
        self.handle = None
        self.when = math.inf
        now = time.monotonic()
        due = [watchdog for watchdog, deadline in self.runs.items() if deadline <= now]
        for watchdog in due:
            del self.runs[watchdog]
        if self.runs:
            self._arm(min(self.runs.values()))
        for watchdog in due:
            try:
                watchdog._fire()
            except Exception:
                logger.exception("agentbudget: stopping a run at its deadline failed")


_LOOP_DEADLINES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Deadlines] = (
    weakref.WeakKeyDictionary()
)


# -- what instrument() installs in the SDK -------------------------------------------------


async def governed_run(
    self: AgentRunner, starting_agent: Agent[Any], input: Any, **kwargs: Any
) -> Any:
    run = GovernedRun.begin(starting_agent, input, kwargs, streamed=False)
    if run is None:
        return await _sdk.original("run")(self, starting_agent, input, **kwargs)
    return await run.run(self)


def governed_run_streamed(
    self: AgentRunner, starting_agent: Agent[Any], input: Any, **kwargs: Any
) -> Any:
    run = GovernedRun.begin(starting_agent, input, kwargs, streamed=True)
    if run is None:
        return _sdk.original("run_streamed")(self, starting_agent, input, **kwargs)
    return run.run_streamed(self)


def metered_get_model(agent: Agent[Any], run_config: RunConfig) -> Model:
    """The run loop's model for ``agent``, wrapped in the run's ``MeteredModel``."""
    model: Model = _sdk.original("get_model")(agent, run_config)
    meter = CURRENT_RUN.get()
    # class identity, not isinstance: Model is an ABC, and this runs before every call
    if meter is None or model.__class__ is MeteredModel:
        return model
    key = (id(model), agent.name)
    proxy = meter.proxies.get(key)
    if proxy is None or proxy.__class__ is not MeteredModel or proxy.inner is not model:
        # A Downgrade by name goes to the provider only when the provider built this model;
        # a Model instance the user gave is matched by its own class and client instead.
        by_name = model is not agent.model and model is not run_config.model
        proxy = MeteredModel(
            model,
            name=model_name(agent, run_config, model),
            agent=agent,
            meter=meter,
            provider=run_config.model_provider if by_name else None,
        )
        meter.proxies[key] = proxy
    return proxy
