"""Per-user, per-team and global budgets: reserve the worst case, then settle the actual.

::

    budgets = ab.Budgets(
        store="redis://127.0.0.1:6379/0",
        allowances=[ab.Allowance(per="user", window="day", tokens=50_000),
                    ab.Allowance(per="global", window="month", usd="100")],
        on_exhausted=[ab.Downgrade("gpt-4o-mini"), ab.CapOutput(256), ab.Refuse("Daily limit")],
    )
    guard = ab.Guard(budgets=budgets)
    await guard.run(agent, "question", user="u-42")

Before each LLM call the call's worst case (estimated input plus the bounded output, in
tokens and in nano-dollars) is reserved in every applicable allowance's counter of the
current window, atomically: all or none. After the call the reservation settles to the
actual usage; on error, cancellation or timeout it settles at least the estimated input
(the request was sent). Reservations carry an id and a lease, so a crashed process's
reservations return to the budget. When a reservation does not fit, the degrade chain
runs in order: ``Downgrade`` re-plans the call on a cheaper model, ``CapOutput`` shrinks
the output bound (not below its floor) until it fits, ``Refuse`` raises
``BudgetExhausted`` with its message.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents import Model
from cachetools import LRUCache

from .errors import BudgetExhausted, ConfigurationError, StoreUnavailable
from .money import nanos_to_usd, parse_usd, usd_to_nanos
from .pricing import TokenUsage
from .stores import (
    MAX_UNITS,
    BudgetStore,
    Charge,
    JournalingStore,
    ReserveResult,
    store_from_url,
)
from .stores.base import MAX_SECONDS, check_id, check_seconds

if TYPE_CHECKING:
    from .interceptor import CallPlan, CallRequest, MeteredModel

__all__ = [
    "Allowance",
    "BudgetAlert",
    "Budgets",
    "CapOutput",
    "Downgrade",
    "Refuse",
    "WindowSpend",
    "counter_key",
    "parse_allowance",
]

logger = logging.getLogger("agentbudget")

Per = Literal["user", "team", "global"]
Window = Literal["hour", "day", "month", "total"]
_WINDOWS = ("hour", "day", "month", "total")


@dataclass(frozen=True)
class Allowance:
    """How much one user, one team or everyone together may spend per window.

    Args:
        per: ``"user"``, ``"team"`` or ``"global"``.
        window: ``"hour"``, ``"day"``, ``"month"`` (calendar windows in the policy's time
            zone), ``"total"`` (never resets), or a number of seconds (fixed windows
            aligned to the Unix epoch).
        tokens: tokens (input + output) allowed per window.
        usd: dollars allowed per window (``str``, ``int`` or ``Decimal``).
        soft: a fraction of the allowance at which an alert fires once per window
            (``None`` for no alert).
    """

    per: Per
    window: Window | int
    tokens: int | None = None
    usd: Decimal | str | int | None = None
    soft: float | None = 0.8

    def __post_init__(self) -> None:
        if self.per not in ("user", "team", "global"):
            raise ConfigurationError(
                f"Allowance.per must be 'user', 'team' or 'global', got {self.per!r}"
            )
        window = self.window
        if isinstance(window, bool) or not (
            window in _WINDOWS or (isinstance(window, int) and 0 < window <= MAX_SECONDS)
        ):
            raise ConfigurationError(
                "Allowance.window must be 'hour', 'day', 'month', 'total' or a number of "
                f"seconds from 1 to {MAX_SECONDS} (ten years), got {window!r}"
            )
        if self.tokens is None and self.usd is None:
            raise ConfigurationError("an Allowance needs tokens=..., usd=... or both")
        if self.tokens is not None and (
            isinstance(self.tokens, bool) or not isinstance(self.tokens, int) or self.tokens < 0
        ):
            raise ConfigurationError(
                f"Allowance.tokens must be a whole number >= 0, got {self.tokens!r}"
            )
        if self.tokens is not None and self.tokens > MAX_UNITS:
            raise ConfigurationError(
                f"Allowance.tokens must be at most {MAX_UNITS} (10**18), got {self.tokens}"
            )
        if self.usd is not None:
            try:
                object.__setattr__(self, "usd", parse_usd(self.usd, field="Allowance.usd"))
            except ValueError as exc:
                raise ConfigurationError(str(exc)) from None
            assert isinstance(self.usd, Decimal)
            if usd_to_nanos(self.usd, round_up=False) > MAX_UNITS:
                raise ConfigurationError(
                    f"Allowance.usd must be at most ${MAX_UNITS // 10**9} (10**18 "
                    f"nano-dollars, what every store counts exactly), got ${self.usd}"
                )
        if self.soft is not None and (
            isinstance(self.soft, bool)
            or not isinstance(self.soft, int | float)
            or not 0 < self.soft < 1
        ):
            raise ConfigurationError(f"Allowance.soft must be between 0 and 1, got {self.soft!r}")

    @property
    def label(self) -> str:
        window = self.window if isinstance(self.window, str) else f"{self.window}s"
        return f"{self.per}/{window}"

    def limits(self) -> list[tuple[str, int]]:
        """``(unit, limit)`` pairs: ``("tokens", n)`` and/or ``("nanousd", n)``."""
        out: list[tuple[str, int]] = []
        if self.tokens is not None:
            out.append(("tokens", self.tokens))
        if self.usd is not None:
            assert isinstance(self.usd, Decimal)
            out.append(("nanousd", usd_to_nanos(self.usd, round_up=False)))
        return out


@dataclass(frozen=True)
class Downgrade:
    """Degrade step: send the call to a cheaper model (a name, or a ``Model``)."""

    model: str | Model


@dataclass(frozen=True)
class CapOutput:
    """Degrade step: shrink the call's output bound until it fits, not below ``max_tokens``."""

    max_tokens: int

    def __post_init__(self) -> None:
        if (
            isinstance(self.max_tokens, bool)
            or not isinstance(self.max_tokens, int)
            or (self.max_tokens < 1)
        ):
            raise ConfigurationError(f"CapOutput needs a positive floor, got {self.max_tokens!r}")


