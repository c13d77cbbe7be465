"""``budget()``: limits over every run inside a block or a function.

::

    @ab.budget(max_tool_calls=5, max_seconds=30, user="u-42")
    async def handle(msg):
        return await Runner.run(agent, msg)

    async with ab.budget(max_cost_usd="0.50") as scope:
        await Runner.run(agent, "a")
        await Runner.run(agent, "b")
    scope.cost_usd, scope.tokens, scope.tool_calls, scope.reports

Limits in a scope are cumulative over all runs inside it; nested scopes all apply;
scopes live in ``contextvars``, so concurrent tasks never share counters. Entering a
scope calls ``instrument()``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import Token
from decimal import Decimal
from typing import Any, TypeVar

from .accounts import Account
from .cache import ResponseCache
from .context import ContextBudget
from .current import SCOPES, ScopeFrame
from .errors import ConfigurationError
from .limits import Limits
from .report import RunReport
from .routing.stage import RouterStage, router_stage
from .runtime import instrument
from .stores.base import check_optional_id

__all__ = ["BudgetScope", "budget"]

F = TypeVar("F", bound=Callable[..., Any])


class BudgetScope:
    """An active (or ready) ``budget()`` scope: its limits, counters and reports."""

    def __init__(
        self,
        limits: Limits,
        *,
        user: str | None,
        team: str | None,
        context: ContextBudget | None = None,
        cache: ResponseCache | None = None,
        router: RouterStage | None = None,
    ) -> None:
        self.limits = limits
        self.router = router
        self.user = user
        self.team = team
        self.context = context
        self.cache = cache
        self._frame = self._new_frame()
        self._token: Token[tuple[ScopeFrame, ...]] | None = None
        self._entered = False

    @property
    def account(self) -> Account:
        """The scope's counters and limits."""
        return self._frame.account

    @property
    def reports(self) -> list[RunReport]:
        """The report of every run that finished in the scope, in order."""
        return self._frame.reports

    # -- what the scope has counted --------------------------------------------------------

    @property
    def cost_usd(self) -> Decimal:
        """Exact spend of every run in the scope (nested runs included)."""
        return self.account.cost_usd

    @property
    def tokens(self) -> int:
        return self.account.total_tokens

    @property
    def input_tokens(self) -> int:
        return self.account.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.account.output_tokens

    @property
    def tool_calls(self) -> int:
        return self.account.tool_calls

    @property
    def llm_calls(self) -> int:
        return self.account.llm_calls

    def _new_frame(self) -> ScopeFrame:
        # the cache first: a hit runs nothing else
        stages = tuple(
            stage for stage in (self.cache, self.router, self.context) if stage is not None
        )
        account = Account(self.limits, name="budget() scope")
        return ScopeFrame(account, self.user, self.team, stages=stages)

    # -- context manager -------------------------------------------------------------------

    def __enter__(self) -> BudgetScope:
        if self._entered:
            raise ConfigurationError(
                "this budget() scope was already entered; create a new one with budget(...) "
                "(as a decorator it makes a fresh scope per call)"
            )
        self._entered = True
        instrument()
        self._frame = self._new_frame()
        self._token = SCOPES.set((*SCOPES.get(), self._frame))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._token is not None:
            SCOPES.reset(self._token)
            self._token = None

    async def __aenter__(self) -> BudgetScope:
        return self.__enter__()

    async def __aexit__(self, *exc_info: object) -> None:
        self.__exit__(*exc_info)

    # -- decorator -------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        limits, user, team = self.limits, self.user, self.team
        context, cache, router = self.context, self.cache, self.router
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                async with BudgetScope(
                    limits, user=user, team=team, context=context, cache=cache, router=router
                ):
                    return await fn(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with BudgetScope(
                limits, user=user, team=team, context=context, cache=cache, router=router
            ):
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def budget(
    *,
    max_tool_calls: int | None = None,
    max_llm_calls: int | None = None,
    max_tokens: int | None = None,
    max_input_tokens: int | None = None,
    max_output_tokens: int | None = None,
    max_cost_usd: Decimal | str | int | None = None,
    max_seconds: float | None = None,
    user: str | None = None,
    team: str | None = None,
    context: ContextBudget | None = None,
    cache: ResponseCache | None = None,
    router: Any = None,
) -> BudgetScope:
    """Limits over every ``Runner`` run inside a block (``with``/``async with``) or a function.

    ``cache`` answers the scope's runs from a ``ResponseCache`` (unless the run's guard
    has its own); ``router`` routes each run of the scope to a model (unless the run's
    guard has its own router).

    Raises:
        ConfigurationError: for invalid limits, ids or cache.
    """
    limits = Limits(
        max_tool_calls=max_tool_calls,
        max_llm_calls=max_llm_calls,
        max_tokens=max_tokens,
        max_input_tokens=max_input_tokens,
        max_output_tokens=max_output_tokens,
        max_cost_usd=max_cost_usd,
        max_seconds=max_seconds,
    )
    check_optional_id("user", user)
    check_optional_id("team", team)
    if context is not None and not isinstance(context, ContextBudget):
        raise ConfigurationError(f"context must be an agentbudget.ContextBudget, got {context!r}")
    if cache is not None and not isinstance(cache, ResponseCache):
        raise ConfigurationError(f"cache must be an agentbudget.ResponseCache, got {cache!r}")
    return BudgetScope(
        limits, user=user, team=team, context=context, cache=cache, router=router_stage(router)
    )
