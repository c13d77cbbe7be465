"""Rates: the price of one model (``ModelPrice``) and its long-context tiers (``PriceTier``).

Rates are exact ``Decimal`` USD per 1M tokens, compiled once into integer pico-USD per
token; ``ModelPrice.cost_nanos`` prices one request's ``TokenUsage`` exactly. A price
table (``pricing.PriceTable``) maps model names to these; the genai-prices long tail
(``price_sources``) compiles its entries to them.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from agents.usage import Usage
from pydantic import ConfigDict, Field, PrivateAttr, field_validator, model_validator

from ._validation import Checked as _Checked
from .errors import UnknownModelError
from .money import ceil_nanos, nanos_to_usd, parse_usd, pico_to_nanos, rate_cost_nanos
from .usage import TokenUsage

__all__ = ["LOCAL_PRICE", "STANDARD_SERVICE_TIERS", "Entry", "ModelPrice", "PriceTier"]

STANDARD_SERVICE_TIERS = frozenset({"default", "standard", "auto", "on_demand"})
"""Service-tier names that mean the standard rates."""

_RATE_FIELDS = ("input", "cached_input", "cache_write_5m", "cache_write_1h", "output", "reasoning")


def _rate(value: Any, info: Any) -> Decimal | None:
    if value is None:
        return None
    return parse_usd(value, field=info.field_name)


class _Rates(_Checked):
    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Decimal
    """Uncached input, USD per 1M tokens."""
    output: Decimal
    """Output (reasoning included unless ``reasoning`` is set), USD per 1M tokens."""
    cached_input: Decimal | None = None
    """Prompt-cache reads, USD per 1M tokens (None: the model has no cache reads)."""
    cache_write_5m: Decimal | None = None
    """Prompt-cache writes with the default (5 minute) lifetime, USD per 1M tokens."""
    cache_write_1h: Decimal | None = None
    """Prompt-cache writes with a 1 hour lifetime (Anthropic), USD per 1M tokens."""
    reasoning: Decimal | None = None
    """A separate rate for reasoning tokens; None when they bill as output."""

    _validate_rates = field_validator(*_RATE_FIELDS, mode="before")(_rate)
    _pico: dict[str, int] = PrivateAttr(default_factory=dict)
    _pico_exact: bool = PrivateAttr(default=True)
    _worst: tuple[int, int] = PrivateAttr(default=(0, 0))

    def model_post_init(self, _context: Any) -> None:
        # Rates as integer pico-USD (1e-12) per token: USD per 1M tokens x 1e6. Exact for
        # rates with up to six decimals (every published rate); others round up here and
        # are billed through Decimal.
        for name in _RATE_FIELDS:
            rate = getattr(self, name)
            if rate is not None:
                scaled = rate.scaleb(6)
                whole = int(scaled.to_integral_value(rounding=decimal.ROUND_CEILING))
                self._pico[name] = whole
                if whole != scaled:
                    self._pico_exact = False
        pico = self._pico
        self._worst = (
            max(pico["input"], pico.get("cache_write_5m", 0), pico.get("cache_write_1h", 0)),
            max(pico["output"], pico.get("reasoning", 0)),
        )

    def pico(self, name: str) -> int | None:
        """A rate in integer pico-USD per token (rounded up), or None when absent."""
        return self._pico.get(name)

    def pico_rates(self) -> tuple[dict[str, int], bool]:
        """Every present rate in pico-USD per token, and whether they are all exact."""
        private = self.__pydantic_private__  # direct: pydantic's __getattr__ is slow
        assert private is not None
        return private["_pico"], private["_pico_exact"]

    def worst_pico_rates(self) -> tuple[int, int]:
        """The highest rates an input token and an output token can be billed at, in
        pico-USD (a cache write can cost more than uncached input; reasoning more than
        output): what a call's worst case is held at. Computed once, with the rates."""
        private = self.__pydantic_private__
        assert private is not None
        worst: tuple[int, int] = private["_worst"]
        return worst

    def _present(self) -> frozenset[str]:
        return frozenset(name for name in _RATE_FIELDS if getattr(self, name) is not None)


