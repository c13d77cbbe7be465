"""Accounts: the counters and limits of one run or one ``budget()`` scope.

Every run has an ``Account``, and so has every active ``budget()`` scope. Each LLM call
and tool call is charged once to every account in force (the run's own, the enclosing
runs' for nested ``Agent.as_tool`` runs, and every enclosing scope's). Before an LLM
call the worst case is *held* on each account, so concurrent calls inside one run or
scope cannot jointly overshoot. Nothing here knows of the Agents SDK; the clock is
injectable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import NamedTuple, NoReturn

from .errors import (
    CostLimitExceeded,
    LLMCallLimitExceeded,
    TimeLimitExceeded,
    TokenLimitExceeded,
    ToolCallLimitExceeded,
)
from .limits import MIN_OUTPUT_TOKENS, Limits
from .money import affordable_output, nanos_to_usd, pico_to_nanos
from .report import LLMCallCost

__all__ = ["MIN_OUTPUT_TOKENS", "Account", "CallRecord", "Hold", "hold", "release"]


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
    context_saved_tokens: int = 0
    context_saved_nanos: int = 0
    cache_saved_nanos: int = 0

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
            context_saved_tokens=self.context_saved_tokens,
            context_saved_usd=nanos_to_usd(self.context_saved_nanos),
            cache_saved_usd=nanos_to_usd(self.cache_saved_nanos),
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
                left = lim.max_cost_nanos - self.cost_nanos - self.held_nanos
                affordable = affordable_output(left, input_pico, pico_per_output_token)
                if left * 1000 < input_pico or (
                    affordable is not None and affordable < MIN_OUTPUT_TOKENS
                ):
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
        # unrolled (no list of checks per call): this runs after every call on every account
        if lim.max_tokens is not None and self.total_tokens > lim.max_tokens:
            self._token_error("max_tokens", lim.max_tokens, self.total_tokens)
        if lim.max_input_tokens is not None and self.input_tokens > lim.max_input_tokens:
            self._token_error("max_input_tokens", lim.max_input_tokens, self.input_tokens)
        if lim.max_output_tokens is not None and self.output_tokens > lim.max_output_tokens:
            self._token_error("max_output_tokens", lim.max_output_tokens, self.output_tokens)
        if lim.max_cost_nanos is not None and self.cost_nanos > lim.max_cost_nanos:
            raise CostLimitExceeded(
                f"{self.name}: spent ${self.cost_usd}, past max_cost_usd=${lim.max_cost_usd}",
                limit="max_cost_usd",
                allowed=lim.max_cost_usd,
                observed=self.cost_usd,
            )

    def _token_error(self, name: str, allowed: int, observed: int) -> NoReturn:
        raise TokenLimitExceeded(
            f"{self.name}: {observed} tokens used, past {name}={allowed}",
            limit=name,
            allowed=allowed,
            observed=observed,
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
