"""Exact prices per model, and the cost of token usage.

A ``PriceTable`` maps model names to ``ModelPrice`` (``Decimal`` USD per 1M tokens).
Names resolve explicitly: an exact entry, then a declared alias (dated snapshots),
then the same after stripping one routing prefix from a declared list (``openai/``,
``litellm/``, ...). Dates are never stripped blindly: ``gpt-4o-2024-05-13`` costs
more than ``gpt-4o``.

Usage is split into disjoint buckets - uncached input, cached input, cache writes
(5 minutes and 1 hour), output (reasoning included unless the model prices
reasoning separately) - that sum back to the reported totals. A non-zero bucket
without a rate is an error, never $0.
"""

from __future__ import annotations

import decimal
import difflib
import functools
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import date
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from agents.usage import Usage
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigurationError, UnknownModelError
from .money import ceil_nanos, nanos_to_usd, parse_usd, pico_to_nanos, rate_cost_nanos

__all__ = ["ModelPrice", "PriceTable", "PriceTier", "TokenUsage"]

_RATE_FIELDS = ("input", "cached_input", "cache_write_5m", "cache_write_1h", "output", "reasoning")


def _rate(value: Any, info: Any) -> Decimal | None:
    if value is None:
        return None
    return parse_usd(value, field=info.field_name)


class _Rates(BaseModel):
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

    def pico(self, name: str) -> int | None:
        """A rate in integer pico-USD per token (rounded up), or None when absent."""
        return self._pico.get(name)

    def pico_rates(self) -> tuple[dict[str, int], bool]:
        """Every present rate in pico-USD per token, and whether they are all exact."""
        private = self.__pydantic_private__  # direct: pydantic's __getattr__ is slow
        assert private is not None
        return private["_pico"], private["_pico_exact"]

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

    @model_validator(mode="after")
    def _check_tiers(self) -> ModelPrice:
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
        pico = 0
        exact = Decimal(0)
        for bucket, tokens in usage.buckets(separate_reasoning=rates.reasoning is not None):
            if tokens == 0:
                continue
            rate = getattr(rates, bucket)
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
        """The cost of ``usage`` (one request, or every request of an ``agents.Usage``)."""
        return nanos_to_usd(sum(self.cost_nanos(u) for u in TokenUsage.per_request(usage)))


