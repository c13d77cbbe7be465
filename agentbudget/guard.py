"""``Guard``: run agents with limits, exact prices and reports."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any

from agents import Agent, Runner
from agents.result import RunResult, RunResultStreaming

from .alerts import Alerts
from .budgets import Budgets
from .cache import CacheOptions, ResponseCache, cache_options
from .context import ContextBudget
from .current import GUARD_REQUEST, RunRequest
from .errors import ConfigurationError
from .limits import Limits
from .policy import RunPolicy, set_default_policy
from .pricing import PriceTable
from .routing.local import local_names
from .routing.stage import RouterStage, router_stage
from .runtime import instrument
from .sinks import CostSink
from .stores.base import check_optional_id

__all__ = ["Guard", "configure", "default_guard"]

_CACHE_KEY = re.compile(r"[A-Za-z0-9._:-]{1,32}")


class Guard:
    """Runs agents under per-run limits, prices every LLM call and sends reports to sinks.

    With no limit hit, ``run`` returns exactly what ``Runner.run`` returns; the
    ``RunReport`` is available through ``report_of(result)``.

    Args:
        limits: per-run circuit breakers (also applied to each run inside ``budget()``
            scopes when this is the default guard).
        prices: the price table; ``PriceTable.default()`` when omitted.
        budgets: per-user, per-team and global allowances (``Budgets``).
        sinks: where each run's report goes (``LogSink``, ``JsonlSink``, the ledgers,
            ``OTelSink``, any ``CostSink``), delivered off the call path.
        alerts: spend alerts (``Alerts``), evaluated off the call path on every report;
            with ``budgets``, its soft thresholds become alerts too.
        context: a ``ContextBudget`` that keeps each LLM call's input under a token budget
            (composed with the run's own ``call_model_input_filter``).
        prompt_cache_key: a prefix (letters, digits, ``._:-``, up to 32 characters) for a
            stable ``prompt_cache_key`` per tenant (team, else user) and agent, sent to
            OpenAI's model classes instead of the SDK's per-run key, so runs of one tenant
            share the provider's prompt cache. Ids are hashed: the key carries no secret.
        cache: a ``ResponseCache``: repeated questions are answered from it, for $0. It is
            the first stage of every run's pipeline.
        router: a router (``agentbudget.routing.HeuristicRouter``, ``ClassifierRouter``,
            any object with ``async route(RouteRequest) -> Route``, or a ``RouterStage``
            for options): chooses each run's model once, after the cache and before the
            context budget; the choice is ``RunReport.route``.

    Per run, ``no_cache=True`` skips the cache read, ``no_store=True`` skips the write and
    ``cache_tool_runs=True`` stores the run even if it executed tools.
    """

    def __init__(
        self,
        *,
        limits: Limits | None = None,
        prices: PriceTable | None = None,
        budgets: Budgets | None = None,
        sinks: Iterable[CostSink] = (),
        alerts: Alerts | None = None,
        context: ContextBudget | None = None,
        prompt_cache_key: str | None = None,
        cache: ResponseCache | None = None,
        router: Any = None,
    ) -> None:
        routing = router_stage(router)
        if cache is not None and not isinstance(cache, ResponseCache):
            raise ConfigurationError(f"cache must be an agentbudget.ResponseCache, got {cache!r}")
        if alerts is not None and not isinstance(alerts, Alerts):
            raise ConfigurationError(f"alerts must be an agentbudget.Alerts, got {alerts!r}")
        if prompt_cache_key is not None and (
            not isinstance(prompt_cache_key, str) or not _CACHE_KEY.fullmatch(prompt_cache_key)
        ):
            raise ConfigurationError(
                "prompt_cache_key must be 1-32 letters, digits or '._:-' (a prefix; tenant and "
                f"agent are hashed onto it), got {prompt_cache_key!r}"
            )
        if context is not None and not isinstance(context, ContextBudget):
            raise ConfigurationError(
                f"context must be an agentbudget.ContextBudget, got {context!r}"
            )
        if budgets is not None and not isinstance(budgets, Budgets):
            raise ConfigurationError(f"budgets must be an agentbudget.Budgets, got {budgets!r}")
        if limits is not None and not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be an agentbudget.Limits, got {limits!r}")
        if prices is not None and not isinstance(prices, PriceTable):
            raise ConfigurationError(f"prices must be an agentbudget.PriceTable, got {prices!r}")
        sinks = tuple(sinks)
        for sink in sinks:
            if not callable(getattr(sink, "record", None)):
                raise ConfigurationError(f"sink {sink!r} has no record(report) method")
        if alerts is not None and budgets is not None:
            alerts = alerts.for_budgets(budgets)  # user_share against the global allowance
            if alerts.budget_thresholds:
                budgets.add_alert_listener(alerts.budget_alert)
        table = prices or PriceTable.default()
        local = local_names(routing.router) if routing is not None else set()
        if local:
            table = table.with_local_models(local)  # a router's local models cost $0
        self._anonymous: RunRequest | None = None
        self.policy = RunPolicy(
            limits=limits or Limits(),
            prices=table,
            budgets=budgets,
            sinks=sinks,
            alerts=alerts,
            # the cache first: a hit runs nothing else; then the router, then the context
            stages=tuple(stage for stage in (cache, routing, context) if stage is not None),
            prompt_cache_key=prompt_cache_key,
        )
        """What governs this guard's runs (frozen; each run holds the one it started with)."""

    @property
    def limits(self) -> Limits:
        return self.policy.limits

    @property
    def prices(self) -> PriceTable:
        return self.policy.prices

    @property
    def budgets(self) -> Budgets | None:
        return self.policy.budgets

    @property
    def sinks(self) -> tuple[CostSink, ...]:
        return self.policy.sinks

    @property
    def alerts(self) -> Alerts | None:
        return self.policy.alerts

    # -- the sinks' delivery, off the call path --------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every report so far has reached every sink (or was dropped).

        Returns:
            True when delivered, False when ``timeout`` seconds passed first (a sink that
            keeps failing keeps its reports and is retried).
        """
        dispatcher = self.policy.dispatcher
        return True if dispatcher is None else dispatcher.flush(timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """``flush`` without blocking the event loop."""
        dispatcher = self.policy.dispatcher
        return True if dispatcher is None else await dispatcher.aflush(timeout)

    def close(self, timeout: float = 30.0) -> bool:
        """Flush for up to ``timeout`` seconds, then stop delivering and close the sinks."""
        dispatcher = self.policy.dispatcher
        return True if dispatcher is None else dispatcher.close(timeout)

    async def aclose(self, timeout: float = 30.0) -> bool:
        """``close`` without blocking the event loop."""
        dispatcher = self.policy.dispatcher
        return True if dispatcher is None else await dispatcher.aclose(timeout)

    @property
    def router(self) -> RouterStage | None:
        return next((s for s in self.policy.stages if isinstance(s, RouterStage)), None)

    @property
    def cache(self) -> ResponseCache | None:
        return next((s for s in self.policy.stages if isinstance(s, ResponseCache)), None)

    def _request(self, user: str | None, team: str | None) -> RunRequest:
        instrument()
        policy = self.policy
        if user is None and team is None:
            # the common request, made once per policy (a request is frozen)
            anonymous = self._anonymous
            if anonymous is None or anonymous.policy is not policy:
                anonymous = self._anonymous = RunRequest(policy=policy, user=None, team=None)
            return anonymous
        check_optional_id("user", user)
        check_optional_id("team", team)
        return RunRequest(policy=policy, user=user, team=team)

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
            if _CACHE_KEYWORDS.isdisjoint(runner_kwargs):
                return await Runner.run(agent, input, **runner_kwargs)
            with cache_options(_options(runner_kwargs)):
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
            if _CACHE_KEYWORDS.isdisjoint(runner_kwargs):
                return Runner.run_sync(agent, input, **runner_kwargs)
            with cache_options(_options(runner_kwargs)):
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
            if _CACHE_KEYWORDS.isdisjoint(runner_kwargs):
                return Runner.run_streamed(agent, input, **runner_kwargs)
            with cache_options(_options(runner_kwargs)):
                return Runner.run_streamed(agent, input, **runner_kwargs)
        finally:
            GUARD_REQUEST.reset(token)


_CACHE_KEYWORDS = frozenset(("no_cache", "no_store", "cache_tool_runs"))


def _options(runner_kwargs: dict[str, Any]) -> CacheOptions:
    """Pop the per-run cache keywords, so the SDK never sees them."""
    no_cache = runner_kwargs.pop("no_cache", False)
    no_store = runner_kwargs.pop("no_store", False)
    tool_runs = runner_kwargs.pop("cache_tool_runs", None)
    for name, value in (("no_cache", no_cache), ("no_store", no_store)):
        if not isinstance(value, bool):
            raise ConfigurationError(f"{name} must be a bool, got {value!r}")
    if tool_runs is not None and not isinstance(tool_runs, bool):
        raise ConfigurationError(f"cache_tool_runs must be a bool or None, got {tool_runs!r}")
    return CacheOptions(no_cache=no_cache, no_store=no_store, cache_tool_runs=tool_runs)


_default_lock = threading.Lock()
_default: Guard | None = None


def configure(
    *,
    limits: Limits | None = None,
    prices: PriceTable | None = None,
    budgets: Budgets | None = None,
    sinks: Iterable[CostSink] = (),
    alerts: Alerts | None = None,
    context: ContextBudget | None = None,
    prompt_cache_key: str | None = None,
    cache: ResponseCache | None = None,
    router: Any = None,
) -> Guard:
    """Set the process-wide default ``Guard`` that ``budget()`` scopes use. Returns it."""
    global _default
    guard = Guard(
        limits=limits,
        prices=prices,
        budgets=budgets,
        sinks=sinks,
        alerts=alerts,
        context=context,
        prompt_cache_key=prompt_cache_key,
        cache=cache,
        router=router,
    )
    with _default_lock:
        _default = guard
        set_default_policy(guard.policy)
    return guard


def default_guard() -> Guard:
    """The process-wide default ``Guard`` (``configure()`` sets it)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Guard()
            set_default_policy(_default.policy)
        return _default


def reset_default_guard() -> None:
    """Forget the configured default guard (tests use this)."""
    global _default
    with _default_lock:
        _default = None
        set_default_policy(None)
