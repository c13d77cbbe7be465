"""Governed runs: ``instrument()`` routes the SDK's runs and model calls through agentbudget.

``instrument()`` wraps ``AgentRunner.run`` and ``AgentRunner.run_streamed`` (which
``Runner.run``, ``Runner.run_sync`` and ``Runner.run_streamed`` all go through) and the
run loop's model resolution. A run is *governed* when ``Guard.run`` started it, when a
``budget()`` scope is active, or when it is nested in a governed run (``Agent.as_tool``).
Any other run goes straight to the SDK, untouched. ``uninstrument()`` restores exactly
what was there. Both are idempotent.

These are private SDK internals (listed, each with its reason, in ``_sdk_internals``), so
agentbudget declares the ``openai-agents`` releases it is tested with (``SDK_RANGE``) and
``instrument()`` raises ``ConfigurationError`` on an SDK that lacks one of them.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from agents import Agent, Model, RunConfig
from agents.lifecycle import RunHooksBase
from agents.models import get_default_model
from agents.result import RunResultStreaming
from agents.run import AgentRunner

from .errors import AgentBudgetExceeded, BudgetExhausted, ConfigurationError
from .interceptor import MeteredModel
from .limits import Limits
from .meter import Account, MeterHooks, RunMeter
from .report import RunReport, attach_report

if TYPE_CHECKING:
    from .guard import Guard
    from .scope import BudgetScope

try:  # a private module: instrument() says which SDK versions have it
    from agents.run_internal import run_loop
except ImportError:  # pragma: no cover - older or newer SDKs
    run_loop = None  # type: ignore[assignment]

SDK_RANGE = ">=0.21,<0.25"
"""The ``openai-agents`` releases agentbudget is tested with (``pyproject.toml`` declares it)."""

__all__ = [
    "add_observer",
    "instrument",
    "is_instrumented",
    "propagate",
    "remove_observer",
    "uninstrument",
]

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class GuardRequest:
    """What ``Guard.run`` asks of the run it starts."""

    guard: Guard
    user: str | None
    team: str | None


CURRENT_RUN: ContextVar[RunMeter | None] = ContextVar("agentbudget_run", default=None)
GUARD_REQUEST: ContextVar[GuardRequest | None] = ContextVar("agentbudget_guard", default=None)
SCOPES: ContextVar[tuple[BudgetScope, ...]] = ContextVar("agentbudget_scopes", default=())

_lock = threading.Lock()
_originals: dict[str, Any] = {}
# What the SDK had when agentbudget was imported: a run still in flight when
# uninstrument() is called keeps working with these.
_sdk: dict[str, Any] = {
    "run": AgentRunner.__dict__.get("run"),
    "run_streamed": AgentRunner.__dict__.get("run_streamed"),
    "get_model": getattr(run_loop, "get_model", None),
}
_observers: list[Callable[[RunReport], None]] = []


def add_observer(observer: Callable[[RunReport], None]) -> None:
    """Govern *every* run while ``observer`` is registered, and give it each run's report.

    The pytest plugin uses this to record the runs of a test, plain ``Runner`` calls
    included. Calls ``instrument()``.
    """
    instrument()
    with _lock:
        _observers.append(observer)


def remove_observer(observer: Callable[[RunReport], None]) -> None:
    """Stop giving reports to ``observer`` (no error if it was not registered)."""
    with _lock:
        if observer in _observers:
            _observers.remove(observer)


def is_instrumented() -> bool:
    return bool(_originals)


# -- the SDK internals agentbudget patches, each with its reason ---------------------------


def _sdk_internals() -> list[tuple[str, bool]]:
    """Each private SDK internal agentbudget relies on, and whether this SDK has it."""
    fields = getattr(RunResultStreaming, "__dataclass_fields__", {})
    return [
        # Runner.run, run_sync and run_streamed all go through these: a governed run starts here.
        ("agents.run.AgentRunner.run", callable(AgentRunner.__dict__.get("run"))),
        ("agents.run.AgentRunner.run_streamed", callable(AgentRunner.__dict__.get("run_streamed"))),
        # The run loop resolves each agent's model here: the MeteredModel goes in here.
        (
            "agents.run_internal.run_loop.get_model",
            callable(getattr(run_loop, "get_model", None)),
        ),
        # A streamed run that trips its time limit stores the error where the SDK raises it.
        ("agents.result.RunResultStreaming._stored_exception", "_stored_exception" in fields),
        # A streamed run's report is filed when its task finishes.
        ("agents.result.RunResultStreaming.run_loop_task", "run_loop_task" in fields),
    ]


def check_sdk() -> None:
    """Raise ``ConfigurationError`` when the installed SDK lacks an internal agentbudget patches.

    Raises:
        ConfigurationError: naming the missing internal and the installed SDK version.
    """
    missing = [name for name, present in _sdk_internals() if not present]
    if missing:
        raise ConfigurationError(
            f"agentbudget cannot govern runs with openai-agents {_sdk_version()}: it has no "
            f"{', '.join(missing)}. agentbudget is tested with openai-agents{SDK_RANGE}; "
            f'install one of those (pip install "openai-agents{SDK_RANGE}").'
        )


def _sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openai-agents")
    except PackageNotFoundError:  # pragma: no cover - a vendored SDK
        return "(unknown version)"


def instrument() -> None:
    """Route the SDK's runs through agentbudget. Idempotent; ungoverned runs are untouched.

    Raises:
        ConfigurationError: the installed ``openai-agents`` lacks an internal agentbudget
            patches (it is tested with the releases in ``SDK_RANGE``).
    """
    with _lock:
        if _originals:
            return
        check_sdk()
        _originals["run"] = AgentRunner.__dict__["run"]
        _originals["run_streamed"] = AgentRunner.__dict__["run_streamed"]
        _originals["get_model"] = run_loop.get_model
        AgentRunner.run = _governed_run  # type: ignore[method-assign]
        AgentRunner.run_streamed = _governed_run_streamed  # type: ignore[method-assign]
        run_loop.get_model = _metered_get_model


def uninstrument() -> None:
    """Restore exactly what ``instrument()`` replaced. Idempotent."""
    with _lock:
        if not _originals:
            return
        AgentRunner.run = _originals.pop("run")  # type: ignore[method-assign]
        AgentRunner.run_streamed = _originals.pop("run_streamed")  # type: ignore[method-assign]
        run_loop.get_model = _originals.pop("get_model")


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


# -- model resolution ----------------------------------------------------------------------


def model_name(
    agent: Agent[Any],
    run_config: RunConfig | dict[str, Any] | None,
    model: Model | None = None,
) -> str:
    """The name a run's call to ``agent`` is priced by, resolved as the SDK resolves models.

    ``run_config`` may be a dict, as ``Runner.run`` accepts one.
    """
    if isinstance(run_config, dict):
        configured: Any = run_config.get("model")
    else:
        configured = run_config.model if run_config is not None else None
    if configured is None:
        configured = agent.model
    if isinstance(configured, str):
        return configured
    if configured is None:
        return get_default_model()
    candidate = model if model is not None else configured
    name = getattr(candidate, "model", None)
    return name if isinstance(name, str) else type(candidate).__name__


def _metered_get_model(agent: Agent[Any], run_config: RunConfig) -> Model:
    model: Model = _originals.get("get_model", _sdk["get_model"])(agent, run_config)
    meter = CURRENT_RUN.get()
    if meter is None or isinstance(model, MeteredModel):
        return model
    key = (id(model), agent.name)
    proxy = meter.proxies.get(key)
    if proxy is None or proxy.inner is not model:
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


# -- starting and finishing governed runs ---------------------------------------------------


def _begin(starting_agent: Agent[Any], kwargs: dict[str, Any]) -> RunMeter | None:
    parent = CURRENT_RUN.get()
    if parent is not None:
        account = Account(Limits(), name=f"nested run of {starting_agent.name!r}")
        return RunMeter(
            guard=parent.guard,
            account=account,
            agent_name=starting_agent.name,
            accounts=(account, *parent.accounts),
            user=parent.user,
            team=parent.team,
            parent=parent,
        )
    request = GUARD_REQUEST.get()
    scopes = SCOPES.get()
    if request is None and not scopes and not _observers:
        return None
    from .guard import default_guard

    guard = request.guard if request is not None else default_guard()
    user = request.user if request is not None else None
    team = request.team if request is not None else None
    for scope in reversed(scopes):
        user = user or scope.user
        team = team or scope.team
    account = Account(guard.limits, name=f"run of {starting_agent.name!r}")
    meter = RunMeter(
        guard=guard,
        account=account,
        agent_name=starting_agent.name,
        accounts=(account, *(scope.account for scope in reversed(scopes))),
        user=user,
        team=team,
    )
    if meter.needs_prices():
        # Fail closed before the first call when dollars are limited and the price is unknown.
        guard.prices.resolve(model_name(starting_agent, kwargs.get("run_config")))
    return meter


def _wrap_hooks(meter: RunMeter, kwargs: dict[str, Any]) -> None:
    """Wrap the user's run hooks in ``MeterHooks``.

    Only ``None`` and ``RunHooksBase`` are wrapped: anything else goes to the SDK untouched,
    so it rejects it with its own ``TypeError`` (``AgentHooks`` passed as run hooks).
    """
    hooks = kwargs.get("hooks")
    if hooks is None or isinstance(hooks, RunHooksBase):
        kwargs["hooks"] = MeterHooks(meter, hooks)


def _finish(meter: RunMeter, error: BaseException | None, result: Any = None) -> None:
    meter.finished_duration = time.monotonic() - meter.t0
    # The run's models and agents must not outlive it through the meter (a report built
    # later needs only the call records).
    meter.proxies.clear()
    meter.cleaned_up.clear()
    if error is None:
        outcome = "completed"
    elif isinstance(error, AgentBudgetExceeded):
        outcome = "refused" if isinstance(error, BudgetExhausted) else "tripped"
    else:
        outcome = "error"
    scopes = SCOPES.get()
    if (
        error is None
        and result is not None
        and not (scopes or meter.guard.sinks or _observers or meter.parent is not None)
    ):
        # Nobody takes the report now: build it when report_of(result) first asks.
        attach_report(result, _lazy(meter))
        return
    report = meter.report(outcome=outcome, error=error)
    if isinstance(error, AgentBudgetExceeded):
        error.report = report
    if result is not None:
        attach_report(result, report)
    if meter.parent is not None:
        return  # a nested run's calls are already in the enclosing run's report
    for scope in scopes:
        scope.reports.append(report)
    meter.guard.emit(report)
    for observer in list(_observers):
        observer(report)


def _lazy(meter: RunMeter) -> Callable[[], RunReport]:
    """A completed run's report, built on first use and kept."""
    built: list[RunReport] = []

    def report() -> RunReport:
        if not built:
            built.append(meter.report())
        return built[0]

    return report


