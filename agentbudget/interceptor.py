"""The metered model: every LLM call of a governed run passes through here.

While a run is governed, the model the SDK resolves for each call is wrapped in a
``MeteredModel``. Before the request is sent it estimates the input (tiktoken over
instructions, input items and tool schemas), checks and holds the worst case on every
account, and bounds the request's output (``max_tokens``) to what the limits still
allow, so a provider that honours the bound cannot overshoot. While a response
streams it counts output tokens from the deltas and stops the stream the moment a
limit would be crossed. After the response it charges the actual usage, priced with
the model that served it, and refuses to let a batch of tool calls run when the batch
would pass ``max_tool_calls``. With budgets, it reserves the call's worst case and,
when that does not fit, lowers the output bound or walks the degrade chain
(``_admit``); the replacement model comes from ``resolution``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from agents import Agent, Handoff, Model, ModelProvider, ModelSettings, Tool
from agents.agent_output import AgentOutputSchemaBase
from agents.items import ModelResponse, TResponseInputItem, TResponseStreamEvent
from agents.models.interface import ModelTracing
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from agents.retry import ModelRetryAdvice, ModelRetryAdviceRequest

from ._sdk import paid_response_locals
from .accounts import MIN_OUTPUT_TOKENS, Account, CallRecord, Hold, hold, release
from .budgets import Budgets, DegradeStep, Downgrade, Refuse, Reservation
from .errors import (
    AgentBudgetError,
    AgentBudgetExceeded,
    CostLimitExceeded,
    TokenLimitExceeded,
    UnknownModelError,
)
from .meter import RunMeter
from .money import pico_to_nanos
from .pricing import ModelPrice
from .resolution import price_name, replacement
from .stores import ReserveResult
from .tokens import (
    count_text,
    encoding_for_model,
    estimate_call_input,
    get_encoding,
    input_upper_bound,
    request_tool_tokens,
)
from .usage import TokenUsage

if TYPE_CHECKING:
    from openai.types.responses.response_prompt_param import ResponsePromptParam

logger = logging.getLogger("agentbudget")

DEFAULT_OUTPUT_BOUND = 16_384
"""Output bound for a call when neither its settings nor its price entry give one."""

_LOCAL_TOOL_CALL_TYPES = frozenset(
    {
        "computer_call",
        "local_shell_call",
        "shell_call",
        "apply_patch_call",
        "custom_tool_call",
    }
)
_OUTPUT_DELTA_TYPES = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
        "response.function_call_arguments.delta",
        "response.custom_tool_call_input.delta",
        "response.audio.transcript.delta",
    }
)
_TERMINAL_FAILURES = frozenset({"response.incomplete", "response.failed"})
_NO_NAMES: set[str] = set()  # never changed: the handoff names of a call without handoffs
_warned_unpriced: set[str] = set()
_warned_no_usage: set[str] = set()


def pending_tool_calls(response: ModelResponse, handoff_names: set[str]) -> int:
    """How many local tool executions a response asks for (handoffs excluded)."""
    count = 0
    for item in response.output:
        kind = getattr(item, "type", None)
        if kind is None and isinstance(item, dict):
            kind = item.get("type")
        if kind == "function_call":
            name = getattr(item, "name", None) or (
                item.get("name") if isinstance(item, dict) else None
            )
            if name not in handoff_names:
                count += 1
        elif kind in _LOCAL_TOOL_CALL_TYPES:
            count += 1
    return count


@dataclasses.dataclass
class CallRequest:
    """What the SDK asked one LLM call to send."""

    instructions: str | None
    input: str | list[TResponseInputItem]
    settings: ModelSettings
    tools: Sequence[Tool]
    handoffs: Sequence[Handoff[Any, Any]]
    output_schema: AgentOutputSchemaBase | None = None


@dataclasses.dataclass
class _Measure:
    price_key: str | None
    price: ModelPrice | None
    input_tokens: int
    input_pico: int
    pico_per_output: int | None
    bound: int
    binding: tuple[str, Account] | None
    limited: bool
    """Some limit assumed the output bound (so the request must carry it)."""


@dataclasses.dataclass
class CallPlan:
    """What agentbudget decided before one LLM call."""

    inner: Model
    """The model that will serve the call (a ``Downgrade`` may have swapped it)."""
    model_name: str
    price_key: str | None
    price: ModelPrice | None
    input_estimate: int
    """The input held for the call: exact (tiktoken) or, far from limits, an upper bound."""
    input_exact: bool
    input_pico: int
    """The input's worst-case cost in pico-USD (1e-12), at the highest rate an input token
    can be billed at (a cache write, where it costs more than uncached input)."""
    pico_per_output: int | None
    output_bound: int
    binding: tuple[str, Account] | None
    """The limit (and its account) that bounded the output, when agentbudget lowered it."""
    hold: Hold
    settings: ModelSettings
    request: CallRequest
    degraded: str | None = None
    """``"downgrade"`` / ``"cap_output"`` when a budget's degrade chain changed the call."""
    reservation: Any = None
    """The budget-store reservation held for this call, if budgets apply."""
    counted_input: int | None = None
    """The input's tokens as the provider counted them, when the model asked it."""
    budget_cut: Callable[[str], AgentBudgetExceeded] | None = None
    """Set when a budget allowance lowered the output bound: the error for a response cut
    there (given what happened)."""

    @property
    def cut_by_limit(self) -> bool:
        """Whether the output bound was lowered by a limit or an allowance."""
        return self.binding is not None or self.budget_cut is not None

    @property
    def worst_nanos(self) -> int:
        return _worst_nanos(self.input_pico, self.pico_per_output, self.output_bound)


