"""``FallbackRouter``: on a context-window, rate-limit or provider error, the next model."""

from __future__ import annotations

from collections.abc import Sequence

from agents import Model

from ..errors import ConfigurationError
from ..report import Route
from .base import NoSyncRoute, Router, RouteRequest, Tier

__all__ = ["FallbackRouter"]


class FallbackRouter:
    """Routes to the first model of a chain (or to ``inner``'s choice) and, when a call of
    the routed agent fails with a context-window overflow, a rate limit (429) or a provider
    error (5xx, overloaded, unreachable), sends it again to the next model of the chain.

    The move happens once per run, and the rest of the run stays on the new model (its
    prompt cache stays warm). The failed call is charged (at least its estimate) and is a
    line of the report; ``report.route.fallback`` names the new model and the error. A
    stream is sent again only when it failed before its first event.

    A model *name* in the chain is served like a ``Downgrade``: by the run's model
    provider, or by the same class and client as the agent's own ``Model``; give a
    ``Model`` instance to change providers (``agentbudget.models.AnthropicModel``).

    Args:
        models: the chain, at least two models unless ``inner`` is given.
        inner: a router whose route is tried first; the fallback is then the chain's first
            model that differs from the routed one.
    """

    def __init__(
        self, models: Sequence[str | Model | Tier], *, inner: Router | None = None
    ) -> None:
        if isinstance(models, str) or not isinstance(models, Sequence):
            raise ConfigurationError(f"models must be a list of models, got {models!r}")
        self.chain = tuple(
            Tier.of(f"fallback-{index}", model) for index, model in enumerate(models)
        )
        if inner is not None and not callable(getattr(inner, "route", None)):
            raise ConfigurationError(f"inner must be a router, got {inner!r}")
        if len(self.chain) < (1 if inner is not None else 2):
            raise ConfigurationError(
                "FallbackRouter needs at least two models (or one with inner=...)"
            )
        self.inner = inner

    def __repr__(self) -> str:
        names = [Route(model=tier.model, reason="").model_name for tier in self.chain]
        return f"FallbackRouter({names}{', inner=' + repr(self.inner) if self.inner else ''})"

    @property
    def tiers(self) -> tuple[Tier, ...]:
        inner = getattr(self.inner, "tiers", None)
        return tuple(inner) if inner is not None else self.chain

    @property
    def strongest(self) -> Tier:
        return self.tiers[-1]

    async def route(self, request: RouteRequest) -> Route:
        if self.inner is None:
            return self.chain[0].route("fallback chain: its first model")
        return await self.inner.route(request)

    def route_sync(self, request: RouteRequest) -> Route:
        if self.inner is None:
            return self.chain[0].route("fallback chain: its first model")
        route_sync = getattr(self.inner, "route_sync", None)
        if route_sync is None:
            raise NoSyncRoute(f"{type(self.inner).__name__} has no route_sync")
        route: Route = route_sync(request)
        return route

    def fallback_target(self, route: Route) -> str | Model | None:
        """The model the run moves to after an error, given the model it was routed to."""
        names = [Route(model=tier.model, reason="").model_name for tier in self.chain]
        if route.model_name in names:
            index = names.index(route.model_name)
            return self.chain[index + 1].model if index + 1 < len(self.chain) else None
        return self.chain[0].model
