"""The run meter: everything agentbudget knows about one governed run while it goes.

A ``RunMeter`` holds the run's policy, its accounts (its own, enclosing runs' and
enclosing scopes'), the calls and tool calls recorded so far and, once a limit stops the
run, the error that tripped it. It builds the run's ``RunReport``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Literal

from agents import Model

from .accounts import Account, CallRecord
from .errors import AgentBudgetExceeded, BudgetExhausted
from .money import nanos_to_usd
from .policy import RunPolicy
from .report import Route, RunReport

__all__ = ["FallbackChain", "RunMeter", "describe_error", "outcome_of"]

Outcome = Literal["completed", "tripped", "refused", "error"]


def outcome_of(error: BaseException | None) -> Outcome:
    """How a run ended, from what it raised (None: it completed)."""
    if error is None:
        return "completed"
    if isinstance(error, AgentBudgetExceeded):
        return "refused" if isinstance(error, BudgetExhausted) else "tripped"
    return "error"


@dataclass
class FallbackChain:
    """A run's fallback: the routed agent's next model after a context-window, rate-limit
    or provider error, taken once per run (``FallbackRouter``)."""

    agent: str
    """The name of the agent whose calls fall back (the routed starting agent)."""
    target: str | Model
    moved: tuple[Model, str] | None = None
    """The model (and price name) the agent's calls moved to, once they have."""


@dataclass
class RunMeter:
    """Everything agentbudget knows about one run while it is going."""

    policy: RunPolicy
    account: Account
    agent_name: str
    accounts: tuple[Account, ...]
    """The run's own account first, then enclosing runs', then enclosing scopes'."""
    user: str | None = None
    team: str | None = None
    parent: RunMeter | None = None
    calls: list[CallRecord] = field(default_factory=list)
    tool_names: list[str] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    t0: float = field(default_factory=time.monotonic)
    finished_duration: float | None = None
    tripped: AgentBudgetExceeded | None = None
    route: Route | None = None
    fallback: FallbackChain | None = None
    """Set by a ``FallbackRouter``: where the routed agent's calls go on a provider error."""
    cache_hit: bool = False
    """The run was answered from the response cache (no LLM call)."""
    saved_usd: Decimal = Decimal(0)
    """On a cache hit: what the cached run cost."""
    proxies: dict[tuple[int, str], Model] = field(default_factory=dict)
    """The run's model proxies, by (inner model, agent name)."""
    cleaned_up: list[Model] = field(default_factory=list)
    """Models whose ``_cleanup_on_run_end`` this run has forwarded."""
    context_saved_pending: int = 0
    """Input tokens the context budget removed from the next call (its record takes them)."""
    _run_id: str | None = field(default=None, repr=False)

    @property
    def run_id(self) -> str:
        """The run's id (32 hex digits: 128 random bits), drawn when first read: a run
        whose report nobody reads never pays for it."""
        run_id = self._run_id
        if run_id is None:
            run_id = self._run_id = os.urandom(16).hex()  # 32 hex digits, as uuid4().hex
        return run_id

    def take_context_saved(self) -> int:
        """The tokens removed from the call being recorded (then 0 for the next one)."""
        saved, self.context_saved_pending = self.context_saved_pending, 0
        return saved

    def first_cleanup(self, model: Model) -> bool:
        """True the first time ``model`` is cleaned up in this run (then never again)."""
        if any(seen is model for seen in self.cleaned_up):
            return False
        self.cleaned_up.append(model)
        return True

    def needs_prices(self) -> bool:
        """True when every call must be priced: a dollar limit or allowance applies."""
        budgets = self.policy.budgets
        if budgets is not None and budgets.needs_prices:
            return True
        for account in self.accounts:  # a loop, not any() over a generator: once per run
            if account.limits.max_cost_nanos is not None:
                return True
        return False

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
        if self.parent is None:
            self.calls.append(call)
            return
        for meter in self.chain():
            meter.calls.append(call)

    def record_tool(self, name: str) -> None:
        for account in self.accounts:
            account.count_tool()
        if self.parent is None:
            self.tool_names.append(name)
            return
        for meter in self.chain():
            meter.tool_names.append(name)

    def trip(self, exc: AgentBudgetExceeded) -> AgentBudgetExceeded:
        """Mark this run (and enclosing runs) as tripped; returns ``exc`` with its report."""
        for meter in self.chain():
            if meter.tripped is None:
                meter.tripped = exc
        exc.report = self.report(outcome=outcome_of(exc), error=exc)
        return exc

    def report(
        self, *, outcome: str = "completed", error: BaseException | None = None
    ) -> RunReport:
        records = tuple(self.calls)
        # one pass over the calls (a report is built once per run that someone reads)
        input_tokens = output_tokens = cached = unpriced = 0
        context_tokens = context_nanos = cache_nanos = priced_nanos = 0
        for c in records:
            input_tokens += c.input_tokens
            output_tokens += c.output_tokens
            cached += c.cached_input_tokens
            context_tokens += c.context_saved_tokens
            context_nanos += c.context_saved_nanos
            cache_nanos += c.cache_saved_nanos
            if c.nanos is None:
                unpriced += 1
            else:
                priced_nanos += c.nanos
        duration = self.finished_duration
        if duration is None:
            duration = time.monotonic() - self.t0
        tripped_limit = getattr(error, "limit", None) if outcome in ("tripped", "refused") else None
        return _construct_report(
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
            # None when there were calls and none had a price
            cost_usd=None if records and unpriced == len(records) else _usd(priced_nanos),
            unpriced_calls=unpriced,
            duration_s=round(duration, 6),
            started_at=self.started_at,
            cache_hit=self.cache_hit,
            saved_usd=self.saved_usd,
            route=self.route,
            context_saved_tokens=context_tokens,
            context_saved_usd=_usd(context_nanos),
            cached_input_tokens=cached,
            cache_saved_usd=_usd(cache_nanos),
            outcome=outcome,
            tripped_limit=tripped_limit,
            error=None if error is None else describe_error(error),
        )


_REPORT_FIELDS = frozenset(RunReport.model_fields)


def _construct_report(**values: object) -> RunReport:
    """``RunReport.model_construct(**values)`` for a complete set of trusted values,
    without its per-field loop (12 us of a cache hit's 75): what ``model_construct``
    ends with when every field is given and the model has no extras or private fields."""
    assert values.keys() == _REPORT_FIELDS
    report: RunReport = RunReport.__new__(RunReport)
    object.__setattr__(report, "__dict__", values)
    object.__setattr__(report, "__pydantic_fields_set__", set(values))
    object.__setattr__(report, "__pydantic_extra__", None)
    object.__setattr__(report, "__pydantic_private__", None)
    return report


_ZERO = Decimal(0)


def _usd(nanos: int) -> Decimal:
    return _ZERO if nanos == 0 else nanos_to_usd(nanos)


def describe_error(error: BaseException) -> str:
    """``"Type: message"`` for a report, even when the exception's ``__str__`` raises."""
    try:
        message = str(error)
    except Exception:
        message = f"<{type(error).__name__}: str() failed>"
    return f"{type(error).__name__}: {message}"