class MeteredModel(Model):
    """Wraps the model that serves one agent's calls inside a governed run."""

    def __init__(
        self,
        inner: Model,
        *,
        name: str,
        agent: Agent[Any],
        meter: RunMeter,
        provider: ModelProvider | None = None,
    ) -> None:
        self.inner = inner
        self.name = name
        self.agent = agent
        self.meter = meter
        self.provider = provider
        self.swapped: list[Model] = []
        """Models a ``Downgrade`` swapped in for this one during the run."""

    def __getattr__(self, item: str) -> Any:
        # Everything the SDK may ask of the model that this wrapper does not define.
        return getattr(self.inner, item)

    @property
    def model(self) -> str:
        return self.name

    def get_retry_advice(self, request: ModelRetryAdviceRequest) -> ModelRetryAdvice | None:
        if isinstance(request.error, AgentBudgetError):
            return ModelRetryAdvice(suggested=False, reason="agentbudget limit")
        return self.inner.get_retry_advice(request)

    async def close(self) -> None:
        await self.inner.close()

    async def _cleanup_on_run_end(self, owner: object) -> None:
        # ``Model`` defines this as a no-op, so ``__getattr__`` never forwards it. The SDK
        # calls it once per model object it resolved; one inner model may sit behind
        # several proxies (one per agent), so each inner model is cleaned up once per run.
        error: Exception | None = None
        for model in (self.inner, *self.swapped):
            if not self.meter.first_cleanup(model):
                continue
            try:
                await model._cleanup_on_run_end(owner)
            except Exception as exc:
                error = error or exc
        if error is not None:
            raise error

    # -- planning ----------------------------------------------------------------------

    def _price(self, name: str) -> tuple[str | None, ModelPrice | None]:
        try:
            return self.meter.policy.prices.lookup(name)
        except UnknownModelError:
            if self.meter.needs_prices():
                raise
            if name not in _warned_unpriced:
                _warned_unpriced.add(name)
                logger.warning(
                    "agentbudget: no price for model %r; its calls are recorded as unpriced "
                    "(cost_usd=None). Add one with PriceTable.with_prices().",
                    name,
                )
            return None, None

    def resolve(self, target: str | Model) -> tuple[Model, str]:
        """The ``Model`` and price name that replace this proxy's model for ``target``
        (a ``Downgrade``); kept so the run's end cleans it up."""
        model, name = replacement(self.inner, target, self.provider)
        if model is not self.inner and not any(seen is model for seen in self.swapped):
            self.swapped.append(model)
        return model, name

    def plan(
        self,
        request: CallRequest,
        *,
        inner: Model | None = None,
        name: str | None = None,
        output_cap: int | None = None,
        degraded: str | None = None,
        counted_input: int | None = None,
    ) -> CallPlan:
        """Check every account and hold the call's worst case on them.

        ``counted_input`` is the input's tokens as the provider counted them, when the
        model asked it (used for ``inner``'s calls instead of the estimate).

        Far from every limit (and without budgets) the input is bounded by its UTF-8 size
        instead of being tokenized; when that bound would come near a limit, the input is
        counted exactly and the decision made on the exact count.

        Raises:
            AgentBudgetExceeded: the call cannot fit (the run is marked tripped).
        """
        meter = self.meter
        if meter.tripped is not None:
            raise meter.tripped
        inner = inner if inner is not None else self.inner
        name = name if name is not None else self.name
        if inner is not self.inner:
            counted_input = None  # counted for the model that was replaced
        user_bound = user_output_bound(request.settings)
        if _may_bound_itself(inner):
            default_bound = getattr(inner, "default_max_tokens", None)
            if isinstance(default_bound, int) and user_bound is None:
                # a model that always sends a bound (AnthropicModel: Anthropic requires one)
                # is planned, held and reserved at that bound, not at the price entry's
                request = dataclasses.replace(
                    request, settings=_with(request.settings, max_tokens=default_bound)
                )
                user_bound = default_bound
        tool_tokens = request_tool_tokens(
            name, request.tools, request.handoffs, request.output_schema
        )
        measured: _Measure | None = None
        exact = True
        if counted_input is not None:
            try:
                measured = self._measure(request, name, counted_input, user_bound)
            except AgentBudgetExceeded as exc:
                raise meter.trip(exc) from None
        elif meter.policy.budgets is None and output_cap is None:
            upper = input_upper_bound(
                name, request.instructions, request.input, tool_tokens=tool_tokens
            )
            try:
                measured = self._measure(request, name, upper, user_bound)
            except AgentBudgetExceeded:
                measured = None
            if measured is not None and measured.binding is not None:
                measured = None  # near a limit: decide on the exact count
            exact = measured is None
        try:
            if measured is None:
                estimate = estimate_call_input(
                    name, request.instructions, request.input, tool_tokens=tool_tokens
                )
                measured = self._measure(request, name, estimate.tokens, user_bound)
        except AgentBudgetExceeded as exc:
            raise meter.trip(exc) from None
        bound = measured.bound
        binding = measured.binding
        settings = request.settings
        if meter.policy.prompt_cache_key is not None:
            settings = with_prompt_cache_key(
                inner, settings, meter.policy.prompt_cache_key, meter.team or meter.user, self.agent
            )
        if output_cap is not None and output_cap < bound:
            bound = output_cap
            binding = None  # the budget's cap, not a limit's, bounds this call
        # Whenever a limit or a reservation assumes an output bound, the request carries it.
        if measured.limited or output_cap is not None or meter.policy.budgets is not None:
            # (a prompt_cache_key never changes the caller's bound: ``user_bound`` stands)
            if user_bound is None or bound < user_bound:
                settings = with_output_bound(inner, settings, bound)
        worst = _worst_nanos(measured.input_pico, measured.pico_per_output, bound)
        held = hold(meter.accounts, measured.input_tokens, bound, worst)
        return CallPlan(
            inner=inner,
            model_name=name,
            price_key=measured.price_key,
            price=measured.price,
            input_estimate=measured.input_tokens,
            input_exact=exact,
            input_pico=measured.input_pico,
            pico_per_output=measured.pico_per_output,
            output_bound=bound,
            binding=binding,
            hold=held,
            settings=settings,
            request=request,
            degraded=degraded,
            counted_input=counted_input,
        )

    def _measure(
        self, request: CallRequest, name: str, input_tokens: int, user_bound: int | None
    ) -> _Measure:
        """Price a call with ``input_tokens`` of input and find the output room every account
        leaves it.

        Raises:
            AgentBudgetExceeded: the call cannot fit (nothing is marked or held).
        """
        for account in self.meter.accounts:
            account.check_time()
        price_key, price = self._price(name)
        bound = user_bound  # user_output_bound(request.settings), found once by plan
        if bound is None:
            bound = (price.max_output_tokens if price else None) or DEFAULT_OUTPUT_BOUND
        input_pico = 0
        per_output: int | None = None
        if price is not None:
            rated = price
            if request.settings.extra_args:  # a service tier asked for: priority costs more
                tiered = _tier_price(price, request.settings, None)[0]
                rated = tiered if tiered.output > price.output else price
            # the highest rate an input token can be billed at (a cache write costs more)
            input_rate, per_output = rated.rates_for(input_tokens).worst_pico_rates()
            input_pico = input_tokens * input_rate
        room: tuple[int, str, Account] | None = None
        for account in self.meter.accounts:
            account_room = account.output_room(input_tokens, input_pico, per_output)
            if account_room is not None and (room is None or account_room[0] < room[0]):
                room = (*account_room, account)
        binding: tuple[str, Account] | None = None
        if room is not None and room[0] < bound:
            bound = max(room[0], MIN_OUTPUT_TOKENS)
            binding = (room[1], room[2])
        return _Measure(
            price_key, price, input_tokens, input_pico, per_output, bound, binding, room is not None
        )

    async def _prepare(self, request: CallRequest) -> CallPlan:
        counted: int | None = None
        moved = self._moved()
        if moved is None and getattr(self.inner, "count_tokens", False) is True:
            # a model that asks its provider for the input's tokens (AnthropicModel with
            # count_tokens=True): the call is planned, held and reserved at that count.
            # Not once the run moved to its fallback (the count is of this model), and a
            # count that fails (the provider is down) falls back to the offline estimate.
            try:
                estimate = await self.inner.count_input_tokens(  # type: ignore[attr-defined]
                    request.instructions,
                    request.input,
                    request.tools,
                    request.handoffs,
                    request.output_schema,
                )
                counted = estimate.tokens
            except Exception as exc:
                logger.warning(
                    "agentbudget: counting the input of %r failed (%s); the call is planned "
                    "on the offline estimate",
                    self.name,
                    exc,
                )
        plan = (
            self.plan(request, counted_input=counted)
            if moved is None
            else self.plan(
                request, inner=moved[0], name=moved[1], degraded="fallback", counted_input=counted
            )
        )
        budgets = self.meter.policy.budgets
        if budgets is None:
            return plan
        try:
            return await self._admit(budgets, request, plan)
        except AgentBudgetExceeded as exc:
            raise self.meter.trip(exc) from None

    # -- fallback (FallbackRouter) -------------------------------------------------------

    def _moved(self) -> tuple[Model, str] | None:
        chain = self.meter.fallback
        if chain is None or chain.agent != self.agent.name:
            return None
        return chain.moved

    def _fall_back(self, exc: BaseException) -> bool:
        """Move this run's routed agent to its fallback model after ``exc``, once per run.

        Returns:
            True when the call should be sent again (to the fallback model).
        """
        chain = self.meter.fallback
        if chain is None or chain.agent != self.agent.name or chain.moved is not None:
            return False
        reason = fallback_reason(exc)
        if reason is None:
            return False
        chain.moved = self.resolve(chain.target)
        meter = self.meter
        note = f"{chain.moved[1]} after {reason}"
        if meter.route is not None:
            meter.route = meter.route.model_copy(update={"fallback": note})
        logger.info("agentbudget: run %s fell back to %s", meter.run_id, note)
        return True

    # -- budgets: reserve, or degrade ----------------------------------------------------

    async def _admit(self, budgets: Budgets, request: CallRequest, plan: CallPlan) -> CallPlan:
        """Reserve ``plan``'s worst case on the budgets, degrading the call if it does not fit.

        A call that does not fit is first sent with its output bound lowered to what every
        allowance leaves (as ``Limits`` do); below ``budgets.min_output_tokens`` the degrade
        chain (``on_exhausted``) applies. Returns the plan to send. Every other plan's holds
        are released: a refused or failed admission leaves no hold behind.

        Raises:
            BudgetExhausted: the chain ends without a fit (``Refuse``, or no steps left).
            StoreUnavailable: the store is unreachable and the policy fails closed.
        """
        meter = self.meter
        steps = iter(budgets.on_exhausted)
        lowered = 0
        try:
            while True:
                reservation, result = await budgets.reserve_call(
                    meter.user,
                    meter.team,
                    plan.input_estimate + plan.output_bound,
                    plan.worst_nanos,
                )
                if result.ok:
                    plan.reservation = reservation
                    if plan.degraded is not None:
                        logger.info(
                            "agentbudget: %s call of %r sent to %s",
                            plan.degraded,
                            meter.agent_name,
                            plan.model_name,
                        )
                    return plan
                fitting = budgets.output_that_fits(
                    reservation,
                    result,
                    input_tokens=plan.input_estimate,
                    input_pico=plan.input_pico,
                    pico_per_output=plan.pico_per_output,
                )
                if (
                    fitting is not None
                    and budgets.min_output_tokens <= fitting < plan.output_bound
                    and lowered <= len(reservation.charges)
                ):
                    # Lower the output bound to what the allowance leaves, as Limits do.
                    lowered += 1
                    release(plan.hold)
                    plan = self.plan(
                        request,
                        inner=plan.inner,
                        name=plan.model_name,
                        output_cap=fitting,
                        degraded=plan.degraded,
                        counted_input=plan.counted_input,
                    )
                    plan.budget_cut = budgets.cut_error(reservation, result, fitting)
                    continue
                plan = self._degrade(budgets, request, plan, reservation, result, steps)
        except BaseException:
            release(plan.hold)
            raise

    def _degrade(
        self,
        budgets: Budgets,
        request: CallRequest,
        plan: CallPlan,
        reservation: Reservation,
        result: ReserveResult,
        steps: Iterator[DegradeStep],
    ) -> CallPlan:
        """The next degraded plan, or raise ``BudgetExhausted`` when no step applies."""
        for step in steps:
            if isinstance(step, Refuse):
                raise budgets.exhausted(reservation, result, refusal=step.message)
            if isinstance(step, Downgrade):
                if not self._cheaper(step.model, plan):
                    # The call already runs on this model or a cheaper one (a router's
                    # budget-aware tier): no double downgrade, the chain goes on.
                    continue
                inner, name = self.resolve(step.model)
                release(plan.hold)
                return self.plan(request, inner=inner, name=name, degraded="downgrade")
            fitting = budgets.output_that_fits(
                reservation,
                result,
                input_tokens=plan.input_estimate,
                input_pico=plan.input_pico,
                pico_per_output=plan.pico_per_output,
            )
            if fitting is None or fitting < step.max_tokens:
                continue
            release(plan.hold)
            return self.plan(
                request,
                inner=plan.inner,
                name=plan.model_name,
                output_cap=fitting,
                degraded="cap_output" if plan.degraded is None else plan.degraded + "+cap",
                counted_input=plan.counted_input,
            )
        raise budgets.exhausted(reservation, result, refusal=None)

    def _cheaper(self, target: str | Model, plan: CallPlan) -> bool:
        """Whether ``target`` is a downgrade from the model serving ``plan``: another model,
        with no higher input or output rate (True when either price is unknown)."""
        name = target if isinstance(target, str) else price_name(target)
        if name == plan.model_name:
            return False
        current = plan.price
        try:
            price = self.meter.policy.prices.get(name)
        except UnknownModelError:
            return True
        if current is None:
            return True
        return (
            price.input <= current.input
            and price.output <= current.output
            and (
                price.input,
                price.output,
            )
            != (current.input, current.output)
        )

    # -- settling ----------------------------------------------------------------------

    async def _settle(
        self,
        plan: CallPlan,
        usage: TokenUsage,
        *,
        estimated: bool,
        streamed: bool,
        service_tier: str | None = None,
    ) -> None:
        nanos, unpriced = self._record(
            plan, usage, estimated=estimated, streamed=streamed, service_tier=service_tier
        )
        if plan.reservation is not None:
            budgets = self.meter.policy.budgets
            assert budgets is not None
            # an unpriceable call settles at its reserved worst case, never at $0; it is
            # settled in its own task, so a cancellation of the run cannot cut it short
            settled = plan.worst_nanos if unpriced is not None else nanos
            task = asyncio.ensure_future(budgets.settle(plan.reservation, usage, settled))
            await asyncio.shield(task)
        if unpriced is not None and self.meter.needs_prices():
            raise unpriced  # dollars are limited and this call cannot be priced: stop

    def _settle_now(
        self, plan: CallPlan, usage: TokenUsage, *, estimated: bool, service_tier: str | None
    ) -> None:
        """``_settle`` of a call without a budget reservation (nothing to await, so no
        coroutine per call)."""
        unpriced = self._record(
            plan, usage, estimated=estimated, streamed=False, service_tier=service_tier
        )[1]
        if unpriced is not None and self.meter.needs_prices():
            raise unpriced  # dollars are limited and this call cannot be priced: stop

    def _record(
        self,
        plan: CallPlan,
        usage: TokenUsage,
        *,
        estimated: bool,
        streamed: bool,
        service_tier: str | None,
    ) -> tuple[int | None, UnknownModelError | None]:
        """Release the call's hold and charge its priced usage to the run: its cost in
        nano-USD, and the pricing error when it cannot be priced (recorded as unpriced)."""
        release(plan.hold)
        nanos: int | None = None
        unpriced: UnknownModelError | None = None
        tier = service_tier or _requested_tier(plan.settings)
        standard_rate = False
        meter = self.meter
        context_saved = meter.context_saved_pending
        if context_saved:
            meter.context_saved_pending = 0  # taken by this call's record (take_context_saved)
        context_nanos = cache_nanos = 0
        if plan.price is not None:
            try:
                price = plan.price
                if tier is not None:
                    price, standard_rate = _tier_price(price, plan.settings, service_tier)
                nanos = price.cost_nanos(usage, model=plan.model_name)
                if service_tier is None and price is not plan.price:
                    # asked for, not reported: never charge less than the standard rate
                    nanos = max(nanos, plan.price.cost_nanos(usage, model=plan.model_name))
                if context_saved or usage.cached_input_tokens:
                    context_nanos, cache_nanos = _savings(price, usage, nanos, context_saved)
            except UnknownModelError as exc:  # a bucket without a rate: never $0
                unpriced = exc
                logger.warning("agentbudget: call recorded as unpriced: %s", exc)
        meter.record_call(
            CallRecord(
                agent=self.agent.name,
                model=plan.model_name,
                price_key=plan.price_key,
                input_tokens=usage.input_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                cache_write_tokens=usage.cache_write_tokens + usage.cache_write_1h_tokens,
                output_tokens=usage.output_tokens,
                reasoning_tokens=usage.reasoning_tokens,
                nanos=nanos,
                estimated=estimated,
                streamed=streamed,
                degraded=plan.degraded,
                price_source=(
                    None if nanos is None or plan.price is None else plan.price.price_source
                ),
                local=plan.price is not None and plan.price.local,
                service_tier=tier,
                priced_at_standard_rate=standard_rate,
                context_saved_tokens=context_saved,
                context_saved_nanos=context_nanos,
                cache_saved_nanos=cache_nanos,
            )
        )
        return nanos, unpriced

    def _exact_input(self, plan: CallPlan) -> int:
        """The tiktoken estimate of the call's input (the plan may hold an upper bound)."""
        if plan.input_exact:
            return plan.input_estimate
        request = plan.request
        return estimate_call_input(
            plan.model_name,
            request.instructions,
            request.input,
            tool_tokens=request_tool_tokens(
                plan.model_name, request.tools, request.handoffs, request.output_schema
            ),
        ).tokens

    async def _settle_failed(self, plan: CallPlan, output_tokens: int, *, streamed: bool) -> None:
        """A call that failed or was cut short: charge at least the estimated input."""
        if plan.hold.released:
            return
        await self._settle(
            plan,
            TokenUsage(input_tokens=self._exact_input(plan), output_tokens=output_tokens),
            estimated=True,
            streamed=streamed,
        )

    def _paid_usage(
        self,
        plan: CallPlan,
        reported: Any,
        output: Any,
        counted: int | Callable[[], int] | None,
    ) -> tuple[TokenUsage, bool]:
        """The usage to charge for a paid response, and whether it is an estimate.

        A provider that reports no usage (or only zeros, as SDK adapters return when
        usage is omitted) is charged the input estimate and the output counted from the
        stream's deltas (``counted``: the count, or what counts it when first needed) or
        the response's text; never $0.
        """
        if isinstance(reported, TokenUsage) or reported is None:
            usage = reported
        else:
            usage = TokenUsage.from_agents_usage(reported)
        if usage is not None and usage.input_tokens and usage.output_tokens:
            return usage, False
        if usage is not None and not usage.is_empty:
            # one side reported as null (or no input at all): the call was sent and answered
            if not usage.input_tokens:
                usage = TokenUsage.normalised(
                    **{**usage.model_dump(), "input_tokens": self._exact_input(plan)}
                )
                return usage, True
            if getattr(reported, "output_tokens", 0) is not None:
                return usage, False  # a reported 0: an empty answer
            if callable(counted):
                counted = counted()
            if counted is None:
                counted = count_output(output, plan.model_name)
            return TokenUsage.normalised(**{**usage.model_dump(), "output_tokens": counted}), True
        if plan.model_name not in _warned_no_usage:
            _warned_no_usage.add(plan.model_name)
            logger.warning(
                "agentbudget: %r reported no token usage; its calls are charged at the input "
                "estimate and the output counted from the response, marked estimated. For a "
                "streamed Chat Completions call to a server other than api.openai.com, set "
                "ModelSettings(include_usage=True) to get real usage.",
                plan.model_name,
            )
        if callable(counted):
            counted = counted()
        if counted is None:
            counted = count_output(output, plan.model_name)
        if _hides_reasoning(plan.model_name):
            # its reasoning is billed but never shown: charge the whole bound it was given
            counted = max(counted, plan.output_bound)
        return TokenUsage(input_tokens=self._exact_input(plan), output_tokens=counted), True

    async def _settle_cut(
        self, plan: CallPlan, ended: _Ended, counted: int | None, *, streamed: bool
    ) -> AgentBudgetExceeded | None:
        """Charge a response that ended ``incomplete`` (or ``failed``) at its reported usage.

        Returns the limit error to raise when the response was cut at an output bound a
        limit or an allowance set; None when the SDK's own error should stand.
        """
        cut = ended.cut
        if ended.usage is None and not cut:  # a failure that reported nothing: as any failure
            await self._settle_failed(plan, counted or 0, streamed=streamed)
            return None
        usage, estimated = self._paid_usage(plan, ended.usage, ended.output, counted)
        if estimated and cut and usage.output_tokens < plan.output_bound:
            # cut at the bound, with no usage reported: it produced the whole bound
            usage = TokenUsage(input_tokens=usage.input_tokens, output_tokens=plan.output_bound)
        await self._settle(plan, usage, estimated=estimated, streamed=streamed)
        if cut and plan.cut_by_limit:
            return self.meter.trip(
                _limit_error(plan, 0, f"the response was cut at {plan.output_bound} output tokens")
            )
        return None

    def _after_response(
        self,
        plan: CallPlan,
        response: ModelResponse,
        usage: TokenUsage,
        handoffs: Sequence[Handoff[Any, Any]],
    ) -> None:
        meter = self.meter
        try:
            for account in meter.accounts:
                account.check_after_call()
            pending = pending_tool_calls(
                response, {h.tool_name for h in handoffs} if handoffs else _NO_NAMES
            )
            if pending:
                for account in meter.accounts:
                    account.check_tools(pending)
            if plan.cut_by_limit and usage.output_tokens >= plan.output_bound:
                # The bound agentbudget set was reached: the answer is cut at the limit.
                raise _limit_error(
                    plan,
                    0,
                    f"the response was cut at {plan.output_bound} output tokens",
                )
        except AgentBudgetExceeded as exc:
            raise meter.trip(exc) from None

    # -- the Model interface -------------------------------------------------------------

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        # the call is written out twice, not wrapped in a closure: this runs every call
        try:
            return await self._get_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )
        except Exception as exc:
            if not self._fall_back(exc):
                raise
        return await self._get_response(
            system_instructions,
            input,
            model_settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )

    async def _get_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> ModelResponse:
        request = CallRequest(
            system_instructions, input, model_settings, tools, handoffs, output_schema
        )
        meter = self.meter
        if (
            meter.policy.budgets is None
            and meter.fallback is None
            and getattr(self.inner, "count_tokens", False) is not True
        ):
            plan = self.plan(request)  # what _prepare does here, without its coroutine
        else:
            plan = await self._prepare(request)
        try:
            response = await plan.inner.get_response(
                system_instructions,
                input,
                plan.settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )
        except BaseException as exc:
            ended = _Ended.behind(exc)
            if ended is None:
                await self._settle_failed(plan, 0, streamed=False)
                raise
            error = await self._settle_cut(plan, ended, None, streamed=False)
            if error is not None:
                raise error from exc
            raise
        usage, estimated = self._paid_usage(plan, response.usage, response.output, None)
        reported = (response.raw_usage or {}).get("service_tier")
        if plan.reservation is None:
            self._settle_now(plan, usage, estimated=estimated, service_tier=_tier_name(reported))
        else:
            await self._settle(
                plan, usage, estimated=estimated, streamed=False, service_tier=_tier_name(reported)
            )
        self._after_response(plan, response, usage, handoffs)
        return response

    def stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncIterator[TResponseStreamEvent]:

        def open_stream() -> AsyncGenerator[TResponseStreamEvent, None]:
            return self._stream_response(
                system_instructions,
                input,
                model_settings,
                tools,
                output_schema,
                handoffs,
                tracing,
                previous_response_id=previous_response_id,
                conversation_id=conversation_id,
                prompt=prompt,
            )

        chain = self.meter.fallback
        if chain is None or chain.agent != self.agent.name or chain.moved is not None:
            return open_stream()
        return self._stream_with_fallback(open_stream)

    async def _stream_with_fallback(
        self, open_stream: Callable[[], AsyncGenerator[TResponseStreamEvent, None]]
    ) -> AsyncIterator[TResponseStreamEvent]:
        """The stream, sent again to the fallback model when it fails before its first event
        (a stream that has started is not restarted: its events are already out)."""
        started = False
        try:
            # closed in this task, as the SDK closes every layer (``aclosing``)
            async with contextlib.aclosing(open_stream()) as stream:
                async for event in stream:
                    started = True
                    yield event
            return
        except Exception as exc:
            if started or not self._fall_back(exc):
                raise
        async with contextlib.aclosing(open_stream()) as stream:
            async for event in stream:
                yield event

    async def _stream_response(
        self,
        system_instructions: str | None,
        input: str | list[TResponseInputItem],
        model_settings: ModelSettings,
        tools: list[Tool],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None,
        conversation_id: str | None,
        prompt: ResponsePromptParam | None,
    ) -> AsyncGenerator[TResponseStreamEvent, None]:
        request = CallRequest(
            system_instructions, input, model_settings, tools, handoffs, output_schema
        )
        plan = await self._prepare(request)
        meter = self.meter
        encoding = get_encoding(encoding_for_model(plan.model_name)[0])
        # Output counted from the deltas, each once (counts are cached). A delta that goes
        # on with the previous one's word (no whitespace between) is counted with it, so
        # a provider that splits a word or a token across deltas is not charged a token
        # per piece. Locals, not an object: this runs once per streamed token.
        # Only a call whose output bound a limit lowered needs the count as it goes (to
        # stop the stream at the bound); any other call keeps the deltas and counts them
        # only if its charge needs them (no usage reported, or the stream failed), so a
        # stream far from every limit does no tokenizer work per delta.
        counted = piece_tokens = 0
        piece = ""
        cut_by_limit = plan.cut_by_limit
        kept: list[str | None] = []
        keep = kept.append

        def output_so_far() -> int:
            if cut_by_limit:
                return counted
            return count_deltas([delta for delta in kept if delta], encoding)

        stream = plan.inner.stream_response(
            system_instructions,
            input,
            plan.settings,
            tools,
            output_schema,
            handoffs,
            tracing,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )
        try:
            async for event in stream:
                kind = getattr(event, "type", None)
                if kind in _OUTPUT_DELTA_TYPES:
                    if not cut_by_limit:
                        # the text only (as long as the answer), not the event: counted
                        # only if the charge needs it
                        keep(getattr(event, "delta", None))
                    else:
                        delta = getattr(event, "delta", None)
                        if delta:
                            if piece and delta[0] not in _WHITESPACE:
                                piece += delta
                                tokens = count_text(piece, encoding)
                                counted += tokens - piece_tokens
                                if len(piece) > _PIECE_MAX:
                                    piece, tokens = "", 0
                            else:
                                tokens = count_text(delta, encoding)
                                counted += tokens
                                piece = delta
                            piece_tokens = tokens
                        if counted > plan.output_bound:
                            raise meter.trip(
                                _limit_error(
                                    plan, counted, f"stream stopped at {counted} output tokens"
                                )
                            )
                elif kind == "response.completed" and not plan.hold.released:
                    response = event.response  # type: ignore[union-attr]
                    usage, estimated = self._paid_usage(
                        plan, response.usage, response.output, output_so_far
                    )
                    await self._settle(
                        plan,
                        usage,
                        estimated=estimated,
                        streamed=True,
                        service_tier=_tier_name(getattr(response, "service_tier", None)),
                    )
                    model_response = ModelResponse(
                        output=response.output,
                        usage=_agents_usage(usage),
                        response_id=response.id,
                    )
                    self._after_response(plan, model_response, usage, handoffs)
                elif kind in _TERMINAL_FAILURES and not plan.hold.released:
                    error = await self._settle_cut(
                        plan,
                        _Ended.of(getattr(event, "response", None)),
                        output_so_far(),
                        streamed=True,
                    )
                    if error is not None:
                        raise error
                yield event
        except BaseException as exc:
            ended = None if plan.hold.released else _Ended.behind(exc)
            if ended is None:
                if not plan.hold.released:
                    await self._settle_failed(plan, output_so_far(), streamed=True)
                raise
            error = await self._settle_cut(plan, ended, output_so_far(), streamed=True)
            if error is not None:
                raise error from exc
            raise
        finally:
            # Closed in this task, as the SDK closes every layer (``aclosing``): a stream
            # finalized in another task would leave the model's span unended.
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()