@dataclass(frozen=True)
class Refuse:
    """Degrade step: stop with ``BudgetExhausted`` carrying ``message`` for the end user."""

    message: str


DegradeStep = Downgrade | CapOutput | Refuse


@dataclass(frozen=True)
class BudgetAlert:
    """A soft threshold was crossed."""

    allowance: Allowance
    subject: str
    window: str
    unit: str
    spent: int
    limit: int

    def __str__(self) -> str:
        spent: object = self.spent
        limit: object = self.limit
        if self.unit == "nanousd":
            spent, limit = f"${nanos_to_usd(self.spent)}", f"${nanos_to_usd(self.limit)}"
        return (
            f"budget alert: {self.allowance.label} {self.subject!r} window {self.window} has "
            f"used {spent} of {limit} (soft threshold {self.allowance.soft:.0%})"
        )


@dataclass(frozen=True)
class WindowSpend:
    """One allowance's counter in its current window, as ``agentbudget spend`` shows it."""

    allowance: Allowance
    subject: str
    window: str
    unit: str
    limit: int
    spent: int
    reserved: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.spent - self.reserved, 0)


@dataclass
class Reservation:
    """A reservation held in the store for one LLM call."""

    reservation_id: str
    charges: tuple[Charge, ...]
    units: tuple[str, ...]
    allowances: tuple[Allowance, ...]
    subjects: tuple[str, ...]
    windows: tuple[str, ...]


