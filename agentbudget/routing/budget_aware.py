"""``BudgetAwareRouter``: step down a tier as the user's allowance runs low."""

from __future__ import annotations

from ..errors import ConfigurationError
from ..report import Route
from .base import NoSyncRoute, Router, RouteRequest, Tier, check_tiers, fitting_tier

__all__ = ["BudgetAwareRouter"]

_PER = ("user", "team", "global")


class BudgetAwareRouter:
    """Wraps a tiered router: past ``soft`` of the allowance used, one tier down; past the
    hard limit (all used), the cheapest tier only.

    The share is the largest of the ``per`` allowances' (spent + reserved) / limit, from the
    snapshot the run's ``Budgets`` gave when it began (no ``Budgets``, or a streamed run: no
    snapshot, the inner route stands). A dropped tier must still fit the agent's needs
    (tools, structured output, context window), else the next stronger one is used.

    It composes with ``Budgets``' degrade chain: the router picks the run's model when it
    starts; a ``Downgrade`` in ``on_exhausted`` applies later, per call, only when its
    model is cheaper than the one serving the call, so a call the router has already sent
    to a cheap tier is not downgraded twice.

    Args:
        inner: a router with ``tiers`` (``HeuristicRouter``, ``ClassifierRouter``), or
            any router when ``tiers`` is given.
        soft: the share of the allowance (0 < soft < 1) past which one tier is dropped.
        per: whose allowances count: ``"user"`` (default), ``"team"`` or ``"global"``.
        tiers: the tiers, cheapest first (default: ``inner.tiers``).
    """

    def __init__(
        self,
        inner: Router,
        *,
        soft: float = 0.8,
        per: str = "user",
        tiers: list[Tier] | tuple[Tier, ...] | None = None,
    ) -> None:
        if not callable(getattr(inner, "route", None)):
            raise ConfigurationError(f"inner must be a router, got {inner!r}")
        if isinstance(soft, bool) or not isinstance(soft, int | float) or not 0 < soft < 1:
            raise ConfigurationError(f"soft must be a share between 0 and 1, got {soft!r}")
        if per not in _PER:
            raise ConfigurationError(f"per must be one of {_PER}, got {per!r}")
        given = tiers if tiers is not None else getattr(inner, "tiers", None)
        if given is None:
            raise ConfigurationError(
                f"{type(inner).__name__} has no tiers: give BudgetAwareRouter(tiers=[...])"
            )
        self.inner = inner
        self.soft = float(soft)
        self.per = per
        self.tiers = check_tiers(given)

    def __repr__(self) -> str:
        return f"BudgetAwareRouter({self.inner!r}, soft={self.soft}, per={self.per!r})"

    @property
    def strongest(self) -> Tier:
        return self.tiers[-1]

    async def route(self, request: RouteRequest) -> Route:
        return self._adjust(request, await self.inner.route(request))

    def route_sync(self, request: RouteRequest) -> Route:
        route_sync = getattr(self.inner, "route_sync", None)
        if route_sync is None:
            raise NoSyncRoute(f"{type(self.inner).__name__} has no route_sync")
        route: Route = route_sync(request)
        return self._adjust(request, route)

    def _adjust(self, request: RouteRequest, route: Route) -> Route:
        budget = request.budget
        share = budget.used_share(self.per) if budget is not None else None
        if share is None or share < self.soft:
            return route
        index = self._index(route)
        if share >= 1:
            target = 0
            why = f"{self.per} allowance used up ({share:.0%}): the cheapest tier"
        else:
            target = max(index - 1, 0)
            why = f"{self.per} allowance {share:.0%} used (soft {self.soft:.0%}): one tier down"
        if target >= index:
            return route.model_copy(update={"reason": f"{route.reason}; {why}"})
        return fitting_tier(self.tiers, target, request, f"{route.reason}; {why}")

    def _index(self, route: Route) -> int:
        for index, tier in enumerate(self.tiers):
            if tier.name == route.tier:
                return index
        for index, tier in enumerate(self.tiers):
            if Route(model=tier.model, reason="").model_name == route.model_name:
                return index
        return len(self.tiers) - 1