def count_deltas(deltas: Sequence[str], encoding: Any) -> int:
    """Output tokens of a stream's text deltas, counted as ``stream_response`` counts them
    while it goes: a delta that goes on with the previous one's word is counted with it."""
    counted = piece_tokens = 0
    piece = ""
    for delta in deltas:
        if piece and delta[0] not in _WHITESPACE:
            piece += delta
            tokens = count_text(piece, encoding)
            counted += tokens - piece_tokens
            if len(piece) > _PIECE_MAX:
                piece, tokens = "", 0
        else:
            tokens = count_text(delta, encoding)
            counted += tokens
            piece = delta
        piece_tokens = tokens
    return counted


_PIECE_MAX = 256

_CONTEXT_CODES = ("context_length_exceeded", "string_above_max_length")
_CONTEXT_WORDS = ("context length", "context window", "maximum context", "too many tokens")


def fallback_reason(exc: BaseException) -> str | None:
    """Why ``exc`` moves a run to its fallback model: a context-window overflow, a rate
    limit or a provider error (5xx, overloaded, connection, timeout); None otherwise (a
    limit, a bad request, the user's own error)."""
    if isinstance(exc, AgentBudgetError):
        return None
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "code", None)
    message = str(exc).lower()
    if code in _CONTEXT_CODES or (
        status in (400, 413) and any(word in message for word in _CONTEXT_WORDS)
    ):
        return f"context window exceeded ({type(exc).__name__})"
    if status == 429:
        return f"rate limited ({type(exc).__name__})"
    if isinstance(status, int) and (status >= 500 or status == 529):
        return f"provider error {status} ({type(exc).__name__})"
    if type(exc).__name__ in ("APIConnectionError", "APITimeoutError"):
        return f"provider unreachable ({type(exc).__name__})"
    return None


