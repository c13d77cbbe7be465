"""Budget planning: what a budget buys, and when a window's allowance will run out.

Three pieces of arithmetic, exact (``Fraction`` inside, whole tokens and runs rounded
down, dollars as ``Decimal``); ``agentbudget plan`` and ``agentbudget spend --forecast``
only render them.

- ``plan_budget``: from the price table alone. A model's *blended* price per 1M tokens is
  ``(a x ((1 - s) x input + s x cached_input) + b x output) / (a + b)`` for an
  ``a:b`` input:output ratio and a cached-input share ``s`` (a model without a cache
  read rate pays its input rate); the budget buys ``floor(budget x 1M / blended)``
  tokens, and ``floor(tokens / run_tokens)`` runs of a typical size. A routed mix is
  priced at the share-weighted blended price. Long-context tiers are not applied.
- ``measured_plan``: from a ledger window. The measured cost per run per agent and model,
  what the budget buys at it, the spend per *user-day* (all spend in the window divided
  by the number of (user, UTC day) pairs with a run), the daily active users the budget
  supports at that spend, and a per-user daily allowance that keeps the budget with a
  margin when the planned number of users (``users``, else the peak observed daily
  users) all spend their whole allowance every day.
- ``forecast_window``: the projection of one allowance window to its end. The rate is
  the linear rate of the last ``hours`` hours in the ledger for the window's subject
  (without a ledger: the window's spend so far over the time elapsed). With a ledger,
  each later day of the window is weighted by its day-of-week profile: the mean spend
  of that weekday over the last ``profile_days`` UTC days divided by the mean day,
  relative to today's weekday. The allowance is exhausted where spent + reserved +
  projected reaches the limit, if that is before the window ends.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any, Literal

from .errors import ConfigurationError
from .money import usd_to_nanos
from .pricing import ModelPrice, PriceTable
from .sinks.ledger import PostgresLedger, SQLiteLedger

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_MODELS",
    "DEFAULT_RUN_TOKENS",
    "PERIOD_DAYS",
    "BudgetPlan",
    "LedgerPlan",
    "MeasuredRow",
    "ModelBuys",
    "WindowForecast",
    "check_forecast_options",
    "forecast_window",
    "measured_plan",
    "parse_mix",
    "parse_ratio",
    "plan_budget",
]

Period = Literal["day", "week", "month"]
PERIOD_DAYS: Mapping[str, int] = {"day": 1, "week": 7, "month": 30}
"""Days per planning period (a month is planned as 30 days)."""
DEFAULT_MODELS = ("gpt-4o-mini", "gpt-4o")
DEFAULT_RUN_TOKENS = 4_000
"""A typical run's tokens (input + output over all its LLM calls) when none is given."""
DEFAULT_MIX = (("simple", Fraction(4, 5)), ("complex", Fraction(1, 5)))
DEFAULT_MARGIN = Decimal("0.20")
_ALLOWANCE_STEP = Decimal("0.0001")  # suggested allowances are rounded down to this
_MILLION = 1_000_000
Ledger = SQLiteLedger | PostgresLedger


def _exact(value: Decimal | int | str, name: str) -> Decimal:
    if isinstance(value, bool) or isinstance(value, float):
        raise ConfigurationError(f"{name} must be a Decimal, str or int, got {value!r}")
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except ArithmeticError:
        raise ConfigurationError(f"{name} must be a number, got {value!r}") from None
    if not amount.is_finite():
        raise ConfigurationError(f"{name} must be finite, got {value!r}")
    return amount


def _share(value: Decimal | int | str, name: str, *, below_one: bool = False) -> Fraction:
    amount = _exact(value, name)
    if amount < 0 or amount > 1 or (below_one and amount == 1):
        bound = "0 <= x < 1" if below_one else "0 <= x <= 1"
        raise ConfigurationError(f"{name} must be a fraction with {bound}, got {value!r}")
    return Fraction(amount)