def _window(allowance: Allowance, now: float, tz: ZoneInfo) -> tuple[str, int | None]:
    """``(window label, seconds until it ends)`` for ``now`` (Unix seconds)."""
    window = allowance.window
    if window == "total":
        return "total", None
    if isinstance(window, int):
        fixed_start = math.floor(now / window) * window
        return f"{window}s@{fixed_start}", max(math.ceil(fixed_start + window - now), 1)
    local = datetime.fromtimestamp(now, tz)
    if window == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        end = start + timedelta(hours=1)
        label = start.strftime("%Y-%m-%dT%H")
    elif window == "day":
        start = local.replace(hour=0, minute=0, second=0, microsecond=0)
        following = start.date() + timedelta(days=1)
        end = datetime(following.year, following.month, following.day, tzinfo=tz)
        label = start.strftime("%Y-%m-%d")
    else:  # month
        start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        end = datetime(year, month, 1, tzinfo=tz)
        label = start.strftime("%Y-%m")
    return label, max(math.ceil(end.timestamp() - now), 1)


def counter_key(allowance: Allowance, subject: str, window: str, unit: str) -> str:
    """The store key of one allowance counter. Injective: ids are length-prefixed."""
    return f"ab1|{allowance.per}|{len(subject)}:{subject}|{window}|{unit}"