_WHITESPACE = " \t\n\r\f\v"


def user_output_bound(settings: ModelSettings) -> int | None:
    """The output bound the caller set: ``max_tokens``, or one passed in ``extra_args`` or
    ``extra_body`` (which the client sends last, so it would win over ``max_tokens``)."""
    if not settings.extra_args and not settings.extra_body:
        return settings.max_tokens  # the common case: no extras to look through
    bounds = [settings.max_tokens] if settings.max_tokens is not None else []
    for extra in (settings.extra_args, settings.extra_body):
        if isinstance(extra, dict):
            for key in _BOUND_ARGS:
                value = extra.get(key)
                if isinstance(value, int) and not isinstance(value, bool):
                    bounds.append(value)
    return min(bounds) if bounds else None


_BOUND_ARGS = ("max_completion_tokens", "max_output_tokens", "max_tokens")
_COMPLETION_TOKENS_MODELS = ("o1", "o3", "o4", "gpt-5", "gpt-6")


def with_output_bound(inner: Model, settings: ModelSettings, bound: int) -> ModelSettings:
    """``settings`` carrying ``bound``, in the parameter the endpoint and model accept.

    The caller's own parameter is lowered when there is one. Otherwise ``max_tokens``,
    which the SDK sends as ``max_output_tokens`` to the Responses API and as
    ``max_tokens`` to Chat Completions, except for OpenAI's reasoning models on Chat
    Completions, which reject ``max_tokens`` and take ``max_completion_tokens``.
    """
    extra = settings.extra_args
    body = settings.extra_body
    if not extra and not body:  # the common case: no extras to look through
        if settings.max_tokens is None and _wants_completion_tokens(inner):
            return _with(settings, extra_args={"max_completion_tokens": bound})
        return _with(settings, max_tokens=bound)
    if isinstance(body, dict) and any(key in body for key in _BOUND_ARGS):
        # a bound in extra_body is merged into the request last: lower it there
        lowered = {key: bound if key in _BOUND_ARGS else value for key, value in body.items()}
        settings = _with(settings, extra_body=lowered)
    extra = settings.extra_args or {}
    for key in _BOUND_ARGS:
        if key in extra:
            return _with(settings, extra_args={**extra, key: bound})
    if settings.max_tokens is None and _wants_completion_tokens(inner):
        return _with(settings, extra_args={**extra, "max_completion_tokens": bound})
    return _with(settings, max_tokens=bound)