def _budget(value: Decimal | int | str) -> Fraction:
    amount = _exact(value, "budget")
    if amount <= 0:
        raise ConfigurationError(f"budget must be more than 0 USD, got {value!r}")
    return Fraction(amount)


def _period_days(period: str) -> int:
    if period not in PERIOD_DAYS:
        raise ConfigurationError(f"period must be one of day, week, month; got {period!r}")
    return PERIOD_DAYS[period]


def _positive(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _decimal(value: Fraction, places: int = 9) -> Decimal:
    """A fraction as a Decimal rounded down to ``places`` decimals."""
    scaled = math.floor(value * 10**places)
    return Decimal(scaled).scaleb(-places).normalize()


def parse_ratio(text: str) -> tuple[int, int]:
    """``"3:1"`` -> ``(3, 1)``: input tokens to output tokens, whole numbers."""
    left, sep, right = text.partition(":")
    if not sep or not left.strip().isdigit() or not right.strip().isdigit():
        raise ConfigurationError(f"the input:output ratio must look like 3:1, got {text!r}")
    a, b = int(left), int(right)
    if a + b == 0:
        raise ConfigurationError(f"the input:output ratio {text!r} has no tokens")
    return a, b


def parse_mix(text: str) -> tuple[tuple[str, Fraction], ...]:
    """``"simple:0.8,complex:0.2"`` -> name/share pairs; shares must add up to 1.

    A name is ``simple`` (the cheapest model planned), ``complex`` (the dearest) or a
    model name.
    """
    pairs: list[tuple[str, Fraction]] = []
    for part in text.split(","):
        name, sep, share = part.strip().rpartition(":")
        if not sep or not name:
            raise ConfigurationError(
                f"a mix must look like simple:0.8,complex:0.2 (name:share, ...), got {text!r}"
            )
        pairs.append((name.strip(), _share(share.strip(), f"the share of {name!r}")))
    if sum(share for _, share in pairs) != 1:
        raise ConfigurationError(f"the shares of the mix {text!r} must add up to 1")
    return tuple(pairs)


# -- plan from the price table -------------------------------------------------------------


@dataclass(frozen=True)
class ModelBuys:
    """What the budget buys on one model, or on a routed mix of models.

    Attributes:
        name: the model as asked, or ``"mix"``.
        shares: ``(price key, share)`` of each model (one, at 1, for a single model).
        usd_per_million: the blended price of 1M tokens at the plan's assumptions.
        tokens: tokens (input + output) the budget buys in the period; None when free.
        runs: runs of ``run_tokens`` tokens it buys; None when free.
        tokens_per_day, runs_per_day: the same per day of the period.
        runs_per_user_day: runs per user per day for the planned users (None without).
    """

    name: str
    shares: tuple[tuple[str, Decimal], ...]
    usd_per_million: Decimal
    tokens: int | None
    runs: int | None
    tokens_per_day: int | None
    runs_per_day: int | None
    runs_per_user_day: int | None


@dataclass(frozen=True)
class BudgetPlan:
    """``plan_budget``'s answer: the assumptions and a row per model (then the mix)."""

    budget_usd: Decimal
    period: str
    days: int
    input_output: tuple[int, int]
    cached_share: Decimal
    run_tokens: int
    users: int | None
    price_table: str
    rows: tuple[ModelBuys, ...]


def blended_per_million(price: ModelPrice, ratio: tuple[int, int], cached: Fraction) -> Fraction:
    """USD per 1M tokens at an input:output ``ratio`` with a ``cached`` input share."""
    a, b = ratio
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    input_rate = (1 - cached) * Fraction(price.input) + cached * Fraction(cached_rate)
    return (a * input_rate + b * Fraction(price.output)) / (a + b)


def _buys(
    name: str,
    shares: Sequence[tuple[str, Fraction]],
    per_million: Fraction,
    budget: Fraction,
    days: int,
    run_tokens: int,
    users: int | None,
) -> ModelBuys:
    if per_million == 0:
        tokens = runs = tokens_day = runs_day = per_user = None
    else:
        exact = budget * _MILLION / per_million  # tokens the budget buys, exactly
        tokens = math.floor(exact)
        runs = math.floor(exact / run_tokens)
        tokens_day = math.floor(exact / days)
        runs_day = math.floor(exact / (run_tokens * days))
        per_user = None if users is None else math.floor(exact / (run_tokens * days * users))
    return ModelBuys(
        name=name,
        shares=tuple((key, _decimal(share)) for key, share in shares),
        usd_per_million=_decimal(per_million),
        tokens=tokens,
        runs=runs,
        tokens_per_day=tokens_day,
        runs_per_day=runs_day,
        runs_per_user_day=per_user,
    )


def plan_budget(
    budget_usd: Decimal | int | str,
    *,
    period: str = "month",
    models: Iterable[str] = DEFAULT_MODELS,
    prices: PriceTable | None = None,
    ratio: tuple[int, int] = (3, 1),
    cached_share: Decimal | int | str = 0,
    run_tokens: int = DEFAULT_RUN_TOKENS,
    users: int | None = None,
    mix: Sequence[tuple[str, Fraction]] | None = None,
) -> BudgetPlan:
    """What ``budget_usd`` per ``period`` buys on each model and on a routed mix.

    Args:
        models: model names (priced by ``prices``); the mix routes between them.
        ratio: input tokens to output tokens (``(3, 1)``: three input per output).
        cached_share: the share of input tokens read from the prompt cache.
        run_tokens: the tokens of a typical run.
        users: daily active users to divide the budget by (None: not planned per user).
        mix: ``(name, share)`` pairs (``parse_mix``); None routes 80% of tokens to the
            cheapest model and 20% to the dearest when there are two or more; ``()``
            plans no mix.

    Raises:
        ConfigurationError: a bad amount, period, ratio, share or mix.
        UnknownModelError: a model the table does not price.
    """
    budget = _budget(budget_usd)
    days = _period_days(period)
    a, b = ratio
    if (
        any(isinstance(n, bool) or not isinstance(n, int) for n in ratio)
        or min(a, b) < 0
        or a + b == 0
    ):
        raise ConfigurationError(f"ratio must be two whole numbers >= 0, not both 0; got {ratio}")
    cached = _share(cached_share, "cached_share")
    _positive(run_tokens, "run_tokens")
    if users is not None:
        _positive(users, "users")
    table = prices or PriceTable.default()
    names = list(dict.fromkeys(models))
    if not names:
        raise ConfigurationError("plan at least one model")
    blended: dict[str, Fraction] = {}
    keys: dict[str, str] = {}
    for name in names:
        key, price = table.lookup(name)
        keys[name] = key
        blended[name] = blended_per_million(price, (a, b), cached)
    rows = [
        _buys(name, [(keys[name], Fraction(1))], blended[name], budget, days, run_tokens, users)
        for name in names
    ]
    if mix is None:
        mix = DEFAULT_MIX if len(names) > 1 else ()
    if mix:
        by_price = sorted(names, key=lambda n: blended[n])
        aliases = {"simple": by_price[0], "complex": by_price[-1]}
        shares: dict[str, Fraction] = {}
        for name, share in mix:
            model = aliases.get(name, name)
            if model not in blended:
                key, price = table.lookup(model)
                keys[model], blended[model] = key, blended_per_million(price, (a, b), cached)
            shares[model] = shares.get(model, Fraction(0)) + share
        per_million = sum((s * blended[m] for m, s in shares.items()), Fraction(0))
        split = [(keys[m], s) for m, s in shares.items()]
        rows.append(_buys("mix", split, per_million, budget, days, run_tokens, users))
    return BudgetPlan(
        budget_usd=_exact(budget_usd, "budget"),
        period=period,
        days=days,
        input_output=(a, b),
        cached_share=_decimal(cached),
        run_tokens=run_tokens,
        users=users,
        price_table=table.version or table.source,
        rows=tuple(rows),
    )


# -- plan from a ledger --------------------------------------------------------------------


@dataclass(frozen=True)
class MeasuredRow:
    """One agent's calls to one model in the ledger window, and what the budget buys at
    their measured cost (a run counts once per agent and model it called)."""

    agent: str
    model: str
    runs: int
    calls: int
    tokens: int
    cost_usd: Decimal
    cost_per_run_usd: Decimal
    runs_bought: int | None
    tokens_bought: int | None


@dataclass(frozen=True)
class LedgerPlan:
    """``measured_plan``'s answer (see the module docs for each figure's definition)."""

    budget_usd: Decimal
    period: str
    days: int
    since: datetime | None
    until: datetime
    runs: int
    cost_usd: Decimal
    cost_per_run_usd: Decimal | None
    runs_bought: int | None
    rows: tuple[MeasuredRow, ...]
    user_days: int
    peak_daily_users: int
    spend_per_user_day_usd: Decimal | None
    supported_daily_users: int | None
    planned_users: int | None
    margin: Decimal
    suggested_daily_allowance_usd: Decimal | None


def _runs(ledger: Ledger, since: datetime | None, until: datetime) -> list[Any]:
    if isinstance(ledger, PostgresLedger):
        return ledger.runs_sync(since, until, limit=None)
    return ledger.runs(since, until, limit=None)


def measured_plan(
    ledger: Ledger,
    budget_usd: Decimal | int | str,
    *,
    period: str = "month",
    since: datetime | None = None,
    until: datetime,
    users: int | None = None,
    margin: Decimal | int | str = DEFAULT_MARGIN,
) -> LedgerPlan:
    """What ``budget_usd`` per ``period`` buys at the costs measured in a ledger window.

    Args:
        since, until: the window (``since`` inclusive, ``until`` exclusive).
        users: the daily active users to plan the allowance for (None: the peak observed).
        margin: the share of the budget the suggested allowance leaves unspent.
    """
    budget = _budget(budget_usd)
    days = _period_days(period)
    kept = _share(margin, "margin", below_one=True)
    if users is not None:
        _positive(users, "users")
    reports = _runs(ledger, since, until)
    total = 0
    groups: dict[tuple[str, str], list[Any]] = {}  # (agent, model) -> [run ids, calls, ...]
    user_days: dict[str, set[str]] = {}
    for report in reports:
        total += usd_to_nanos(report.cost_usd) if report.cost_usd is not None else 0
        if report.user is not None:
            day = report.started_at.astimezone(timezone.utc).date().isoformat()
            user_days.setdefault(day, set()).add(report.user)
        for call in report.calls:
            group = groups.setdefault((call.agent, call.model), [set(), 0, 0, 0])
            group[0].add(report.run_id)
            group[1] += 1
            group[2] += call.input_tokens + call.output_tokens
            group[3] += usd_to_nanos(call.cost_usd) if call.cost_usd is not None else 0
    budget_nanos = budget * 10**9
    rows = []
    for (agent, model), (ids, calls, tokens, nanos) in groups.items():
        per_run = Fraction(nanos, len(ids))
        rows.append(
            MeasuredRow(
                agent=agent,
                model=model,
                runs=len(ids),
                calls=calls,
                tokens=tokens,
                cost_usd=_decimal(Fraction(nanos, 10**9)),
                cost_per_run_usd=_decimal(per_run / 10**9),
                runs_bought=math.floor(budget_nanos / per_run) if nanos else None,
                tokens_bought=math.floor(budget_nanos * tokens / nanos) if nanos else None,
            )
        )
    rows.sort(key=lambda r: (-r.cost_usd, r.agent, r.model))
    pairs = sum(len(users_of_day) for users_of_day in user_days.values())
    peak = max((len(users_of_day) for users_of_day in user_days.values()), default=0)
    daily_budget = budget / days
    per_user_day = Fraction(total, pairs * 10**9) if pairs else None
    planned = users if users is not None else (peak or None)
    allowance = None
    if planned is not None:
        exact = daily_budget * (1 - kept) / planned
        allowance = (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(
            _ALLOWANCE_STEP, rounding=ROUND_FLOOR
        )
    return LedgerPlan(
        budget_usd=_exact(budget_usd, "budget"),
        period=period,
        days=days,
        since=since,
        until=until,
        runs=len(reports),
        cost_usd=_decimal(Fraction(total, 10**9)),
        cost_per_run_usd=_decimal(Fraction(total, len(reports) * 10**9)) if reports else None,
        runs_bought=math.floor(budget_nanos * len(reports) / total) if total else None,
        rows=tuple(rows),
        user_days=pairs,
        peak_daily_users=peak,
        spend_per_user_day_usd=None if per_user_day is None else _decimal(per_user_day),
        supported_daily_users=(math.floor(daily_budget / per_user_day) if per_user_day else None),
        planned_users=planned,
        margin=_decimal(kept),
        suggested_daily_allowance_usd=allowance,
    )


# -- forecast ------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowForecast:
    """One allowance counter's current window, projected to its end.

    Amounts are in the counter's unit: ``"tokens"`` or ``"nanousd"`` (nano-dollars).

    Attributes:
        allowance: the allowance's label (``user/day``).
        rate_per_hour: the rate the projection uses, in units per hour.
        projected: spent + reserved + the projection at the window's end (None: a
            ``total`` window, which has no end).
        exhausts_at: when spent + reserved + projection reaches the limit, if it does
            before the window ends (the time now when it already has); else None.
        basis: how the rate was measured, in words.
    """

    allowance: str
    subject: str
    window: str
    unit: str
    limit: int
    spent: int
    reserved: int
    now: datetime
    window_end: datetime | None
    rate_per_hour: Decimal
    projected: int | None
    exhausts_at: datetime | None
    basis: str

    @property
    def hours_left(self) -> Decimal | None:
        """Hours from now until the allowance is exhausted (None: it will not be)."""
        if self.exhausts_at is None:
            return None
        seconds = max((self.exhausts_at - self.now).total_seconds(), 0.0)
        return (Decimal(seconds) / 3600).quantize(Decimal("0.01"))


def _units(report: Any, unit: str) -> int:
    if unit == "tokens":
        return int(report.total_tokens)
    return usd_to_nanos(report.cost_usd) if report.cost_usd is not None else 0


async def _aruns(
    ledger: Ledger, since: datetime, until: datetime, per: str, subject: str
) -> list[Any]:
    filters: dict[str, str] = {per: subject} if per in ("user", "team") else {}
    if isinstance(ledger, PostgresLedger):
        return await ledger.runs(since, until, limit=None, **filters)
    return await asyncio.to_thread(lambda: ledger.runs(since, until, limit=None, **filters))


async def _profile(
    ledger: Ledger, unit: str, today: datetime, days: int
) -> dict[int, Fraction] | None:
    """Weekday weights (0 = Monday) from the ``days`` whole UTC days before ``today``; None
    with under a week of history or no spend."""
    start = today - timedelta(days=days)
    if isinstance(ledger, PostgresLedger):
        rows = await ledger.summary(start, today, "day")
    else:
        rows = await asyncio.to_thread(ledger.summary, start, today, "day")
    amounts = {
        row.key: (
            row.input_tokens + row.output_tokens if unit == "tokens" else usd_to_nanos(row.cost_usd)
        )
        for row in rows
        if row.key
    }
    if len(amounts) == 0 or days < 7:
        return None
    per_weekday: dict[int, list[int]] = {}
    for n in range(days):
        day = (start + timedelta(days=n)).date()
        per_weekday.setdefault(day.weekday(), []).append(amounts.get(day.isoformat(), 0))
    overall = Fraction(sum(sum(v) for v in per_weekday.values()), days)
    if overall == 0:
        return None
    return {wd: Fraction(sum(v), len(v)) / overall for wd, v in per_weekday.items()}


def project(
    used: int,
    limit: int,
    *,
    now: float,
    end: float | None,
    rate: Fraction,
    tz: tzinfo,
    weights: Mapping[int, Fraction] | None = None,
) -> tuple[int | None, float | None]:
    """``(projected at the end, exhaustion time)`` from ``used`` at ``now`` (Unix seconds)
    at ``rate`` units per second, each local day scaled by its weekday weight relative to
    today's. Both may be None (no end; no exhaustion before the end)."""
    left = limit - used
    if left <= 0:
        return (used if end is None else used + math.ceil(rate * Fraction(end - now))), now
    if end is None:
        return None, (now + float(left / rate) if rate > 0 else None)
    today = datetime.fromtimestamp(now, tz).weekday()
    base = weights.get(today) if weights else None
    added = Fraction(0)
    exhausts: float | None = None
    start = now
    while start < end:
        local = datetime.fromtimestamp(start, tz)
        midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        stop = min(end, midnight.timestamp())
        factor = weights.get(local.weekday(), Fraction(1)) / base if weights and base else 1
        segment = rate * factor
        piece = segment * Fraction(stop - start)
        if exhausts is None and segment > 0 and added + piece >= left:
            exhausts = start + float((left - added) / segment)
        added += piece
        start = stop
    return used + math.ceil(added), exhausts


def check_forecast_options(ledger: object, hours: object, profile_days: object) -> None:
    """Raise ``ConfigurationError`` for a ledger that is not one, or bad ``hours`` /
    ``profile_days``."""
    if ledger is not None and not isinstance(ledger, SQLiteLedger | PostgresLedger):
        raise ConfigurationError(
            f"ledger must be a SQLiteLedger or a PostgresLedger, got {ledger!r}"
        )
    _positive(hours, "hours")
    _positive(profile_days, "profile_days")


async def forecast_window(
    *,
    allowance: str,
    per: str,
    subject: str,
    window: str,
    unit: str,
    limit: int,
    spent: int,
    reserved: int,
    span: tuple[float, float] | None,
    now: float,
    tz: tzinfo,
    ledger: Ledger | None = None,
    hours: int = 6,
    profile_days: int = 28,
) -> WindowForecast:
    """Project one allowance window (``span``: its start and end, Unix seconds; None for
    ``total``) to its end; see the module docs for the model."""
    check_forecast_options(ledger, hours, profile_days)
    moment = datetime.fromtimestamp(now, timezone.utc)
    weights = None
    if ledger is not None:
        since = moment - timedelta(hours=hours)
        seen = sum(_units(r, unit) for r in await _aruns(ledger, since, moment, per, subject))
        rate = Fraction(seen, hours * 3600)
        basis = f"ledger, last {hours}h"
        midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        if span is not None and span[1] - span[0] > 86_400:
            weights = await _profile(ledger, unit, midnight, profile_days)
            if weights is not None:
                basis += f", weekday profile of {profile_days} days"
    elif span is not None and now > span[0]:
        rate = Fraction(spent) / Fraction(now - span[0])
        basis = "window so far"
    else:
        rate = Fraction(0)
        basis = "no rate (give a ledger)"
    end = None if span is None else span[1]
    projected, exhausts = project(
        spent + reserved, limit, now=now, end=end, rate=rate, tz=tz, weights=weights
    )
    return WindowForecast(
        allowance=allowance,
        subject=subject,
        window=window,
        unit=unit,
        limit=limit,
        spent=spent,
        reserved=reserved,
        now=moment,
        window_end=None if end is None else datetime.fromtimestamp(end, timezone.utc),
        rate_per_hour=_decimal(rate * 3600, 3),
        projected=projected,
        exhausts_at=None if exhausts is None else datetime.fromtimestamp(exhausts, timezone.utc),
        basis=basis,
    )
