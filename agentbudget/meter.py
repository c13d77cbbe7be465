"""Per-run metering: accounts with limits, the run meter, and the metering hooks.

An ``Account`` is a set of counters with ``Limits``: every run has one, and so has
every active ``budget()`` scope. Each LLM call and tool call is charged once to every
account in force (the run's own, the enclosing runs' for nested ``Agent.as_tool``
runs, and every enclosing scope's). Before an LLM call the worst case is *held* on
each account, so concurrent calls inside one run or scope cannot jointly overshoot.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, NamedTuple

from agents import Agent, RunContextWrapper, RunHooks, Tool
from agents.items import ModelResponse, TResponseInputItem
from agents.lifecycle import RunHooksBase

from .errors import (
    AgentBudgetExceeded,
    BudgetExhausted,
    CostLimitExceeded,
    LLMCallLimitExceeded,
    TimeLimitExceeded,
    TokenLimitExceeded,
    ToolCallLimitExceeded,
)
from .limits import Limits
from .money import nanos_to_usd, pico_to_nanos
from .report import LLMCallCost, Route, RunReport

if TYPE_CHECKING:
    from .guard import Guard

__all__ = ["Account", "Hold", "MeterHooks", "RunMeter"]

MIN_OUTPUT_TOKENS = 16
"""The smallest output bound a call is sent with (OpenAI rejects ``max_output_tokens`` < 16)."""


class CallRecord(NamedTuple):
    """One LLM request as the meter records it (an ``LLMCallCost`` is built on demand)."""

    agent: str
    model: str
    price_key: str | None
    input_tokens: int
    cached_input_tokens: int
    cache_write_tokens: int
    output_tokens: int
    reasoning_tokens: int
    nanos: int | None
    estimated: bool
    streamed: bool
    degraded: str | None
    price_source: str | None = None
    local: bool = False
    service_tier: str | None = None
    priced_at_standard_rate: bool = False

    def to_cost(self) -> LLMCallCost:
        return LLMCallCost.model_construct(
            agent=self.agent,
            model=self.model,
            price_key=self.price_key,
            input_tokens=self.input_tokens,
            cached_input_tokens=self.cached_input_tokens,
            cache_write_tokens=self.cache_write_tokens,
            output_tokens=self.output_tokens,
            reasoning_tokens=self.reasoning_tokens,
            cost_usd=None if self.nanos is None else nanos_to_usd(self.nanos),
            estimated=self.estimated,
            streamed=self.streamed,
            degraded=self.degraded,
            price_source=self.price_source,
            local=self.local,
            service_tier=self.service_tier,
            priced_at_standard_rate=self.priced_at_standard_rate,
        )


@dataclass
class Hold:
    """What one in-flight LLM call holds on each account until it settles."""

    input_tokens: int
    output_tokens: int
    nanos: int
    accounts: Sequence[Account]
    released: bool = False


class Account:
    """Counters and limits of one run or one scope. Thread-safe; the lock is never awaited."""

    def __init__(self, limits: Limits, *, name: str, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.name = name
        self.clock = clock
        self.started = clock()
        self.llm_calls = 0
        self.tool_calls = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_nanos = 0
        self.unpriced_calls = 0
        self.held_calls = 0
        self.held_input = 0
        self.held_output = 0
        self.held_nanos = 0
        self._lock = threading.Lock()

    # -- views ---------------------------------------------------------------------------

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cost_usd(self) -> Decimal:
        return nanos_to_usd(self.cost_nanos)

    def deadline(self) -> float | None:
        """The clock time at which ``max_seconds`` runs out, if set."""
        if self.limits.max_seconds is None:
            return None
        return self.started + self.limits.max_seconds

    def elapsed(self) -> float:
        return self.clock() - self.started

    # -- checks --------------------------------------------------------------------------

    def check_time(self) -> None:
        seconds = self.limits.max_seconds
        if seconds is not None and self.elapsed() >= seconds:
            raise self.time_exceeded()

    def time_exceeded(self) -> TimeLimitExceeded:
        """The error for this account's ``max_seconds``, with the time elapsed so far."""
        elapsed = self.elapsed()
        return TimeLimitExceeded(
            f"{self.name}: ran {elapsed:.2f}s, max_seconds={self.limits.max_seconds:g}",
            limit="max_seconds",
            allowed=self.limits.max_seconds,
            observed=round(elapsed, 3),
        )

    def output_room(
        self, input_tokens: int, input_pico: int, pico_per_output_token: int | None
    ) -> tuple[int, str] | None:
        """How many output tokens a call with this input may produce here, and the limit that
        bounds them (None: unbounded).

        Raises:
            AgentBudgetExceeded: when even the input does not fit, or the call count is spent.
        """
        lim = self.limits
        with self._lock:
            if lim.max_llm_calls is not None and (
                self.llm_calls + self.held_calls + 1 > lim.max_llm_calls
            ):
                raise LLMCallLimitExceeded(
                    f"{self.name}: LLM call {self.llm_calls + self.held_calls + 1} would pass "
                    f"max_llm_calls={lim.max_llm_calls}",
                    limit="max_llm_calls",
                    allowed=lim.max_llm_calls,
                    observed=self.llm_calls + self.held_calls + 1,
                )
            room: tuple[int, str] | None = None
            if lim.max_input_tokens is not None:
                used = self.input_tokens + self.held_input + input_tokens
                if used > lim.max_input_tokens:
                    raise TokenLimitExceeded(
                        f"{self.name}: the next LLM call's input (~{input_tokens} tokens) would "
                        f"bring input to {used}, past max_input_tokens={lim.max_input_tokens}",
                        limit="max_input_tokens",
                        allowed=lim.max_input_tokens,
                        observed=used,
                    )
            if lim.max_tokens is not None:
                left = lim.max_tokens - (
                    self.total_tokens + self.held_input + self.held_output + input_tokens
                )
                if left < MIN_OUTPUT_TOKENS:
                    raise TokenLimitExceeded(
                        f"{self.name}: the next LLM call (~{input_tokens} input tokens plus at "
                        f"least {MIN_OUTPUT_TOKENS} output) would pass max_tokens="
                        f"{lim.max_tokens}; {self.total_tokens} used",
                        limit="max_tokens",
                        allowed=lim.max_tokens,
                        observed=self.total_tokens + input_tokens + MIN_OUTPUT_TOKENS,
                    )
                room = (left, "max_tokens")
            if lim.max_output_tokens is not None:
                left = lim.max_output_tokens - (self.output_tokens + self.held_output)
                if left < MIN_OUTPUT_TOKENS:
                    # a smaller bound cannot be sent (OpenAI rejects it): stop here
                    raise TokenLimitExceeded(
                        f"{self.name}: output tokens are spent ({self.output_tokens} of "
                        f"max_output_tokens={lim.max_output_tokens}; a call needs room for "
                        f"{MIN_OUTPUT_TOKENS})",
                        limit="max_output_tokens",
                        allowed=lim.max_output_tokens,
                        observed=self.output_tokens + self.held_output,
                    )
                if room is None or left < room[0]:
                    room = (left, "max_output_tokens")
            if lim.max_cost_nanos is not None and pico_per_output_token is not None:
                left_pico = (
                    lim.max_cost_nanos - self.cost_nanos - self.held_nanos
                ) * 1000 - input_pico
                affordable = (
                    left_pico // pico_per_output_token if pico_per_output_token > 0 else None
                )
                if left_pico < 0 or (affordable is not None and affordable < MIN_OUTPUT_TOKENS):
                    observed = nanos_to_usd(self.cost_nanos + self.held_nanos)
                    least = nanos_to_usd(
                        pico_to_nanos(input_pico + pico_per_output_token * MIN_OUTPUT_TOKENS)
                    )
                    raise CostLimitExceeded(
                        f"{self.name}: the next LLM call (~{input_tokens} input tokens, at least "
                        f"${least}) would pass max_cost_usd=${lim.max_cost_usd}; "
                        f"${observed} spent or held",
                        limit="max_cost_usd",
                        allowed=lim.max_cost_usd,
                        observed=observed,
                    )
                if affordable is not None and (room is None or affordable < room[0]):
                    room = (affordable, "max_cost_usd")
            return room

    def check_tools(self, pending: int) -> None:
        """Raise if executing ``pending`` more tool calls would pass ``max_tool_calls``."""
        cap = self.limits.max_tool_calls
        if cap is not None and self.tool_calls + pending > cap:
            raise ToolCallLimitExceeded(
                f"{self.name}: the model asked for {pending} tool call(s) with "
                f"{self.tool_calls} already made; max_tool_calls={cap}. None of them ran.",
                limit="max_tool_calls",
                allowed=cap,
                observed=self.tool_calls + pending,
            )

    def check_after_call(self) -> None:
        """Backstop after a call settles: raise if actual usage passed a limit."""
        lim = self.limits
        checks: list[tuple[str, int | None, int, type[AgentBudgetExceeded]]] = [
            ("max_tokens", lim.max_tokens, self.total_tokens, TokenLimitExceeded),
            ("max_input_tokens", lim.max_input_tokens, self.input_tokens, TokenLimitExceeded),
            ("max_output_tokens", lim.max_output_tokens, self.output_tokens, TokenLimitExceeded),
        ]
        for name, allowed, observed, exc in checks:
            if allowed is not None and observed > allowed:
                raise exc(
                    f"{self.name}: {observed} tokens used, past {name}={allowed}",
                    limit=name,
                    allowed=allowed,
                    observed=observed,
                )
        if lim.max_cost_nanos is not None and self.cost_nanos > lim.max_cost_nanos:
            raise CostLimitExceeded(
                f"{self.name}: spent ${self.cost_usd}, past max_cost_usd=${lim.max_cost_usd}",
                limit="max_cost_usd",
                allowed=lim.max_cost_usd,
                observed=self.cost_usd,
            )

    # -- holds and charges ---------------------------------------------------------------

    def _hold(self, hold: Hold, sign: int) -> None:
        with self._lock:
            self.held_calls += sign
            self.held_input += sign * hold.input_tokens
            self.held_output += sign * hold.output_tokens
            self.held_nanos += sign * hold.nanos

    def charge(self, call: CallRecord) -> None:
        with self._lock:
            self.llm_calls += 1
            self.input_tokens += call.input_tokens
            self.output_tokens += call.output_tokens
            if call.nanos is None:
                self.unpriced_calls += 1
            else:
                self.cost_nanos += call.nanos

    def count_tool(self) -> None:
        with self._lock:
            self.tool_calls += 1