_SDK_KEY_PREFIX = "agents-sdk:"


def with_prompt_cache_key(
    inner: Model, settings: ModelSettings, prefix: str, tenant: str | None, agent: Agent[Any]
) -> ModelSettings:
    """``settings`` with a stable, secret-free ``prompt_cache_key`` for ``tenant`` and
    ``agent``: ``<prefix>:<sha256 of tenant and agent name, 24 hex digits>``.

    Only for OpenAI's model classes (the parameter is OpenAI's); a key the user set in
    ``ModelSettings`` is kept, the SDK's generated per-run key is replaced.
    """
    if not isinstance(inner, OpenAIResponsesModel | OpenAIChatCompletionsModel):
        return settings
    extra = settings.extra_args or {}
    current = extra.get("prompt_cache_key")
    if current is not None and not str(current).startswith(_SDK_KEY_PREFIX):
        return settings
    body = settings.extra_body
    if isinstance(body, dict) and "prompt_cache_key" in body:
        return settings
    digest = hashlib.sha256(f"{tenant or ''}\0{agent.name}".encode()).hexdigest()[:24]
    return _with(settings, extra_args={**extra, "prompt_cache_key": f"{prefix}:{digest}"})


def _with(settings: ModelSettings, **changes: Any) -> ModelSettings:
    """A copy of ``settings`` with ``changes`` (``dataclasses.replace`` re-validates every
    field: 22 us a call against 1 us, and this runs before every LLM call)."""
    copy = object.__new__(type(settings))
    copy.__dict__.update(settings.__dict__)
    copy.__dict__.update(changes)
    return copy