class TokenUsage(BaseModel):
    """Provider-neutral token usage of one LLM request.

    ``input_tokens`` counts every input token, cached and cache-written ones included;
    ``output_tokens`` counts every output token, reasoning included (as OpenAI reports).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    cache_write_tokens: int = Field(default=0, ge=0)
    """Tokens written to the prompt cache with the default (5 minute) lifetime."""
    cache_write_1h_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    reasoning_tokens: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check_subsets(self) -> TokenUsage:
        inside = self.cached_input_tokens + self.cache_write_tokens + self.cache_write_1h_tokens
        if inside > self.input_tokens:
            raise ValueError(
                f"cached ({self.cached_input_tokens}) + cache-write ({self.cache_write_tokens} + "
                f"{self.cache_write_1h_tokens}) tokens exceed input_tokens ({self.input_tokens})"
            )
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError(
                f"reasoning_tokens ({self.reasoning_tokens}) exceed output_tokens "
                f"({self.output_tokens})"
            )
        return self

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def buckets(self, *, separate_reasoning: bool) -> Iterator[tuple[str, int]]:
        """Disjoint ``(rate name, tokens)`` pairs that sum to input + output tokens."""
        writes = self.cache_write_tokens + self.cache_write_1h_tokens
        yield "input", self.input_tokens - self.cached_input_tokens - writes
        yield "cached_input", self.cached_input_tokens
        yield "cache_write_5m", self.cache_write_tokens
        yield "cache_write_1h", self.cache_write_1h_tokens
        if separate_reasoning:
            yield "output", self.output_tokens - self.reasoning_tokens
            yield "reasoning", self.reasoning_tokens
        else:
            yield "output", self.output_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            **{name: getattr(self, name) + getattr(other, name) for name in type(self).model_fields}
        )

    @classmethod
    def from_agents_usage(cls, usage: Any) -> TokenUsage:
        """Convert one request's ``agents.Usage`` or ``RequestUsage``."""
        in_details = getattr(usage, "input_tokens_details", None)
        out_details = getattr(usage, "output_tokens_details", None)
        cached = getattr(in_details, "cached_tokens", 0) or 0
        writes = getattr(in_details, "cache_write_tokens", 0) or 0
        reasoning = getattr(out_details, "reasoning_tokens", 0) or 0
        # A total the provider left null (or short of its own details) counts at least its
        # details, so the shapes the SDK accepts never fail the run and never price low.
        return cls(
            input_tokens=max(usage.input_tokens or 0, cached + writes),
            cached_input_tokens=cached,
            cache_write_tokens=writes,
            output_tokens=max(usage.output_tokens or 0, reasoning),
            reasoning_tokens=reasoning,
        )

    @classmethod
    def per_request(cls, usage: TokenUsage | Usage) -> list[TokenUsage]:
        """Split usage into one ``TokenUsage`` per request (tiers and rounding are per request)."""
        if isinstance(usage, TokenUsage):
            return [usage]
        if isinstance(usage, Usage):
            total = cls.from_agents_usage(usage)
            entries = [cls.from_agents_usage(entry) for entry in usage.request_usage_entries]
            if not entries:
                return [total]
            # Entries may not cover the totals (a Usage built by hand, then add()ed to):
            # whatever they miss is priced as one more request, never dropped.
            covered = sum(entries[1:], entries[0])
            rest = {
                name: max(getattr(total, name) - getattr(covered, name), 0)
                for name in cls.model_fields
            }
            if any(rest.values()):
                writes = rest["cache_write_tokens"] + rest["cache_write_1h_tokens"]
                rest["cached_input_tokens"] = min(
                    rest["cached_input_tokens"], max(rest["input_tokens"] - writes, 0)
                )
                rest["reasoning_tokens"] = min(rest["reasoning_tokens"], rest["output_tokens"])
                entries.append(cls(**rest))
            return entries
        raise TypeError(f"usage must be agents.Usage or TokenUsage, got {type(usage).__name__}")


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal[1] = Field(alias="schema")
    version: str
    effective_date: date
    currency: Literal["USD"]
    unit: Literal["per_1m_tokens"]
    strip_prefixes: list[str] = []
    models: dict[str, _FileEntry]
    fallback: ModelPrice | None = None

    @field_validator("models", mode="before")
    @classmethod
    def _reject_number_prices(cls, models: Any) -> Any:
        if isinstance(models, Mapping):
            for name, entry in models.items():
                for key, value in (entry or {}).items() if isinstance(entry, Mapping) else ():
                    if (
                        key in _RATE_FIELDS
                        and isinstance(value, float | int)
                        and not isinstance(value, bool)
                    ):
                        raise ValueError(
                            f'models.{name}.{key}: prices are JSON strings like "2.50", '
                            f"got the number {value!r}"
                        )
        return models


class _FileEntry(ModelPrice):
    aliases: tuple[str, ...] = ()


_PriceFile.model_rebuild()