def hold(accounts: Sequence[Account], input_tokens: int, output_tokens: int, nanos: int) -> Hold:
    """Hold a call's worst case on every account (released by ``release``)."""
    h = Hold(input_tokens, output_tokens, nanos, accounts)
    for account in accounts:
        account._hold(h, +1)
    return h


def release(h: Hold) -> None:
    if not h.released:
        h.released = True
        for account in h.accounts:
            account._hold(h, -1)


@dataclass
class RunMeter:
    """Everything agentbudget knows about one run while it is going."""

    guard: Guard
    account: Account
    agent_name: str
    accounts: tuple[Account, ...]
    """The run's own account first, then enclosing runs', then enclosing scopes'."""
    user: str | None = None
    team: str | None = None
    parent: RunMeter | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    calls: list[CallRecord] = field(default_factory=list)
    tool_names: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    t0: float = field(default_factory=time.monotonic)
    finished_duration: float | None = None
    tripped: AgentBudgetExceeded | None = None
    route: Route | None = None
    proxies: dict[tuple[int, str], Any] = field(default_factory=dict)
    cleaned_up: list[Any] = field(default_factory=list)
    """Models whose ``_cleanup_on_run_end`` this run has forwarded."""

    def first_cleanup(self, model: Any) -> bool:
        """True the first time ``model`` is cleaned up in this run (then never again)."""
        if any(seen is model for seen in self.cleaned_up):
            return False
        self.cleaned_up.append(model)
        return True

    def needs_prices(self) -> bool:
        """True when every call must be priced: a dollar limit or allowance applies."""
        budgets = self.guard.budgets
        return (budgets is not None and budgets.needs_prices) or any(
            a.limits.max_cost_nanos is not None for a in self.accounts
        )

    def chain(self) -> list[RunMeter]:
        meters: list[RunMeter] = []
        meter: RunMeter | None = self
        while meter is not None:
            meters.append(meter)
            meter = meter.parent
        return meters

    def record_call(self, call: CallRecord) -> None:
        """Charge a priced (or unpriced) call to every account and every run in the chain."""
        for account in self.accounts:
            account.charge(call)
        for meter in self.chain():
            meter.calls.append(call)

    def record_tool(self, name: str) -> None:
        for account in self.accounts:
            account.count_tool()
        for meter in self.chain():
            meter.tool_names.append(name)

    def trip(self, exc: AgentBudgetExceeded) -> AgentBudgetExceeded:
        """Mark this run (and enclosing runs) as tripped; returns ``exc`` with its report."""
        for meter in self.chain():
            if meter.tripped is None:
                meter.tripped = exc
        outcome = "refused" if isinstance(exc, BudgetExhausted) else "tripped"
        exc.report = self.report(outcome=outcome, error=exc)
        return exc

    def report(
        self, *, outcome: str = "completed", error: BaseException | None = None
    ) -> RunReport:
        records = tuple(self.calls)
        input_tokens = sum(c.input_tokens for c in records)
        output_tokens = sum(c.output_tokens for c in records)
        duration = self.finished_duration
        if duration is None:
            duration = time.monotonic() - self.t0
        tripped_limit = getattr(error, "limit", None) if outcome in ("tripped", "refused") else None
        return RunReport.model_construct(
            run_id=self.run_id,
            user=self.user,
            team=self.team,
            agent=self.agent_name,
            calls=tuple(c.to_cost() for c in records),
            tool_calls=len(self.tool_names),
            tool_names=tuple(self.tool_names),
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            total_tokens=input_tokens + output_tokens,
            cost_usd=_total_usd(records),
            unpriced_calls=sum(1 for c in records if c.nanos is None),
            duration_s=round(duration, 6),
            started_at=self.started_at,
            route=self.route,
            outcome=outcome,
            tripped_limit=tripped_limit,
            error=None if error is None else describe_error(error),
        )