_IS_CHAT_MODEL: dict[type[Any], bool] = {}
_BOUNDS_ITSELF: dict[type[Any], bool] = {}


def _may_bound_itself(inner: Model) -> bool:
    """Whether ``inner`` may have a ``default_max_tokens`` (AnthropicModel's property, an
    instance attribute, or one a ``__getattr__`` forwards): the class is asked once, so a
    model without one costs no failing ``getattr`` before every call."""
    cls = inner.__class__
    found = _BOUNDS_ITSELF.get(cls)
    if found is None:
        found = _BOUNDS_ITSELF[cls] = hasattr(cls, "default_max_tokens") or hasattr(
            cls, "__getattr__"
        )
    return found or "default_max_tokens" in getattr(inner, "__dict__", ())


"""Per model class: whether it is a Chat Completions model (classes are few and live long)."""


def _hides_reasoning(model: str) -> bool:
    """OpenAI's reasoning models: billed reasoning tokens that no response shows."""
    return model.lower().rsplit("/", 1)[-1].startswith(_COMPLETION_TOKENS_MODELS)


def _wants_completion_tokens(inner: Model) -> bool:
    cls = inner.__class__
    chat = _IS_CHAT_MODEL.get(cls)
    if chat is None:  # an ABC isinstance per call costs more than the rest of this
        chat = _IS_CHAT_MODEL[cls] = isinstance(inner, OpenAIChatCompletionsModel)
    if not chat:
        return False
    name = str(getattr(inner, "model", "")).lower().rsplit("/", 1)[-1]
    return name.startswith(_COMPLETION_TOKENS_MODELS)