class PriceTable:
    """Prices per model, with explicit aliases and routing-prefix stripping.

    Build one with ``PriceTable.default()`` (the bundled, dated table),
    ``PriceTable.from_file(path)`` or ``PriceTable(models)``; layer your own prices on top
    with ``with_prices``.
    """

    def __init__(
        self,
        models: Mapping[str, ModelPrice],
        *,
        aliases: Mapping[str, str] | None = None,
        strip_prefixes: Iterable[str] = (),
        fallback: ModelPrice | None = None,
        version: str | None = None,
        effective_date: date | None = None,
    ) -> None:
        self._models = {name.lower(): price for name, price in models.items()}
        self._aliases = {alias.lower(): key.lower() for alias, key in (aliases or {}).items()}
        for alias, key in self._aliases.items():
            if key not in self._models:
                raise ConfigurationError(f"alias {alias!r} points to unknown model {key!r}")
            if alias in self._models:
                raise ConfigurationError(f"{alias!r} is both a model and an alias")
        self.strip_prefixes = tuple(p.lower() for p in strip_prefixes)
        self.fallback = fallback
        self.version = version
        self.effective_date = effective_date

    # construction -------------------------------------------------------------------

    @classmethod
    def default(cls) -> PriceTable:
        """The bundled price table (``agentbudget/data/prices.json``), loaded once."""
        return _default_table()

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Load a price file with the same schema as the bundled one.

        Raises:
            ConfigurationError: naming the bad entry and field.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read price file {path}: {exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "price data") -> PriceTable:
        """Build a table from already-parsed price-file data."""
        try:
            parsed = _PriceFile.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"{source}: invalid price file: {problems}") from None
        models: dict[str, ModelPrice] = {}
        aliases: dict[str, str] = {}
        for name, entry in parsed.models.items():
            models[name] = ModelPrice(**entry.model_dump(exclude={"aliases"}))
            for alias in entry.aliases:
                if alias.lower() in aliases or alias.lower() in parsed.models:
                    raise ConfigurationError(
                        f"{source}: models.{name}.aliases: {alias!r} is declared twice"
                    )
                aliases[alias.lower()] = name
        return cls(
            models,
            aliases=aliases,
            strip_prefixes=parsed.strip_prefixes,
            fallback=parsed.fallback,
            version=parsed.version,
            effective_date=parsed.effective_date,
        )

    def with_prices(self, prices: Mapping[str, ModelPrice]) -> PriceTable:
        """A new table with ``prices`` layered on top; this table is unchanged."""
        for name, price in prices.items():
            if not isinstance(price, ModelPrice):
                raise ConfigurationError(
                    f"with_prices: {name!r} must map to a ModelPrice, got {type(price).__name__}"
                )
        models = dict(self._models)
        aliases = dict(self._aliases)
        for name, price in prices.items():
            models[name.lower()] = price
            aliases.pop(name.lower(), None)
        return PriceTable(
            models,
            aliases=aliases,
            strip_prefixes=self.strip_prefixes,
            fallback=self.fallback,
            version=self.version,
            effective_date=self.effective_date,
        )

    def with_fallback(self, price: ModelPrice | None) -> PriceTable:
        """A new table that prices unknown models at ``price`` instead of raising."""
        table = PriceTable(
            self._models,
            aliases=self._aliases,
            strip_prefixes=self.strip_prefixes,
            fallback=price,
            version=self.version,
            effective_date=self.effective_date,
        )
        return table

    # lookup -------------------------------------------------------------------------

    def resolve(self, model: str) -> str:
        """The price key that ``model`` resolves to (``"*"`` for the fallback).

        Raises:
            UnknownModelError: when nothing matches and there is no fallback.
        """
        key = self._lookup(model)
        if key is not None:
            return key
        if self.fallback is not None:
            return "*"
        close = difflib.get_close_matches(
            model.lower(), [*self._models, *self._aliases], n=3, cutoff=0.6
        )
        raise UnknownModelError(model, known=close)

    def _lookup(self, model: str) -> str | None:
        name = model.strip().lower()
        while True:
            if name in self._models:
                return name
            if name in self._aliases:
                return self._aliases[name]
            for prefix in self.strip_prefixes:
                if name.startswith(prefix) and len(name) > len(prefix):
                    name = name[len(prefix) :]
                    break
            else:
                return None

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and (self._lookup(model) is not None)

    def get(self, model: str) -> ModelPrice:
        """The price of ``model``.

        Raises:
            UnknownModelError: when the model is unknown and there is no fallback.
        """
        return self.lookup(model)[1]

    def lookup(self, model: str) -> tuple[str, ModelPrice]:
        """The price key ``model`` resolves to and its price, in one resolution.

        Raises:
            UnknownModelError: when the model is unknown and there is no fallback.
        """
        key = self.resolve(model)
        if key == "*":
            assert self.fallback is not None
            return key, self.fallback
        return key, self._models[key]

    def cost_nanos(self, model: str, usage: TokenUsage | Usage) -> int:
        """Exact cost in whole nano-USD, rounded up per request."""
        price = self.get(model)
        return sum(price.cost_nanos(u, model=model) for u in TokenUsage.per_request(usage))

    def cost(self, model: str, usage: TokenUsage | Usage) -> Decimal:
        """Exact cost in ``Decimal`` USD of ``usage`` (one request, or a whole ``agents.Usage``)."""
        return nanos_to_usd(self.cost_nanos(model, usage))

    def models(self) -> dict[str, ModelPrice]:
        """Every priced model, by canonical name."""
        return dict(self._models)

    def aliases_of(self, model: str) -> list[str]:
        """The aliases that resolve to the canonical ``model``."""
        key = model.lower()
        return sorted(alias for alias, target in self._aliases.items() if target == key)

    def __repr__(self) -> str:
        return (
            f"PriceTable({len(self._models)} models, version={self.version!r}, "
            f"effective_date={self.effective_date})"
        )


@functools.cache
def _default_table() -> PriceTable:
    data = resources.files("agentbudget").joinpath("data/prices.json").read_text("utf-8")
    return PriceTable.from_dict(json.loads(data), source="agentbudget/data/prices.json")
