"""The router stage: one ``Router.route`` per run, applied before the SDK starts.

The route is applied to a clone of the starting agent (``agent.clone(model=...)``), so
handoff targets keep their own models; with ``route_handoffs=True``, or when the run's
``RunConfig`` already forces a model for every agent, to a copy of the ``RunConfig``
instead. The user's agent and ``RunConfig`` are never changed.

A model *name* routed to an agent whose model is a ``Model`` instance is served by a
model of the same class and client (``resolution.replacement``), as a budget's
``Downgrade`` is; otherwise the run's model provider builds it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable
from typing import Any, ClassVar

from agents import Agent, Model, ModelSettings, RunConfig

from ..current import CURRENT_RUN
from ..errors import ConfigurationError, StoreUnavailable
from ..meter import FallbackChain
from ..report import Route, RunReport
from ..resolution import model_name, replacement
from .base import BudgetSnapshot, NoSyncRoute, Router, RouteRequest

__all__ = ["RouterStage", "router_stage"]

logger = logging.getLogger("agentbudget")


class RouterStage:
    """Runs a ``Router`` once per governed run and applies its ``Route``.

    Args:
        router: the router.
        route_handoffs: apply the route to every agent of the run (through the
            ``RunConfig``), not only the starting agent.
    """

    stage_order: ClassVar[int] = 10

    def __init__(self, router: Router, *, route_handoffs: bool = False) -> None:
        if not callable(getattr(router, "route", None)):
            raise ConfigurationError(
                f"router must have an async route(RouteRequest) -> Route method, got {router!r}"
            )
        if not isinstance(route_handoffs, bool):
            raise ConfigurationError(f"route_handoffs must be a bool, got {route_handoffs!r}")
        self.router = router
        self.route_handoffs = route_handoffs

    def __repr__(self) -> str:
        return f"RouterStage({self.router!r})"

    def begin(self, run: Any) -> Awaitable[None] | None:
        """Route the run (not a nested one: an ``Agent.as_tool`` run keeps its model)."""
        if run.nested or run.replay is not None:
            return None
        if run.streamed:
            self._route_streamed(run)
            return None
        return self._route(run)

    async def _route(self, run: Any) -> None:
        request = RouteRequest(
            input=run.input,
            agent=run.agent,
            user=run.user,
            team=run.team,
            context=run.kwargs.get("context"),
            budget=await _snapshot(run),
        )
        # The router's own agent runs (a classifier) are nested in this run: charged to
        # its accounts and budgets, and reported as lines of its report.
        token = run.as_current()
        try:
            route = await self.router.route(request)
        finally:
            CURRENT_RUN.reset(token)
        self._apply(run, _checked(self.router, route))

    def _route_streamed(self, run: Any) -> None:
        route_sync = getattr(self.router, "route_sync", None)
        request = RouteRequest(
            input=run.input,
            agent=run.agent,
            user=run.user,
            team=run.team,
            context=run.kwargs.get("context"),
            streamed=True,
        )
        route: Any = None
        if route_sync is not None:
            token = run.as_current()
            try:
                route = route_sync(request)
            except NoSyncRoute:
                route = None
            finally:
                CURRENT_RUN.reset(token)
        if route is None:
            # A router that can only decide by awaiting (a router of your own with no sync
            # path) leaves a streamed run on the agent's own model, and says so.
            name = model_name(run.agent, run.kwargs.get("run_config"))
            run.route = Route(
                model=name,
                reason=f"streamed run: {type(self.router).__name__} has no route_sync; "
                "the agent's own model",
            )
            return
        self._apply(run, _checked(self.router, route))

    def _apply(self, run: Any, route: Route) -> None:
        agent: Agent[Any] = run.agent
        run_config = run.kwargs.get("run_config")
        if isinstance(run_config, dict):
            run_config = RunConfig(**run_config)
        configured = run_config.model if run_config is not None else None
        current = configured if configured is not None else agent.model
        target = route.model
        if isinstance(current, Model) and isinstance(target, str):
            model: str | Model = replacement(current, target, None)[0]
        else:
            model = target
        overrides = route.model_settings
        if self.route_handoffs or configured is not None:
            base = run_config if run_config is not None else RunConfig()
            settings = base.model_settings
            if isinstance(overrides, ModelSettings):
                settings = (settings or ModelSettings()).resolve(overrides)
            run.kwargs["run_config"] = dataclasses.replace(
                base, model=model, model_settings=settings
            )
        else:
            settings = agent.model_settings
            if isinstance(overrides, ModelSettings):
                settings = settings.resolve(overrides)
            run.agent = agent.clone(model=model, model_settings=settings)
        run.route = route.model_copy(update={"model": route.model_name, "model_settings": None})
        target_for = getattr(self.router, "fallback_target", None)
        if callable(target_for):
            target = target_for(route)
            if target is not None:
                run.fallback = FallbackChain(agent=run.agent.name, target=target)

    def wants_report(self, run: Any) -> bool:
        """Never: the route is already in the report (a run need not build it for this stage)."""
        return False

    def finish(self, run: Any, report: RunReport, result: Any) -> None:
        """Nothing to do: the route is already in the report."""


def router_stage(router: Router | RouterStage | None) -> RouterStage | None:
    """The stage for a ``router=`` keyword (None stays None)."""
    if router is None or isinstance(router, RouterStage):
        return router
    return RouterStage(router)


def _checked(router: Router, route: Any) -> Route:
    if not isinstance(route, Route):
        raise ConfigurationError(
            f"{type(router).__name__}.route() must return an agentbudget.Route, got {route!r}"
        )
    return route


async def _snapshot(run: Any) -> BudgetSnapshot | None:
    budgets = run.policy.budgets
    if budgets is None:
        return None
    try:
        return BudgetSnapshot(tuple(await budgets.spend(user=run.user, team=run.team)))
    except StoreUnavailable as exc:
        logger.warning("agentbudget: router sees no budget snapshot (%s)", exc)
        return None