def count_output(output: Any, model: str) -> int:
    """Output tokens counted from a response's items (text, refusals, reasoning summaries,
    tool names and arguments), for a provider that reported no usage."""
    encoding = get_encoding(encoding_for_model(model)[0])
    total = 0
    for item in output or ():
        data = item.model_dump(exclude_none=True) if hasattr(item, "model_dump") else item
        total += sum(count_text(text, encoding) for text in _output_strings(data))
    return total


def _output_strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, element in value.items():
            if key in ("text", "arguments", "name", "refusal", "input") and isinstance(
                element, str
            ):
                yield element
            elif isinstance(element, list | dict):
                yield from _output_strings(element)
    elif isinstance(value, list):
        for element in value:
            yield from _output_strings(element)


@dataclasses.dataclass
class _Ended:
    """A paid response that the SDK turned into an error: what it used and produced."""

    usage: Any
    output: Any
    cut: bool
    """It stopped at the request's output bound."""

    @classmethod
    def of(cls, response: Any) -> _Ended:
        """From a Responses ``Response`` that ended ``incomplete`` or ``failed``."""
        reason = getattr(getattr(response, "incomplete_details", None), "reason", None)
        return cls(
            getattr(response, "usage", None),
            getattr(response, "output", None) or [],
            reason == "max_output_tokens",
        )

    @classmethod
    def behind(cls, exc: BaseException) -> _Ended | None:
        """The paid response behind the SDK's ``ModelBehaviorError``, if it was one.

        The SDK raises ``ModelBehaviorError`` for an ``incomplete`` or ``failed``
        Responses response, and for a Chat Completions answer cut by ``length`` with
        nothing in it, without keeping the response; the paid usage is still in the
        frame that raised, so it is read from the traceback.
        """
        from agents.exceptions import ModelBehaviorError
        from openai.types.chat import ChatCompletion
        from openai.types.completion_usage import CompletionUsage
        from openai.types.responses import Response

        if not isinstance(exc, ModelBehaviorError):
            return None
        for local in paid_response_locals(exc):
            if isinstance(local.get("usage"), CompletionUsage) and "saw_length" in local:
                # the SDK's Chat Completions stream handler, ended by length
                return cls(_chat_usage(local["usage"]), [], bool(local["saw_length"]))
            for value in local.values():
                if isinstance(value, Response) and value.status in ("incomplete", "failed"):
                    return cls.of(value)
                if isinstance(value, ChatCompletion) and value.choices:
                    choice = value.choices[0]
                    return cls(
                        _chat_usage(value.usage),
                        [choice.message.model_dump(exclude_none=True)],
                        choice.finish_reason == "length",
                    )
        return None