class Budgets:
    """Per-user, per-team and global allowances kept in a store; see the module docs.

    Args:
        store: a store URL (``memory://``, ``sqlite:///spend.db``, ``redis://host:6379/0``)
            or a ``BudgetStore`` instance.
        allowances: the ``Allowance`` s to enforce.
        on_exhausted: the degrade chain, tried in order when a reservation does not fit.
        fail: ``"closed"`` (default: an unreachable store raises ``StoreUnavailable``
            before any call is sent) or ``"open"`` (calls proceed; usage is journaled to
            ``journal`` and replayed into the store when it is back).
        journal: the fail-open journal file (one per process); required with ``fail="open"``.
        tz: the time zone of calendar windows (default UTC).
        lease_s: how long a reservation holds if its process dies before settling.
        on_alert: called with a ``BudgetAlert`` when a soft threshold is crossed.
        clock: Unix time in seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        store: str | BudgetStore = "memory://",
        *,
        allowances: Iterable[Allowance] = (),
        on_exhausted: Iterable[DegradeStep] = (),
        fail: Literal["closed", "open"] = "closed",
        journal: str | os.PathLike[str] | None = None,
        tz: str = "UTC",
        lease_s: float = 600.0,
        on_alert: Callable[[BudgetAlert], None] | None = None,
        clock: Callable[[], float] = time.time,
        store_options: dict[str, Any] | None = None,
    ) -> None:
        self.allowances = tuple(allowances)
        if not self.allowances:
            raise ConfigurationError("Budgets needs at least one Allowance")
        for allowance in self.allowances:
            if not isinstance(allowance, Allowance):
                raise ConfigurationError(f"allowances must be Allowance objects, got {allowance!r}")
        self.on_exhausted = tuple(on_exhausted)
        for step in self.on_exhausted:
            if not isinstance(step, Downgrade | CapOutput | Refuse):
                raise ConfigurationError(
                    f"on_exhausted takes Downgrade, CapOutput and Refuse steps, got {step!r}"
                )
        if fail not in ("closed", "open"):
            raise ConfigurationError(f"fail must be 'closed' or 'open', got {fail!r}")
        seen: dict[tuple[str, object, str], Allowance] = {}
        for allowance in self.allowances:
            for unit, _ in allowance.limits():
                same = seen.setdefault((allowance.per, allowance.window, unit), allowance)
                if same is not allowance:
                    raise ConfigurationError(
                        f"two allowances count {unit} per {allowance.label}: {same} and "
                        f"{allowance}; they would share one counter, so keep one"
                    )
        if not isinstance(tz, str):
            raise ConfigurationError(f"tz must be a time zone name like 'UTC', got {tz!r}")
        try:
            self.tz = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigurationError(f"unknown time zone {tz!r}") from None
        check_seconds("lease_s", lease_s)
        if not (isinstance(store, str) or isinstance(store, BudgetStore)):
            raise ConfigurationError(
                "store must be a URL ('memory://', 'sqlite:///spend.db', "
                f"'redis://host:6379/0') or a BudgetStore, got {store!r}"
            )
        self.fail = fail
        self.lease_s = float(lease_s)
        self.on_alert = on_alert
        self.clock = clock
        inner = store_from_url(store, **(store_options or {})) if isinstance(store, str) else store
        if fail == "open":
            if journal is None:
                raise ConfigurationError(
                    'fail="open" needs journal="path/to/journal.jsonl" (one file per process) '
                    "so usage during an outage is kept and replayed"
                )
            inner = JournalingStore(inner, journal)
        self.store: BudgetStore = inner
        # counters that already alerted this window (bounded: old windows fall out)
        self._alerted: LRUCache[str, bool] = LRUCache(maxsize=100_000)
        self._background: set[asyncio.Task[Any]] = set()

    @property
    def needs_prices(self) -> bool:
        """True when an allowance counts dollars (every model must then be priced)."""
        return any(a.usd is not None for a in self.allowances)

    # -- which counters a call charges -------------------------------------------------

    def _subject(self, allowance: Allowance, user: str | None, team: str | None) -> str:
        if allowance.per == "global":
            return "*"
        subject = user if allowance.per == "user" else team
        if subject is None:
            raise ConfigurationError(
                f"the {allowance.label} allowance needs a {allowance.per} id: pass "
                f"{allowance.per}=... to Guard.run() or budget()"
            )
        if not isinstance(subject, str) or not subject:
            raise ConfigurationError(
                f"{allowance.per} ids must be non-empty strings, got {subject!r}"
            )
        return check_id(f"the {allowance.per} id", subject)

    def _reservation(
        self, user: str | None, team: str | None, tokens: int, nanos: int
    ) -> Reservation:
        now = self.clock()
        charges: list[Charge] = []
        units: list[str] = []
        allowances: list[Allowance] = []
        subjects: list[str] = []
        windows: list[str] = []
        for allowance in self.allowances:
            subject = self._subject(allowance, user, team)
            window, ttl = _window(allowance, now, self.tz)
            for unit, limit in allowance.limits():
                # a worst case beyond every limit is refused the same way, clamped or not
                amount = min(tokens if unit == "tokens" else nanos, MAX_UNITS)
                key = counter_key(allowance, subject, window, unit)
                charges.append(Charge(key=key, limit=limit, amount=amount, ttl_s=ttl))
                units.append(unit)
                allowances.append(allowance)
                subjects.append(subject)
                windows.append(window)
        return Reservation(
            reservation_id=uuid.uuid4().hex,
            charges=tuple(charges),
            units=tuple(units),
            allowances=tuple(allowances),
            subjects=tuple(subjects),
            windows=tuple(windows),
        )

    async def _reserve(self, reservation: Reservation) -> ReserveResult:
        try:
            return await self.store.reserve(
                reservation.charges,
                reservation_id=reservation.reservation_id,
                lease_s=self.lease_s,
            )
        except StoreUnavailable:
            # The reservation may or may not have landed: releasing is safe either way.
            self._spawn(self._quiet_release(reservation.reservation_id))
            raise

    async def _quiet_release(self, reservation_id: str) -> None:
        try:
            await self.store.release(reservation_id)
        except StoreUnavailable:
            pass  # the lease frees it

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- the call path -----------------------------------------------------------------

    async def admit(self, model: MeteredModel, request: CallRequest, plan: CallPlan) -> CallPlan:
        """Reserve ``plan``'s worst case, degrading the call if it does not fit.

        Returns the plan to send (``plan``, or a degraded one). Every other plan's holds
        are released: a refused or failed admission leaves no hold behind.

        Raises:
            BudgetExhausted: the chain ends without a fit (``Refuse``, or no steps left).
            StoreUnavailable: the store is unreachable and the policy fails closed.
        """
        meter = model.meter
        steps = iter(self.on_exhausted)
        try:
            while True:
                reservation = self._reservation(
                    meter.user,
                    meter.team,
                    plan.input_estimate + plan.output_bound,
                    plan.worst_nanos,
                )
                result = await self._reserve(reservation)
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
                plan = self._degrade(model, request, plan, reservation, result, steps)
        except BaseException:
            model.release(plan)
            raise

    def _degrade(
        self,
        model: MeteredModel,
        request: CallRequest,
        plan: CallPlan,
        reservation: Reservation,
        result: ReserveResult,
        steps: Iterator[DegradeStep],
    ) -> CallPlan:
        """The next degraded plan, or raise ``BudgetExhausted`` when no step applies."""
        for step in steps:
            if isinstance(step, Refuse):
                raise self._exhausted(reservation, result, refusal=step.message)
            if isinstance(step, Downgrade):
                inner, name = model.resolve(step.model)
                model.release(plan)
                return model.plan(request, inner=inner, name=name, degraded="downgrade")
            fitting = self._output_that_fits(reservation, result, plan)
            if fitting is None or fitting < step.max_tokens:
                continue
            model.release(plan)
            return model.plan(
                request,
                inner=plan.inner,
                name=plan.model_name,
                output_cap=fitting,
                degraded="cap_output" if plan.degraded is None else plan.degraded + "+cap",
            )
        raise self._exhausted(reservation, result, refusal=None)

    def _output_that_fits(
        self, reservation: Reservation, result: ReserveResult, plan: CallPlan
    ) -> int | None:
        """The largest output bound the refusing counter still has room for."""
        assert result.refused_index is not None and result.available is not None
        unit = reservation.units[result.refused_index]
        available = result.available
        if unit == "tokens":
            return available - plan.input_estimate
        if not plan.pico_per_output:
            return None
        room = available * 1000 - plan.input_pico
        return room // plan.pico_per_output if room > 0 else 0

    def _exhausted(
        self, reservation: Reservation, result: ReserveResult, *, refusal: str | None
    ) -> BudgetExhausted:
        index = result.refused_index if result.refused_index is not None else 0
        allowance = reservation.allowances[index]
        charge = reservation.charges[index]
        unit = reservation.units[index]
        available = result.available if result.available is not None else 0
        used = charge.limit - available
        allowed: Any = charge.limit
        observed: Any = used + charge.amount
        if unit == "nanousd":
            allowed, observed = nanos_to_usd(charge.limit), nanos_to_usd(max(observed, 0))
        what = "tokens" if unit == "tokens" else "USD"
        message = (
            f"the {allowance.label} allowance of {reservation.subjects[index]!r} for window "
            f"{reservation.windows[index]} cannot fit the next call: {allowed} {what} allowed, "
            f"{observed} {what} with it"
        )
        if refusal is not None:
            message = f"{refusal} ({message})"
        return BudgetExhausted(
            message,
            limit=f"allowance:{allowance.label}:{unit}",
            allowed=allowed,
            observed=observed,
            allowance=allowance,
            refusal=refusal,
        )

    async def settle(self, reservation: Reservation, usage: TokenUsage, nanos: int | None) -> None:
        """Settle a call's reservation to its actual usage (and check soft thresholds)."""
        actual: list[int] = []
        for unit in reservation.units:
            if unit == "tokens":
                actual.append(usage.total_tokens)
            else:
                if nanos is None:  # pragma: no cover - unpriced models fail closed earlier
                    raise ConfigurationError("an unpriced call cannot settle a dollar allowance")
                actual.append(nanos)
        await self.store.settle(reservation.reservation_id, actual)
        if any(a.soft is not None for a in reservation.allowances):
            # off the call path: the check reads the counters (one round trip each)
            self._spawn(self._check_soft(reservation))

    async def _check_soft(self, reservation: Reservation) -> None:
        for index, charge in enumerate(reservation.charges):
            allowance = reservation.allowances[index]
            if allowance.soft is None or charge.key in self._alerted:
                continue
            try:
                state = await self.store.state(charge.key)
            except StoreUnavailable:
                return  # alerts wait for the store; the spend itself is settled or journaled
            if state.spent >= allowance.soft * charge.limit and charge.key not in self._alerted:
                self._alerted[charge.key] = True
                alert = BudgetAlert(
                    allowance=allowance,
                    subject=reservation.subjects[index],
                    window=reservation.windows[index],
                    unit=reservation.units[index],
                    spent=state.spent,
                    limit=charge.limit,
                )
                logger.warning("agentbudget: %s", alert)
                if self.on_alert is not None:
                    self.on_alert(alert)

    # -- inspection --------------------------------------------------------------------

    def _current_counters(
        self, kinds: set[str], user: str | None, team: str | None
    ) -> list[tuple[Allowance, str, str, str, int]]:
        """``(allowance, subject, window, unit, limit)`` of the current windows' counters of
        the allowances whose ``per`` is in ``kinds``."""
        now = self.clock()
        counters = []
        for allowance in self.allowances:
            if allowance.per not in kinds:
                continue
            subject = self._subject(allowance, user, team)
            window, _ = _window(allowance, now, self.tz)
            for unit, limit in allowance.limits():
                counters.append((allowance, subject, window, unit, limit))
        return counters

    async def spend(self, *, user: str | None = None, team: str | None = None) -> list[WindowSpend]:
        """Spent, reserved and remaining in the current window of every global allowance,
        and of the per-user / per-team ones of the ids given."""
        kinds = {"global"} | ({"user"} if user is not None else set())
        kinds |= {"team"} if team is not None else set()
        rows: list[WindowSpend] = []
        for allowance, subject, window, unit, limit in self._current_counters(kinds, user, team):
            state = await self.store.state(counter_key(allowance, subject, window, unit))
            rows.append(
                WindowSpend(allowance, subject, window, unit, limit, state.spent, state.reserved)
            )
        return rows

    async def reset(self, *, user: str | None = None, team: str | None = None) -> None:
        """Forget the current windows' counters of a user and/or a team, or (no ids) the
        global ones."""
        kinds = ({"user"} if user is not None else set()) | (
            {"team"} if team is not None else set()
        )
        for allowance, subject, window, unit, _ in self._current_counters(
            kinds or {"global"}, user, team
        ):
            await self.store.reset(counter_key(allowance, subject, window, unit))

    async def check(self) -> None:
        """Verify the store up front, at application start: reachable and configured.

        A wrong password, a service that is not Redis, a bad database index or a bad URL
        raises ``ConfigurationError`` (as the first call would, in both fail modes); a
        store that is down raises ``StoreUnavailable`` here whatever ``fail=`` says, so
        the application can decide whether to start.
        """
        check = getattr(self.store, "check", None)
        if check is not None:
            await check()
        else:  # a store that only implements the protocol: one read
            await self.store.state("agentbudget:check")

    async def drain(self) -> None:
        """Wait for background work (soft-threshold checks, releases) to finish."""
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def close(self) -> None:
        """Finish background work and close the store."""
        await self.drain()
        await self.store.close()


def parse_allowance(spec: str) -> Allowance:
    """Parse ``per:window:unit=amount`` (``user:day:tokens=50000``, ``global:month:usd=100``)."""
    try:
        per, window, amount = spec.split(":", 2)
        unit, value = amount.split("=", 1)
    except ValueError:
        raise ConfigurationError(
            f"allowance {spec!r} must look like per:window:unit=amount, e.g. user:day:tokens=5000"
        ) from None
    window_value: Any = int(window) if window.isdigit() else window
    if unit == "tokens":
        if not value.isdigit():
            raise ConfigurationError(f"tokens must be a whole number in {spec!r}")
        return Allowance(per=per, window=window_value, tokens=int(value))  # type: ignore[arg-type]
    if unit == "usd":
        return Allowance(per=per, window=window_value, usd=value)  # type: ignore[arg-type]
    raise ConfigurationError(f"unit must be tokens or usd in {spec!r}")