def _deadline(meter: RunMeter) -> float | None:
    deadlines = [d for d in (a.deadline() for a in meter.accounts) if d is not None]
    return min(deadlines) if deadlines else None


def _time_limit(meter: RunMeter) -> AgentBudgetExceeded:
    """The time limit of the account whose deadline stopped the run, with the run tripped."""
    account = min(
        (a for a in meter.accounts if a.deadline() is not None), key=lambda a: a.deadline() or 0
    )
    return meter.trip(account.time_exceeded())


class _Watchdog:
    """Cancels the current task at the run's deadline (a timer, no extra task per run), so
    a hanging tool or model call is interrupted wherever it is awaiting."""

    def __init__(self, meter: RunMeter, deadline: float) -> None:
        self.meter = meter
        self.fired = False
        task = asyncio.current_task()
        assert task is not None
        self.task = task
        loop = asyncio.get_running_loop()
        # An empty context: a timer holds its context until its due time even when
        # cancelled, and the run's context holds the meter, its models and agents.
        self.handle = loop.call_at(
            loop.time() + max(deadline - time.monotonic(), 0),
            self._fire,
            context=contextvars.Context(),
        )

    @classmethod
    def start(cls, meter: RunMeter) -> _Watchdog | None:
        deadline = _deadline(meter)
        if deadline is None or meter.parent is not None:
            return None  # nested runs are covered by the enclosing run's watchdog
        return cls(meter, deadline)

    def _fire(self) -> None:
        self.fired = True
        self.task.cancel()

    def time_limit(self) -> AgentBudgetExceeded:
        """The error to raise instead of the cancellation this watchdog caused."""
        uncancel = getattr(self.task, "uncancel", None)
        if uncancel is not None:  # Python 3.11+: this cancellation was ours, not the caller's
            uncancel()
        return _time_limit(self.meter)