def _chat_usage(usage: Any) -> TokenUsage | None:
    """A Chat Completions usage block as ``TokenUsage`` (None when absent)."""
    if usage is None:
        return None
    prompt = getattr(usage, "prompt_tokens_details", None)
    completion = getattr(usage, "completion_tokens_details", None)
    return TokenUsage.normalised(
        input_tokens=getattr(usage, "prompt_tokens", 0) or 0,
        cached_input_tokens=getattr(prompt, "cached_tokens", 0) or 0,
        cache_write_tokens=getattr(prompt, "cache_write_tokens", 0) or 0,
        output_tokens=getattr(usage, "completion_tokens", 0) or 0,
        reasoning_tokens=getattr(completion, "reasoning_tokens", 0) or 0,
    )


def _tier_name(value: object) -> str | None:
    return value.lower() if isinstance(value, str) and value else None


def _requested_tier(settings: ModelSettings) -> str | None:
    """The service tier a call asked for (``extra_args={"service_tier": "flex"}``)."""
    extra = settings.extra_args
    return _tier_name(extra.get("service_tier")) if extra else None


def _tier_price(
    price: ModelPrice, settings: ModelSettings, reported: str | None
) -> tuple[ModelPrice, bool]:
    """The price of a call at the tier the response reported, else the one it asked for;
    and whether that tier has no published rates (standard rates are used)."""
    tier = reported or _requested_tier(settings)
    if tier is None:
        return price, False
    tiered, published = price.for_service_tier(tier)
    return tiered, not published


def _savings(price: ModelPrice, usage: TokenUsage, nanos: int, removed: int) -> tuple[int, int]:
    """What ``removed`` input tokens would have cost, and what the prompt cache saved (the
    call at the uncached input rate minus what it cost), in nano-USD."""
    context = price.cost_nanos(TokenUsage(input_tokens=removed)) if removed else 0
    cache = 0
    if usage.cached_input_tokens:
        uncached = usage.model_copy(update={"cached_input_tokens": 0})
        cache = max(price.cost_nanos(uncached) - nanos, 0)
    return context, cache


def _worst_nanos(input_pico: int, pico_per_output: int | None, bound: int) -> int:
    """The most a call can cost, in whole nano-USD: its input, and its whole output bound."""
    return pico_to_nanos(input_pico + (pico_per_output or 0) * bound)


def _response_usage(usage: Any) -> TokenUsage | None:
    if usage is None:
        return None
    return TokenUsage.from_agents_usage(usage)


def _agents_usage(usage: TokenUsage) -> Any:
    from agents.usage import Usage

    return Usage(
        requests=1,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
    )


def _limit_error(plan: CallPlan, uncharged_output: int, what: str) -> AgentBudgetExceeded:
    """The error for a call whose output reached the bound a limit gave it.

    ``uncharged_output`` is output counted from a stream but not yet charged.
    """
    if plan.binding is None:
        assert plan.budget_cut is not None
        return plan.budget_cut(what)
    name, account = plan.binding
    allowed = getattr(account.limits, name)
    shown = f"${allowed}" if name == "max_cost_usd" else f"{allowed}"
    message = (
        f"{account.name}: {what}; {name}={shown} left {plan.output_bound} output tokens "
        "for this call"
    )
    if name == "max_cost_usd":
        return CostLimitExceeded(message, limit=name, allowed=allowed, observed=account.cost_usd)
    used = account.output_tokens if name == "max_output_tokens" else account.total_tokens
    return TokenLimitExceeded(
        message, limit=name, allowed=allowed, observed=used + uncharged_output
    )
