"""Exact prices per model, and the cost of token usage.

A ``PriceTable`` maps model names to ``ModelPrice`` (``Decimal`` USD per 1M tokens).
Names resolve explicitly: an exact entry, then a declared alias (dated snapshots), a
declared local model, then the same after stripping one routing or platform prefix from
a declared list (``openai/``, ``azure/``, ``bedrock/``, ...). Dates are never stripped
blindly: ``gpt-4o-2024-05-13`` costs more than ``gpt-4o``. ``PriceTable.default()``
then asks genai-prices (``price_sources.py``) for the long tail.

An entry may carry dated rate sets (``effective_from`` / ``effective_until``, both
inclusive UTC dates); a request is priced at the set in force when it is made. An entry
may also carry rates per service tier (``flex``, ``batch``, ``priority``).

Usage is split into disjoint buckets - uncached input, cached input, cache writes
(5 minutes and 1 hour), output (reasoning included unless the model prices
reasoning separately) - that sum back to the reported totals. A non-zero bucket
without a rate is an error, never $0.
"""

from __future__ import annotations

import difflib
import functools
import itertools
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from agents.usage import Usage
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from .errors import ConfigurationError, UnknownModelError
from .money import nanos_to_usd
from .rates import (
    _RATE_FIELDS,
    LOCAL_PRICE,
    Entry,
    ModelPrice,
    PriceTier,
)
from .usage import TokenUsage

if TYPE_CHECKING:
    from .price_sources import LongTail

__all__ = ["ModelPrice", "PriceTable", "PriceTier", "TokenUsage"]

logger = logging.getLogger("agentbudget")

PLATFORM_PREFIXES = (
    "openai/",
    "litellm/",
    "anthropic/",
    "gemini/",
    "google/",
    "azure/",
    "azure_ai/",
    "vertex_ai/",
    "bedrock/",
    "openrouter/",
    "us.",
    "eu.",
    "apac.",
    "global.",
    "anthropic.",
)
"""Prefixes every table strips (a price file or ``with_prefixes`` adds more): routing
prefixes (``litellm/``), platforms (``azure/``, ``vertex_ai/``, ``openrouter/``) and
Bedrock's model ids (``bedrock/us.anthropic.claude-sonnet-4-5``)."""

PLATFORM_SUFFIXES = ("-v1:0", "-v2:0", "-v1", "-v2")
"""Bedrock revision suffixes stripped after the prefixes (``...-20250929-v1:0``)."""

LOCAL_PREFIXES = ("ollama/", "ollama_chat/")
"""Names under these prefixes are local models: $0, marked local."""

STALE_AFTER = timedelta(days=90)
_warned_stale: set[tuple[str | None, date]] = set()


class _PriceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_: Literal[1] = Field(default=1, alias="schema")
    version: str | None = None
    effective_date: date | None = None
    currency: Literal["USD"] = "USD"
    unit: Literal["per_1m_tokens"] = "per_1m_tokens"
    strip_prefixes: list[str] = []
    local_models: list[str] = []
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
    dated: tuple[ModelPrice, ...] = ()
    """Earlier or later rate sets of the same model, each with its own
    ``effective_from`` / ``effective_until``; provider, limits and source default to the
    entry's."""
    reviewed_drift: str | None = None
    """Why this entry differs from genai-prices, when it does (read by ``prices --check``)."""

    def rate_sets(self) -> list[ModelPrice]:
        """The entry's rate sets as ``ModelPrice``: itself, then each dated one."""
        own = ModelPrice(**self.model_dump(exclude={"aliases", "dated", "reviewed_drift"}))
        sets = [own]
        for rates in self.dated:
            inherited = {
                key: getattr(own, key)
                for key in ("provider", "max_output_tokens", "context_window", "source")
                if getattr(rates, key) is None
            }
            sets.append(rates.model_copy(update=inherited))
        return sets


_PriceFile.model_rebuild()


_EPOCH = date(1970, 1, 1).toordinal()