async def _governed_run(
    self: AgentRunner, starting_agent: Agent[Any], input: Any, **kwargs: Any
) -> Any:
    original = _originals.get("run", _sdk["run"])
    meter = _begin(starting_agent, kwargs)
    if meter is None:
        return await original(self, starting_agent, input, **kwargs)
    _wrap_hooks(meter, kwargs)
    token = CURRENT_RUN.set(meter)
    watchdog = _Watchdog.start(meter)
    try:
        result = await original(self, starting_agent, input, **kwargs)
    except BaseException as exc:
        if watchdog is not None and watchdog.fired:
            limit = watchdog.time_limit()
            _finish(meter, limit)
            raise limit from None
        _finish(meter, exc)
        raise
    finally:
        if watchdog is not None:
            watchdog.handle.cancel()
        CURRENT_RUN.reset(token)
    _finish(meter, None, result)
    return result


def _governed_run_streamed(
    self: AgentRunner, starting_agent: Agent[Any], input: Any, **kwargs: Any
) -> Any:
    original = _originals.get("run_streamed", _sdk["run_streamed"])
    meter = _begin(starting_agent, kwargs)
    if meter is None:
        return original(self, starting_agent, input, **kwargs)
    _wrap_hooks(meter, kwargs)
    token = CURRENT_RUN.set(meter)
    try:
        result = original(self, starting_agent, input, **kwargs)
    except BaseException as exc:
        _finish(meter, exc)
        raise
    finally:
        CURRENT_RUN.reset(token)
    # Until the stream finishes (and _finish attaches the final report) the run is running.
    attach_report(result, lambda: meter.report(outcome="running"))
    deadline = _deadline(meter)
    loop = asyncio.get_running_loop()
    timer = None
    if deadline is not None and meter.parent is None:

        def stop() -> None:
            if result.is_complete:
                return
            exc = _time_limit(meter)
            if getattr(result, "_stored_exception", None) is None:
                result._stored_exception = exc
            result.cancel()

        timer = loop.call_later(
            max(deadline - time.monotonic(), 0), stop, context=contextvars.Context()
        )

    def finished(_task: asyncio.Task[Any]) -> None:
        if timer is not None:
            timer.cancel()
        error = getattr(result, "_stored_exception", None)
        if error is None and _task.cancelled():
            error = asyncio.CancelledError()
        elif error is None and _task.exception() is not None:
            error = _task.exception()
        _finish(meter, error, result)

    result.run_loop_task.add_done_callback(finished)
    return result