def _total_usd(records: tuple[CallRecord, ...]) -> Decimal | None:
    """The priced calls' sum; None when there were calls and none had a price."""
    priced = [c.nanos for c in records if c.nanos is not None]
    if records and not priced:
        return None
    return nanos_to_usd(sum(priced))


def describe_error(error: BaseException) -> str:
    """``"Type: message"`` for a report, even when the exception's ``__str__`` raises."""
    try:
        message = str(error)
    except Exception:
        message = f"<{type(error).__name__}: str() failed>"
    return f"{type(error).__name__}: {message}"


class MeterHooks(RunHooks[Any]):
    """Counts tool calls for the run, then calls the user's own hooks (never replaces them)."""

    def __init__(self, meter: RunMeter, user_hooks: RunHooksBase[Any, Any] | None) -> None:
        self.meter = meter
        self.user_hooks = user_hooks

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_llm_start(context, agent, system_prompt, input_items)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_llm_end(context, agent, response)

    async def on_agent_start(self, context: Any, agent: Any) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_agent_start(context, agent)

    async def on_agent_end(self, context: Any, agent: Any, output: Any) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_agent_end(context, agent, output)

    async def on_handoff(
        self, context: RunContextWrapper[Any], from_agent: Any, to_agent: Any
    ) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_handoff(context, from_agent, to_agent)

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Any, tool: Tool) -> None:
        meter = self.meter
        if meter.tripped is not None:
            raise meter.tripped
        try:
            for account in meter.accounts:
                account.check_time()
                account.check_tools(1)
        except AgentBudgetExceeded as exc:
            raise meter.trip(exc) from None
        meter.record_tool(getattr(tool, "name", type(tool).__name__))
        if self.user_hooks is not None:
            await self.user_hooks.on_tool_start(context, agent, tool)

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Any, tool: Tool, result: object
    ) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_tool_end(context, agent, tool, result)
        # A nested Agent.as_tool run that tripped stops the whole run here, before the
        # model sees the tool's (error) text.
        if self.meter.tripped is not None:
            raise self.meter.tripped