def _today() -> date:
    """Today's UTC date (from ``time.time()``: several times cheaper than ``datetime.now``)."""
    return date.fromordinal(_EPOCH + int(time.time() // 86_400))


def _day(at: date | datetime | None) -> date:
    if at is None:
        return _today()
    if isinstance(at, datetime):
        return (at if at.tzinfo is None else at.astimezone(timezone.utc)).date()
    return at


def _entry(name: str, price: ModelPrice | Sequence[ModelPrice], label: str | None) -> Entry:
    """One table entry, labelled with its source; dated sets sorted and checked."""

    def labelled(p: ModelPrice) -> ModelPrice:
        if not isinstance(p, ModelPrice):
            raise ConfigurationError(
                f"price of {name!r} must be a ModelPrice (or a list of dated ones), got "
                f"{type(p).__name__}"
            )
        return (
            p
            if p.price_source is not None or label is None
            else p.model_copy(update={"price_source": label})
        )

    if isinstance(price, ModelPrice):
        one = labelled(price)
        if one.effective_from is None and one.effective_until is None:
            return one
        return (one,)
    sets = sorted((labelled(p) for p in price), key=lambda p: p.effective_from or date.min)
    if not sets:
        raise ConfigurationError(f"price of {name!r}: no rate sets")
    for earlier, later in itertools.pairwise(sets):
        if (
            earlier.effective_until is None
            or (
                later.effective_from is not None and earlier.effective_until >= later.effective_from
            )
            or later.effective_from is None
        ):
            raise ConfigurationError(
                f"price of {name!r}: dated rate sets overlap (one from "
                f"{earlier.effective_from or 'always'} until "
                f"{earlier.effective_until or 'further notice'}, one from "
                f"{later.effective_from or 'always'}); give each set effective_from and "
                "effective_until"
            )
    return tuple(sets)


def _in_force(name: str, entry: Entry, at: date | datetime | None) -> ModelPrice:
    if isinstance(entry, ModelPrice):
        return entry
    day = _day(at)
    for price in reversed(entry):  # the latest set first: the one in force now, usually
        if price.in_force(day):
            return price
    spans = ", ".join(
        f"{p.effective_from or 'always'}..{p.effective_until or 'now'}" for p in entry
    )
    raise UnknownModelError(name, detail=f"{name} has no price in force on {day} (rates: {spans})")


class PriceTable:
    """Prices per model, with explicit aliases, prefix stripping and local models.

    Build one with ``PriceTable.default()`` (the bundled, dated table, then genai-prices
    for the long tail), ``PriceTable.bundled()``, ``PriceTable.from_file(path)`` or
    ``PriceTable(models)``; layer your own on top with ``with_prices``, ``with_aliases``,
    ``with_local_models`` and ``with_prefixes``.
    """

    def __init__(
        self,
        models: Mapping[str, ModelPrice | Sequence[ModelPrice]],
        *,
        aliases: Mapping[str, str] | None = None,
        strip_prefixes: Iterable[str] | None = None,
        fallback: ModelPrice | None = None,
        version: str | None = None,
        effective_date: date | None = None,
        local_models: Iterable[str] = (),
        long_tail: LongTail | None = None,
        source: str | None = None,
    ) -> None:
        self.source = source or (f"custom {version}" if version else "custom")
        """How this table's own entries are labelled in ``LLMCallCost.price_source``."""
        self._models: dict[str, Entry] = {
            name.lower(): _entry(name, price, self.source) for name, price in models.items()
        }
        self._aliases = {alias.lower(): key.lower() for alias, key in (aliases or {}).items()}
        for alias, key in self._aliases.items():
            if key not in self._models:
                raise ConfigurationError(f"alias {alias!r} points to unknown model {key!r}")
            if alias in self._models:
                raise ConfigurationError(f"{alias!r} is both a model and an alias")
        prefixes = PLATFORM_PREFIXES if strip_prefixes is None else strip_prefixes
        self.strip_prefixes = tuple(dict.fromkeys(p.lower() for p in prefixes))
        self.local_models = frozenset(name.lower() for name in local_models)
        self.long_tail = long_tail
        self.fallback = fallback
        self.version = version
        self.effective_date = effective_date
        self._memo: dict[str, tuple[str, Entry]] = {}
        """Names resolved through prefixes, aliases or the long tail (a table never changes)."""
        self.drift_notes: dict[str, str] = {}
        """Reviewed differences from genai-prices, by model (from the price file)."""
        self.check_staleness()

    def _copy(self, **changes: Any) -> PriceTable:
        table = PriceTable.__new__(PriceTable)
        table.__dict__.update(self.__dict__)
        table.__dict__.update(changes, _memo={})
        return table

    # construction -------------------------------------------------------------------

    @classmethod
    def default(cls) -> PriceTable:
        """The bundled price table, then genai-prices for models it does not list."""
        return _default_table()

    @classmethod
    def bundled(cls) -> PriceTable:
        """The bundled price table alone (``agentbudget/data/prices.json``), loaded once."""
        return _bundled_table()

    @classmethod
    def from_file(cls, path: str | Path) -> PriceTable:
        """Load a price file: the bundled schema, or just ``{"models": {...}}``.

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
    def from_dict(
        cls, data: Any, *, source: str = "price data", label: str | None = None
    ) -> PriceTable:
        """Build a table from already-parsed price-file data.

        Only ``models`` is required; ``schema`` defaults to 1, ``currency`` to USD,
        ``unit`` to per_1m_tokens, ``version`` and ``effective_date`` to none (no
        staleness warning). ``strip_prefixes`` and ``local_models`` extend the defaults.
        ``label`` names the entries' ``price_source`` (default: the file name and version).
        """
        try:
            parsed = _PriceFile.model_validate(data)
            entries = {name: entry.rate_sets() for name, entry in parsed.models.items()}
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
                for err in exc.errors()
            )
            raise ConfigurationError(f"{source}: invalid price file: {problems}") from None
        models: dict[str, ModelPrice | Sequence[ModelPrice]] = {}
        aliases: dict[str, str] = {}
        for name, sets in entries.items():
            models[name] = sets[0] if len(sets) == 1 else sets
            for alias in parsed.models[name].aliases:
                if alias.lower() in aliases or alias.lower() in parsed.models:
                    raise ConfigurationError(
                        f"{source}: models.{name}.aliases: {alias!r} is declared twice"
                    )
                aliases[alias.lower()] = name
        if label is None:
            label = Path(source).name if source.endswith(".json") else source
            label = f"{label} {parsed.version}" if parsed.version else label
        try:
            table = cls(
                models,
                aliases=aliases,
                strip_prefixes=(*PLATFORM_PREFIXES, *parsed.strip_prefixes),
                fallback=parsed.fallback,
                version=parsed.version,
                effective_date=parsed.effective_date,
                local_models=parsed.local_models,
                source=label,
            )
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}: {exc}") from None
        table.drift_notes = {
            name.lower(): entry.reviewed_drift
            for name, entry in parsed.models.items()
            if entry.reviewed_drift
        }
        return table

    def with_prices(self, prices: Mapping[str, ModelPrice | Sequence[ModelPrice]]) -> PriceTable:
        """A new table with ``prices`` layered on top; this table is unchanged.

        A model may map to one ``ModelPrice`` or to dated rate sets (each with
        ``effective_from`` / ``effective_until``).
        """
        models = dict(self._models)
        aliases = dict(self._aliases)
        for name, price in prices.items():
            if not isinstance(price, ModelPrice | list | tuple):
                raise ConfigurationError(
                    f"with_prices: {name!r} must map to a ModelPrice, got {type(price).__name__}"
                )
            models[name.lower()] = _entry(name, price, "with_prices")
            aliases.pop(name.lower(), None)
        return self._copy(_models=models, _aliases=aliases)

    def with_aliases(self, aliases: Mapping[str, str]) -> PriceTable:
        """A new table where each alias (an Azure deployment, a proxy's name) resolves to
        the model it names: ``with_aliases({"my-deployment": "gpt-4o"})``.

        Raises:
            ConfigurationError: an alias names a model this table cannot price.
        """
        merged = dict(self._aliases)
        models = self._models
        for alias, target in aliases.items():
            if alias.lower() in models:
                raise ConfigurationError(f"with_aliases: {alias!r} is already a model")
            found = self._find(target)
            if found is None:
                raise ConfigurationError(
                    f"with_aliases: {alias!r} points to {target!r}, which this table cannot price"
                )
            key, entry = found
            if key not in models:  # a long-tail or local model: pin it in this table
                models = {**models, key: entry}
            merged[alias.lower()] = key
        return self._copy(_models=models, _aliases=merged)

    def with_local_models(self, names: Iterable[str]) -> PriceTable:
        """A new table that prices ``names`` as local models: $0, marked local."""
        return self._copy(local_models=self.local_models | {n.lower() for n in names})

    def with_prefixes(self, prefixes: Iterable[str]) -> PriceTable:
        """A new table that also strips ``prefixes`` (``"myproxy/"``) from model names."""
        added = tuple(p.lower() for p in prefixes)
        return self._copy(strip_prefixes=tuple(dict.fromkeys((*self.strip_prefixes, *added))))

    def with_fallback(self, price: ModelPrice | None) -> PriceTable:
        """A new table that prices unknown models at ``price`` instead of raising."""
        if price is not None and price.price_source is None:
            price = price.model_copy(update={"price_source": "fallback"})
        return self._copy(fallback=price)

    def without_long_tail(self) -> PriceTable:
        """This table without genai-prices behind it."""
        return self._copy(long_tail=None)

    def check_staleness(self, today: date | None = None) -> bool:
        """Whether ``effective_date`` is more than 90 days before ``today``; logs one
        warning per table version the first time it is."""
        if self.effective_date is None:
            return False
        today = today or _today()
        if today - self.effective_date <= STALE_AFTER:
            return False
        key = (self.version, self.effective_date)
        if key not in _warned_stale:
            _warned_stale.add(key)
            logger.warning(
                "agentbudget: price table %s is effective %s, more than 90 days ago; prices "
                "may have changed. Upgrade agentbudget, or load a current table with "
                "PriceTable.from_file() (the long tail comes from genai-prices: upgrade it too).",
                self.version or "(unversioned)",
                self.effective_date,
            )
        return True

    # lookup -------------------------------------------------------------------------

    def resolve(self, model: str) -> str:
        """The price key that ``model`` resolves to (``"*"`` for the fallback).

        Raises:
            UnknownModelError: when nothing matches and there is no fallback.
        """
        found = self._find(model)
        if found is not None:
            return found[0]
        if self.fallback is not None:
            return "*"
        raise self._unknown(model)

    def _unknown(self, model: str) -> UnknownModelError:
        close = difflib.get_close_matches(
            model.lower(), [*self._models, *self._aliases], n=3, cutoff=0.6
        )
        return UnknownModelError(model, known=close)

    def _find(self, model: str) -> tuple[str, Entry] | None:
        """The key and entry ``model`` resolves to, or None."""
        name = model.strip().lower()
        entry = self._models.get(name)
        if entry is not None:
            return name, entry
        found = self._memo.get(name)
        if found is None:
            found = self._resolve(name)
            if found is not None and len(self._memo) < 4096:
                self._memo[name] = found
        return found

    def _resolve(self, name: str) -> tuple[str, Entry] | None:
        if name.startswith(LOCAL_PREFIXES):  # a local model, unless this table prices it
            rest = name.split("/", 1)[1]
            if rest in self._models:
                return rest, self._models[rest]
            if rest in self._aliases:
                return self._aliases[rest], self._models[self._aliases[rest]]
            return name, LOCAL_PRICE
        while True:
            if name in self._models:
                return name, self._models[name]
            if name in self._aliases:
                key = self._aliases[name]
                return key, self._models[key]
            if name in self.local_models:
                return name, LOCAL_PRICE
            for prefix in self.strip_prefixes:
                if name.startswith(prefix) and len(name) > len(prefix):
                    name = name[len(prefix) :]
                    break
            else:
                for suffix in PLATFORM_SUFFIXES:
                    if name.endswith(suffix) and len(name) > len(suffix):
                        name = name[: -len(suffix)]
                        break
                else:
                    break
        if self.long_tail is not None:
            return self.long_tail.find(name)
        return None

    def __contains__(self, model: object) -> bool:
        return isinstance(model, str) and (self._find(model) is not None)

    def get(self, model: str, *, at: date | datetime | None = None) -> ModelPrice:
        """The price of ``model`` in force ``at`` (default: now).

        Raises:
            UnknownModelError: when the model is unknown and there is no fallback.
        """
        return self.lookup(model, at=at)[1]

    def lookup(self, model: str, *, at: date | datetime | None = None) -> tuple[str, ModelPrice]:
        """The price key ``model`` resolves to and its price in force ``at`` (default: now).

        Raises:
            UnknownModelError: when the model is unknown and there is no fallback, or has
                no rates in force on that day.
        """
        found = self._find(model)
        if found is None:
            if self.fallback is not None:
                return "*", self.fallback
            raise self._unknown(model)
        key, entry = found
        if isinstance(entry, ModelPrice):
            return key, entry
        return key, _in_force(model, entry, at)

    def cost_nanos(
        self, model: str, usage: TokenUsage | Usage, *, at: date | datetime | None = None
    ) -> int:
        """Exact cost in whole nano-USD, rounded up per request, at the rates in force ``at``."""
        price = self.get(model, at=at)
        requests = TokenUsage.per_request(usage, tiered=bool(price.tiers))
        return sum(price.cost_nanos(u, model=model) for u in requests)

    def cost(
        self, model: str, usage: TokenUsage | Usage, *, at: date | datetime | None = None
    ) -> Decimal:
        """Exact cost in ``Decimal`` USD of ``usage`` (one request, or a whole
        ``agents.Usage``), at the rates in force ``at`` (default: now)."""
        return nanos_to_usd(self.cost_nanos(model, usage, at=at))

    def models(self, *, at: date | datetime | None = None) -> dict[str, ModelPrice]:
        """Every model this table lists (not the long tail), by canonical name, at the
        rates in force ``at`` (models with none then are left out)."""
        listed: dict[str, ModelPrice] = {}
        for name, entry in self._models.items():
            try:
                listed[name] = _in_force(name, entry, at)
            except UnknownModelError:
                continue
        return listed

    def rate_sets(self, model: str) -> tuple[ModelPrice, ...]:
        """Every dated rate set of ``model`` (one, when its price is not dated)."""
        found = self._find(model)
        if found is None:
            raise self._unknown(model)
        entry = found[1]
        return entry if isinstance(entry, tuple) else (entry,)

    def aliases_of(self, model: str) -> list[str]:
        """The aliases that resolve to the canonical ``model``."""
        key = model.lower()
        return sorted(alias for alias, target in self._aliases.items() if target == key)

    def __repr__(self) -> str:
        tail = ", then genai-prices" if self.long_tail is not None else ""
        return (
            f"PriceTable({len(self._models)} models, version={self.version!r}, "
            f"effective_date={self.effective_date}{tail})"
        )


@functools.cache
def _bundled_table() -> PriceTable:
    data = json.loads(
        resources.files("agentbudget").joinpath("data/prices.json").read_text("utf-8")
    )
    return PriceTable.from_dict(
        data, source="agentbudget/data/prices.json", label=f"bundled {data.get('version')}"
    )


@functools.cache
def _default_table() -> PriceTable:
    from .price_sources import GenaiPrices

    return _bundled_table()._copy(long_tail=GenaiPrices())