class PriceTier(_Rates):
    """Rates that apply to a whole request whose input exceeds ``above_input_tokens``."""

    above_input_tokens: int = Field(gt=0)


class ModelPrice(_Rates):
    """The price of one model, in ``Decimal`` USD per 1M tokens.

    Rates may be given as ``str``, ``int`` or ``Decimal`` (never ``float``)::

        ModelPrice(input="3", output="12", cached_input="1.50")
    """

    provider: str | None = None
    max_output_tokens: int | None = Field(default=None, gt=0)
    context_window: int | None = Field(default=None, gt=0)
    tiers: tuple[PriceTier, ...] = ()
    source: str | None = None
    """Where the rates were read (the provider's page)."""
    effective_from: date | None = None
    """First UTC day these rates apply (inclusive); None: since always."""
    effective_until: date | None = None
    """Last UTC day these rates apply (inclusive); None: until further notice."""
    service_tiers: dict[str, ModelPrice] = Field(default_factory=dict)
    """Rates per service tier the provider reports (``flex``, ``batch``, ``priority``).
    In a price file a tier may be a multiplier of every rate: ``{"flex": "0.5"}``."""
    local: bool = False
    """A model that runs locally (Ollama, or declared with ``with_local_models``): $0."""
    price_source: str | None = None
    """The table the entry came from: ``"bundled 2026.11.29"``, ``"genai-prices 0.2.3"``,
    ``"local"``, a file name; set by ``PriceTable``."""

    @model_validator(mode="before")
    @classmethod
    def _expand_tier_multipliers(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or not isinstance(data.get("service_tiers"), Mapping):
            return data
        tiers: dict[str, Any] = {}
        for name, value in data["service_tiers"].items():
            if isinstance(value, str | Decimal) or (
                isinstance(value, int) and not isinstance(value, bool)
            ):
                tiers[name] = _scaled(data, parse_usd(value, field=f"service_tiers.{name}"))
            else:
                tiers[name] = value
        return {**data, "service_tiers": {k.lower(): v for k, v in tiers.items()}}

    @model_validator(mode="after")
    def _check_tiers(self) -> ModelPrice:
        if (
            self.effective_from is not None
            and self.effective_until is not None
            and self.effective_from > self.effective_until
        ):
            raise ValueError(
                f"effective_from {self.effective_from} is after effective_until "
                f"{self.effective_until}"
            )
        base = self._present()
        thresholds = [tier.above_input_tokens for tier in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ValueError("tiers must have strictly increasing above_input_tokens")
        for tier in self.tiers:
            if tier._present() != base:
                missing = sorted(base - tier._present())
                extra = sorted(tier._present() - base)
                raise ValueError(
                    f"tier above {tier.above_input_tokens} tokens must give the same rates as "
                    f"the model (missing {missing}, extra {extra})"
                )
        return self

    def in_force(self, day: date) -> bool:
        """Whether these rates apply on the UTC ``day``."""
        return (self.effective_from is None or self.effective_from <= day) and (
            self.effective_until is None or day <= self.effective_until
        )

    def for_service_tier(self, tier: str | None) -> tuple[ModelPrice, bool]:
        """The price of a request served at ``tier``, and whether that tier's rates are
        published (when not, the standard rates are returned)."""
        if tier is None or tier.lower() in STANDARD_SERVICE_TIERS:
            return self, True
        price = self.service_tiers.get(tier.lower())
        if price is None:
            return self, False
        return price, True

    def rates_for(self, input_tokens: int) -> _Rates:
        """The rates billed for a request with ``input_tokens`` input tokens."""
        chosen: _Rates = self
        for tier in self.tiers:
            if input_tokens > tier.above_input_tokens:
                chosen = tier
        return chosen

    def cost_nanos(self, usage: TokenUsage, *, model: str = "this model") -> int:
        """The cost of one request in whole nano-USD, rounded up."""
        rates = self.rates_for(usage.input_tokens)
        pico_rates, pico_exact = rates.pico_rates()
        if pico_exact and not usage.cache_write_tokens and not usage.cache_write_1h_tokens:
            # the commonest case, unrolled (no bucket generator): integer rates, no cache
            # writes; a bucket with tokens and no rate takes the general path below
            cached = usage.cached_input_tokens
            uncached = usage.input_tokens - cached
            reasoning_rate = pico_rates.get("reasoning")
            reasoning = usage.reasoning_tokens if reasoning_rate is not None else 0
            output = usage.output_tokens - reasoning
            input_rate = pico_rates.get("input")
            cached_rate = pico_rates.get("cached_input")
            output_rate = pico_rates.get("output")
            if not (
                (uncached and input_rate is None)
                or (cached and cached_rate is None)
                or (output and output_rate is None)
            ):
                return pico_to_nanos(
                    uncached * (input_rate or 0)
                    + cached * (cached_rate or 0)
                    + output * (output_rate or 0)
                    + reasoning * (reasoning_rate or 0)
                )
        if pico_exact:
            # the common case, with integer rates only: a bucket with no rate (or a long
            # cache write priced at the 5-minute rate) takes the general path below
            pico = 0
            for bucket, tokens in usage.buckets(separate_reasoning=rates.reasoning is not None):
                if tokens:
                    rate_pico = pico_rates.get(bucket)
                    if rate_pico is None:
                        break
                    pico += tokens * rate_pico
            else:
                return pico_to_nanos(pico)
        pico = 0
        exact = Decimal(0)
        for bucket, tokens in usage.buckets(separate_reasoning=rates.reasoning is not None):
            if tokens == 0:
                continue
            rate = getattr(rates, bucket)
            if rate is None and bucket == "cache_write_1h" and rates.cache_write_5m is not None:
                # no separate long-retention rate published (OpenAI): the write rate
                bucket, rate = "cache_write_5m", rates.cache_write_5m
            if rate is None:
                raise UnknownModelError(
                    model,
                    detail=(
                        f"{tokens} {bucket} tokens have no rate for {model}; add "
                        f"'{bucket}' to its price entry"
                    ),
                )
            if pico_exact:
                pico += tokens * pico_rates[bucket]
            else:
                exact += rate_cost_nanos(tokens, rate)
        if pico_exact:
            return pico_to_nanos(pico)
        return ceil_nanos(exact)

    def cost(self, usage: TokenUsage | Usage) -> Decimal:
        """The cost of ``usage`` (one request, or every request of an ``agents.Usage``).

        Raises:
            ConfigurationError: ``usage`` sums several requests without per-request
                entries and this model has long-context tiers (see ``per_request``).
        """
        return nanos_to_usd(
            sum(self.cost_nanos(u) for u in TokenUsage.per_request(usage, tiered=bool(self.tiers)))
        )


def _scaled(data: Mapping[str, Any], factor: Decimal) -> dict[str, Any]:
    """The rates of a price entry (and its long-context tiers) multiplied by ``factor``."""

    def scale(rates: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: None if rates.get(name) is None else parse_usd(rates[name], field=name) * factor
            for name in _RATE_FIELDS
            if name in rates
        }

    scaled = scale(data)
    scaled["tiers"] = [
        {**scale(tier), "above_input_tokens": tier["above_input_tokens"]}
        if isinstance(tier, Mapping)
        else {**scale(tier.model_dump()), "above_input_tokens": tier.above_input_tokens}
        for tier in data.get("tiers") or ()
    ]
    return scaled


Entry = ModelPrice | tuple[ModelPrice, ...]
"""A table entry: one price, or dated rate sets (sorted, never overlapping)."""

LOCAL_PRICE = ModelPrice(
    input=Decimal(0),
    output=Decimal(0),
    cached_input=Decimal(0),
    cache_write_5m=Decimal(0),
    cache_write_1h=Decimal(0),
    local=True,
    price_source="local",
)
