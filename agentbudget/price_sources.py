"""genai-prices as the long tail behind the bundled table, and the drift check.

genai-prices (pydantic's maintained price library) is imported lazily, the first time a
model is not in the bundled table: its import takes a noticeable fraction of a second.
Each model it prices is compiled once into ``ModelPrice`` - the integer-rate form the call
path uses - with its dated rate sets, long-context tiers and service tiers, and cached.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from importlib import metadata
from typing import Any, Protocol

from .rates import _RATE_FIELDS, Entry, ModelPrice, PriceTier

__all__ = ["Drift", "GenaiPrices", "LongTail", "drift"]


class _Table(Protocol):
    """What ``drift`` reads of a ``PriceTable`` (which imports this module, not the reverse)."""

    drift_notes: dict[str, str]

    def models(self, *, at: date | datetime | None = None) -> dict[str, ModelPrice]: ...

    def aliases_of(self, model: str) -> list[str]: ...


_KEYS = {
    "input_mtok": "input",
    "cache_read_mtok": "cached_input",
    "cache_write_mtok": "cache_write_5m",
    "cache_write_1h_mtok": "cache_write_1h",
    "output_mtok": "output",
}
"""genai-prices price keys -> our rate names (others, such as audio, are not buckets here)."""

_TIER_CONTEXTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("flex", {"service_tier": "flex"}),
    ("priority", {"service_tier": "priority"}),
    ("scale", {"service_tier": "scale"}),
    ("batch", {"processing": "batch"}),
)
"""Service tiers a response can report, and the genai-prices context that prices them."""


class LongTail(Protocol):
    """A source of prices for models the table does not list."""

    def find(self, name: str) -> tuple[str, Entry] | None:
        """The price key and entry for ``name`` (prefixes already stripped), or None."""
        ...


class GenaiPrices:
    """Models genai-prices knows, compiled once each; the module is imported on first use."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[str, Entry] | None] = {}
        self._lock = threading.Lock()
        self._label: str | None = None

    @property
    def label(self) -> str:
        """``"genai-prices <version>"``."""
        if self._label is None:
            try:
                self._label = f"genai-prices {metadata.version('genai-prices')}"
            except metadata.PackageNotFoundError:
                self._label = "genai-prices"
        return self._label

    def find(self, name: str) -> tuple[str, Entry] | None:
        name = name.lower()
        try:
            return self._cache[name]
        except KeyError:
            pass
        found = self._compile(name)
        with self._lock:
            self._cache[name] = found
        return found

    def _compile(self, name: str) -> tuple[str, Entry] | None:
        try:
            from genai_prices.data_snapshot import get_snapshot
        except ImportError:  # pragma: no cover - a declared dependency
            return None
        try:
            _provider, model = get_snapshot().find_provider_model(name, None, None, None)
        except LookupError:
            return None
        sets = compile_model(model, label=self.label)
        if not sets:
            return None
        key = str(model.id).lower()
        return key, sets[0] if len(sets) == 1 else tuple(sets)


def _boundaries(model: Any) -> list[date]:
    """Every day on which one of the model's prices starts (its dated changes)."""
    days: set[date] = set()
    conditions = model.prices if isinstance(model.prices, list) else []
    for item in [*conditions, *(model.price_variants or [])]:
        start = getattr(item.constraint, "start_date", None)
        if isinstance(start, date):
            days.add(start)
    return sorted(days)


def compile_model(model: Any, *, label: str) -> list[ModelPrice]:
    """A genai-prices ``ModelInfo`` as dated ``ModelPrice`` rate sets (empty when it has no
    token rates we can bill). Off-peak discounts by time of day are left out: the
    standard rate is charged, never less than the bill."""
    days = _boundaries(model)
    starts: list[date | None] = [None, *days]
    ends: list[date | None] = [day - timedelta(days=1) for day in days]
    spans = list(zip(starts, [*ends, None], strict=True))
    sets: list[ModelPrice] = []
    for start, end in spans:
        day = start or (days[0] - timedelta(days=1) if days else date(2000, 1, 1))
        at = datetime.combine(day, time(12), tzinfo=timezone.utc)
        price = _price_at(model, at, label=label)
        if price is None:
            continue
        update = {"effective_from": start, "effective_until": end}
        if sets and _same_rates(sets[-1], price):
            sets[-1] = sets[-1].model_copy(update={"effective_until": end})
            continue
        sets.append(price.model_copy(update=update))
    if len(sets) == 1:
        sets[0] = sets[0].model_copy(update={"effective_from": None, "effective_until": None})
    return sets


def _same_rates(a: ModelPrice, b: ModelPrice) -> bool:
    fields = ("effective_from", "effective_until")
    return a.model_dump(exclude=set(fields)) == b.model_dump(exclude=set(fields))


def _standard(model: Any, at: datetime) -> Any:
    """The standard genai-prices ``ModelPrice`` at ``at``, ignoring time-of-day prices."""
    if not isinstance(model.prices, list):
        return model.prices
    chosen = model.prices[0].prices
    for conditional in reversed(model.prices):
        constraint = conditional.constraint
        if constraint is None or (hasattr(constraint, "start_date") and constraint.active(at)):
            chosen = conditional.prices
            break
    return chosen


