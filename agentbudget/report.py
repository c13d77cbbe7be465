"""What a run cost: ``RunReport`` and one ``LLMCallCost`` per LLM request."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

__all__ = ["LLMCallCost", "Route", "RunReport", "report_of"]

Outcome = Literal["completed", "tripped", "refused", "error", "running"]


class LLMCallCost(BaseModel):
    """One LLM request, priced with the model that served it."""

    model_config = ConfigDict(frozen=True)

    agent: str
    model: str
    """The model name as the run resolved it (a ``Model`` instance's ``model`` attribute)."""
    price_key: str | None
    """The price-table entry used (``"*"`` for a fallback price), None when unpriced."""
    input_tokens: int
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    output_tokens: int
    reasoning_tokens: int = 0
    cost_usd: Decimal | None
    """Exact cost, rounded up to a nano-dollar; None when the model has no price."""
    estimated: bool = False
    """True when the provider reported no usage (error, cancellation, a stream cut short):
    input is the pre-flight estimate and output the tokens counted from the stream."""
    streamed: bool = False
    degraded: str | None = None
    """``"downgrade"`` or ``"cap_output"`` when a budget's degrade chain changed the call;
    ``"fallback"`` when a ``FallbackRouter`` moved the run's calls to its next model."""
    price_source: str | None = None
    """Where the price came from: ``"bundled 2026.11.29"``, ``"genai-prices 0.2.3"``,
    ``"local"``, a price file, ``"with_prices"``; None when unpriced."""
    local: bool = False
    """A local model (Ollama, or declared with ``PriceTable.with_local_models``): $0."""
    service_tier: str | None = None
    """The service tier the response reported (or, when it reported none, the one asked
    for in ``extra_args``): ``"flex"``, ``"priority"``, ``"batch"``..."""
    priced_at_standard_rate: bool = False
    """The service tier has no published rates for this model: priced at the standard
    rate."""
    context_saved_tokens: int = 0
    """Input tokens a ``ContextBudget`` removed from this call before it was sent."""
    context_saved_usd: Decimal = Decimal("0")
    """``context_saved_tokens`` at this call's uncached input rate (0 when unpriced)."""
    cache_saved_usd: Decimal = Decimal("0")
    """What the provider's prompt cache saved on this call: its cost with every input
    token at the uncached rate, minus its cost (0 when unpriced or nothing was cached)."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def cache_hit_ratio(self) -> float:
        """The share of this call's input tokens read from the provider's prompt cache."""
        return self.cached_input_tokens / self.input_tokens if self.input_tokens else 0.0


class Route(BaseModel):
    """The model a router chose for a run, and why (what a ``Router`` returns, and what the
    run's report, the sinks and the ledgers record).

    ``model`` is a model name or an ``agents.Model`` instance; the report keeps its name
    (``model_name``): JSON holds names only. ``model_settings`` (optional overrides merged
    into the agent's settings) is applied, not recorded.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    model: Any
    """A model name, or an ``agents.Model`` instance."""
    reason: str
    tier: str | None = None
    """The router's tier name (``"simple"``, ``"complex"``, ``"local"``...), when it has tiers."""
    model_settings: Any = Field(default=None, exclude=True)
    """An ``agents.ModelSettings`` of overrides, resolved over the agent's own."""
    fallback: str | None = None
    """Set when a ``FallbackRouter`` moved the run to the next model of its chain: the
    model it moved to and the error that made it move."""
    classifier_cost_usd: Decimal | None = None
    """What a ``ClassifierRouter``'s labelling call cost (also a line in the run's calls)."""

    @property
    def model_name(self) -> str:
        """The model's name: ``model`` itself, or a ``Model`` instance's ``model`` attribute."""
        if isinstance(self.model, str):
            return self.model
        name = getattr(self.model, "model", None)
        return name if isinstance(name, str) else type(self.model).__name__

    @field_validator("model")
    @classmethod
    def _model_or_name(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value:
                raise ValueError("a route's model name must not be empty")
            return value
        if callable(getattr(value, "get_response", None)):
            return value
        raise ValueError(f"a route's model is a model name or an agents.Model, got {value!r}")

    @field_serializer("model")
    def _model_as_name(self, model: Any) -> str:
        return self.model_name


class RunReport(BaseModel):
    """The cost of one run. Frozen; round-trips through ``model_dump_json``."""

    model_config = ConfigDict(frozen=True)

    run_id: str
    user: str | None = None
    team: str | None = None
    agent: str
    """The starting agent's name."""
    calls: tuple[LLMCallCost, ...] = ()
    tool_calls: int = 0
    tool_names: tuple[str, ...] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: Decimal | None = Decimal("0")
    """Exact sum of the priced calls' costs; None when the run made LLM calls and none of
    them could be priced (the cost is unknown, not zero). ``unpriced_calls`` counts the
    calls left out of the sum."""
    unpriced_calls: int = 0
    duration_s: float = 0.0
    started_at: datetime
    cache_hit: bool = False
    """Set by the response cache: True when the run was answered from the cache (no LLM
    call, ``cost_usd`` 0). Always False when no cache is configured."""
    saved_usd: Decimal = Decimal("0")
    """Set by the response cache on a hit: what the cached run cost when it was stored.
    0 without a cache or on a miss."""
    route: Route | None = None
    """Set by the router: the model it chose for the run and why. None when no router is
    configured."""
    context_saved_tokens: int = 0
    """Input tokens a ``ContextBudget`` removed from the run's calls (sum of the calls')."""
    context_saved_usd: Decimal = Decimal("0")
    """``context_saved_tokens`` at each call's uncached input rate."""
    cached_input_tokens: int = 0
    """Input tokens the provider read from its prompt cache (sum of the calls')."""
    cache_saved_usd: Decimal = Decimal("0")
    """What the provider's prompt cache saved against the uncached input rate."""
    outcome: Outcome = "completed"
    """``completed``, ``tripped`` (a limit stopped the run), ``refused`` (a budget refused
    it), ``error`` (the run raised), or ``running`` (``report_of`` on a streamed run whose
    stream has not finished yet)."""
    tripped_limit: str | None = None
    error: str | None = None
    """The exception type and message when ``outcome`` is ``"tripped"`` or ``"error"``."""

    @property
    def llm_calls(self) -> int:
        return len(self.calls)

    @property
    def cache_hit_ratio(self) -> float:
        """The share of the run's input tokens read from the provider's prompt cache."""
        return self.cached_input_tokens / self.input_tokens if self.input_tokens else 0.0

    def cost_by_model(self) -> dict[str, Decimal]:
        """Priced cost per model name."""
        totals: dict[str, Decimal] = {}
        for call in self.calls:
            if call.cost_usd is not None:
                totals[call.model] = totals.get(call.model, Decimal(0)) + call.cost_usd
        return totals

    def cost_by_agent(self) -> dict[str, Decimal]:
        """Priced cost per agent name."""
        totals: dict[str, Decimal] = {}
        for call in self.calls:
            if call.cost_usd is not None:
                totals[call.agent] = totals.get(call.agent, Decimal(0)) + call.cost_usd
        return totals


_REPORT_ATTRIBUTE = "_agentbudget_report"


def attach_report(result: Any, report: Any) -> None:
    """Attach a report (or a callable producing one) to a run result."""
    object.__setattr__(result, _REPORT_ATTRIBUTE, report)


def report_of(result: Any) -> RunReport:
    """The ``RunReport`` of a result produced under agentbudget (``Guard`` or ``budget()``).

    For a streamed run the report is current as of the call, with ``outcome="running"``
    until the stream has been consumed; then it is final.

    Raises:
        LookupError: when the result was not produced under agentbudget.
    """
    attached = getattr(result, _REPORT_ATTRIBUTE, None)
    if attached is None:
        raise LookupError(
            "this result was not produced under agentbudget; run it with Guard.run() or "
            "inside a budget() scope"
        )
    if callable(attached):
        report = attached()
        assert isinstance(report, RunReport)
        return report
    assert isinstance(attached, RunReport)
    return attached