def _price_at(model: Any, at: datetime, *, label: str) -> ModelPrice | None:
    rates = _rates(_standard(model, at))
    if rates is None:
        return None
    tiers: dict[str, ModelPrice] = {}
    for tier_name, context in _TIER_CONTEXTS:
        if not any(v.when == context for v in model.price_variants or ()):
            continue
        variant = model.get_prices(at, context)
        tier_rates = _rates(variant)
        if tier_rates is not None and tier_rates != rates:
            tiers[tier_name] = ModelPrice(**tier_rates, price_source=label)
    return ModelPrice(
        **rates,
        context_window=model.context_window,
        service_tiers=tiers,
        source=f"genai-prices: {model.id}",
        price_source=label,
    )


def _rates(price: Any) -> dict[str, Any] | None:
    """Our rate fields and long-context tiers from a genai-prices ``ModelPrice``."""
    values = {ours: getattr(price, theirs, None) for theirs, ours in _KEYS.items()}
    if values["input"] is None or values["output"] is None:
        return None
    if values["cache_write_5m"] is None:  # cache writes bill as ordinary input (OpenAI, Gemini)
        values["cache_write_5m"] = values["input"]
    thresholds = sorted(
        {
            tier.start
            for v in values.values()
            if v is not None and hasattr(v, "tiers")
            for tier in v.tiers
        }
    )

    def at(value: Any, threshold: int | None) -> Decimal | None:
        if value is None:
            return None
        if not hasattr(value, "tiers"):
            return Decimal(value)
        rate = value.base
        for tier in value.tiers:
            if threshold is not None and threshold >= tier.start:
                rate = tier.price
        return Decimal(rate)

    base = {name: at(value, None) for name, value in values.items()}
    tiers = [
        PriceTier.model_validate(
            {
                "above_input_tokens": threshold,
                **{name: at(value, threshold) for name, value in values.items()},
            }
        )
        for threshold in thresholds
    ]
    return {**base, "tiers": tuple(tiers)}


@dataclass(frozen=True)
class Drift:
    """One difference between a bundled entry and genai-prices."""

    model: str
    field: str
    """A rate (``input``, ``tier>272000.output``), or ``missing`` when genai-prices lacks it."""
    bundled: str
    """The table's value."""
    genai: str
    reviewed: str | None
    """The table's note on this difference, when it was decided on the provider's page."""


def drift(table: _Table, *, at: date | None = None) -> list[Drift]:
    """Every difference between ``table``'s entries (rates in force ``at``) and genai-prices.

    Offline: genai-prices' bundled data snapshot is read, nothing is fetched.
    """
    source = GenaiPrices()
    day = at or datetime.now(timezone.utc).date()
    found: list[Drift] = []
    for name, ours in sorted(table.models(at=day).items()):
        note = table.drift_notes.get(name)
        theirs_entry = source.find(name)
        if theirs_entry is None:
            found.append(Drift(name, "missing", "listed", "-", note))
            continue
        key, entry = theirs_entry
        sets = entry if isinstance(entry, tuple) else (entry,)
        theirs = next((p for p in sets if p.in_force(day)), None)
        if theirs is None:
            found.append(Drift(name, "missing", "listed", f"{key}: no price on {day}", note))
            continue
        if key != name and key not in table.aliases_of(name):
            found.append(Drift(name, "model", name, key, note))
        found.extend(Drift(name, f, b, g, note) for f, b, g in _compare(ours, theirs))
    return found


def _compare(ours: ModelPrice, theirs: ModelPrice) -> Iterator[tuple[str, str, str]]:
    def show(value: Decimal | None) -> str:
        return "-" if value is None else f"{value.normalize():f}"

    def rates(prefix: str, a: Any, b: Any) -> Iterator[tuple[str, str, str]]:
        for field in _RATE_FIELDS:
            x, y = getattr(a, field), getattr(b, field)
            if field == "cache_write_5m":  # no write rate: writes bill as input
                x, y = (a.input if x is None else x), (b.input if y is None else y)
            if field == "reasoning" or (x is None and y is None):
                continue
            if x is None or y is None or x != y:
                yield f"{prefix}{field}", show(x), show(y)

    yield from rates("", ours, theirs)
    our_tiers = {t.above_input_tokens: t for t in ours.tiers}
    their_tiers = {t.above_input_tokens: t for t in theirs.tiers}
    for threshold in sorted({*our_tiers, *their_tiers}):
        a, b = our_tiers.get(threshold), their_tiers.get(threshold)
        if a is None or b is None:
            yield (
                f"tier>{threshold}",
                "-" if a is None else f"{show(a.input)}/{show(a.output)}",
                "-" if b is None else f"{show(b.input)}/{show(b.output)}",
            )
        else:
            yield from rates(f"tier>{threshold}.", a, b)


def format_drift(differences: Sequence[Drift]) -> list[str]:
    """Lines for ``agentbudget prices --check``."""
    lines: list[str] = []
    for d in differences:
        mark = "reviewed" if d.reviewed else "NEW"
        line = f"{mark:<8} {d.model:<26} {d.field:<28} table {d.bundled:<10} genai {d.genai}"
        if d.reviewed:
            line += f"  ({d.reviewed})"
        lines.append(line)
    return lines
