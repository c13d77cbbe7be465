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
(the request was sent). Reservations carry an id and a lease that is renewed while the
call is in flight, so only a crashed process's reservations return to the budget. A
settle the store cannot take is kept and retried until it lands (``drain()`` waits for
it). When a reservation does not fit, the degrade chain
runs in order: ``Downgrade`` re-plans the call on a cheaper model, ``CapOutput`` shrinks
the output bound (not below its floor) until it fits, ``Refuse`` raises
``BudgetExhausted`` with its message. This module reserves, settles and says what a
refused counter has left; the interceptor (next to call planning) walks the chain.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents import Model
from cachetools import LRUCache

from .errors import BudgetExhausted, ConfigurationError, StoreUnavailable
from .limits import MIN_OUTPUT_TOKENS
from .money import affordable_output, nanos_to_usd, parse_usd, usd_to_nanos
from .sinks.dispatch import EventDispatcher
from .stores import (
    MAX_UNITS,
    BudgetStore,
    Charge,
    JournalingStore,
    LeaseRenewer,
    ReserveResult,
    store_from_url,
)
from .stores.base import MAX_SECONDS, WindowMismatch, check_id, check_seconds
from .usage import TokenUsage

if TYPE_CHECKING:
    from .planning import WindowForecast

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
_RENEW_FRACTION = 3  # a lease is renewed every lease_s / 3: twice more before it could lapse
_RETRY_FIRST_S = 0.05  # backoff of a settle the store could not take: first wait ...
_RETRY_MAX_S = 5.0  # ... doubling up to this


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
    """Degrade step: send the call to a cheaper model (a name, or a ``Model``).

    A name is served like the agent's own model: by the run's model provider when the
    agent names its model, or by a model of the same class and client (base URL, API key)
    when the agent (or ``RunConfig.model``) holds a ``Model`` instance.
    """

    model: str | Model

    def __post_init__(self) -> None:
        if isinstance(self.model, str):
            if not self.model.strip():
                raise ConfigurationError("Downgrade needs a model name, got an empty string")
        elif not isinstance(self.model, Model):
            raise ConfigurationError(
                f"Downgrade takes a model name or an agents.Model, got {self.model!r}"
            )


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
    lease: _Lease | None = field(default=None, repr=False, compare=False)


class _Lease:
    """Renews one reservation's holds while its call is in flight.

    A timer on the call's event loop fires every ``lease_s / 3`` and renews in a
    background task (one store round trip), off the call's path. It stops when the call
    settles, when the store no longer holds the reservation, and when the reservation
    object is dropped without being settled (so a leaked reservation still lapses).
    """

    def __init__(self, budgets: Budgets, store: LeaseRenewer, reservation: Reservation) -> None:
        self._budgets = budgets
        self._store = store
        self._reservation = weakref.ref(reservation)
        self._reservation_id = reservation.reservation_id
        self._interval = budgets.lease_s / _RENEW_FRACTION
        self._loop = asyncio.get_running_loop()
        self.stopped = False
        self._handle = self._loop.call_later(self._interval, self._fire)

    def stop(self) -> None:
        """Stop renewing (safe from any thread: a timer that fires later does nothing)."""
        self.stopped = True
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._handle.cancel()

    def _fire(self) -> None:
        if self.stopped or self._reservation() is None:
            self.stopped = True
            return
        self._budgets._spawn(self._renew())

    async def _renew(self) -> None:
        try:
            held = await self._store.renew(self._reservation_id, lease_s=self._budgets.lease_s)
        except StoreUnavailable as exc:
            # the store is down: nothing can be admitted into the hold meanwhile; try again
            logger.debug("agentbudget: could not renew a budget lease (retrying): %s", exc)
            held = True
        except Exception:
            logger.exception("agentbudget: renewing a budget lease failed")
            held = False
        if not held:
            if not self.stopped:
                logger.warning(
                    "agentbudget: budget reservation %s was no longer held when renewed",
                    self._reservation_id,
                )
            self.stopped = True
        if not self.stopped and not self._loop.is_closed():
            self._handle = self._loop.call_later(self._interval, self._fire)


@dataclass
class _PendingSettle:
    reservation: Reservation
    actual: tuple[int, ...]
    claimed: bool = False  # a retry loop is trying it now


def _window(
    allowance: Allowance, now: float, tz: ZoneInfo
) -> tuple[str, int | None, tuple[float, float] | None]:
    """``(label, seconds until it ends, (start, end))`` of the window holding ``now``
    (Unix seconds); ``"total"`` has no end and no span.

    Hour labels are unique through DST changes: the repeated hour of a fall-back carries
    its UTC offset (``2026-11-01T01-0500`` after ``2026-11-01T01``), and an hour is
    always 3,600 real seconds.
    """
    window = allowance.window
    if window == "total":
        return "total", None, None
    if isinstance(window, int):
        fixed_start = math.floor(now / window) * window
        span = (float(fixed_start), float(fixed_start + window))
        return f"{window}s@{fixed_start}", max(math.ceil(span[1] - now), 1), span
    local = datetime.fromtimestamp(now, tz)
    if window == "hour":
        start = local.replace(minute=0, second=0, microsecond=0)
        end = datetime.fromtimestamp(start.timestamp() + 3600, tz)
        label = start.strftime("%Y-%m-%dT%H") + (start.strftime("%z") if start.fold else "")
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
    span = (start.timestamp(), end.timestamp())
    return label, max(math.ceil(span[1] - now), 1), span


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
        on_alert: called with a ``BudgetAlert`` when a soft threshold is crossed, off the
            call path (in a worker thread; ``drain()`` waits for it).
        clock: Unix time in seconds (tests pass a fake clock).
        min_output_tokens: the usable floor. A call whose worst case does not fit is
            first sent with its output bound lowered to what every allowance leaves (as
            ``Limits`` do); only when that room is below this floor does the degrade chain
            (``on_exhausted``) apply.
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
        min_output_tokens: int = MIN_OUTPUT_TOKENS,
    ) -> None:
        if (
            isinstance(min_output_tokens, bool)
            or not isinstance(min_output_tokens, int)
            or min_output_tokens < MIN_OUTPUT_TOKENS
        ):
            raise ConfigurationError(
                f"min_output_tokens must be a whole number >= {MIN_OUTPUT_TOKENS}, got "
                f"{min_output_tokens!r}"
            )
        self.min_output_tokens = min_output_tokens
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
        if fail == "open" and journal is None:
            raise ConfigurationError(
                'fail="open" needs journal="path/to/journal.jsonl" (one file per process) '
                "so usage during an outage is kept and replayed"
            )
        if journal is not None:
            inner = JournalingStore(inner, journal, admit=fail == "open")
        self.store: BudgetStore = inner
        self._journal = inner if isinstance(inner, JournalingStore) else None
        # counters that already alerted this window (bounded: old windows fall out)
        self._alerted: LRUCache[str, bool] = LRUCache(maxsize=100_000)
        self._background: set[asyncio.Task[Any]] = set()
        self._store_offset = 0.0  # the store's clock minus ours, once it differed
        # settles the store could not take yet, by reservation id (any loop, any thread)
        self._pending: dict[str, _PendingSettle] = {}
        self._pending_lock = threading.Lock()
        self._retriers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]]
        self._retriers = weakref.WeakKeyDictionary()
        self._alerts: EventDispatcher | None = None
        self._listeners: list[Callable[[BudgetAlert], object]] = []

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

    def _now(self) -> float:
        """The time windows are chosen by: the policy's clock, corrected by the offset of
        the store's clock once the store reported it (Redis: the server's ``TIME``)."""
        return self.clock() + self._store_offset

    def _reservation(
        self, user: str | None, team: str | None, tokens: int, nanos: int
    ) -> Reservation:
        now = self._now()
        charges: list[Charge] = []
        units: list[str] = []
        allowances: list[Allowance] = []
        subjects: list[str] = []
        windows: list[str] = []
        for allowance in self.allowances:
            subject = self._subject(allowance, user, team)
            window, ttl, span = _window(allowance, now, self.tz)
            for unit, limit in allowance.limits():
                # a worst case beyond every limit is refused the same way, clamped or not
                amount = min(tokens if unit == "tokens" else nanos, MAX_UNITS)
                key = counter_key(allowance, subject, window, unit)
                charges.append(Charge(key, limit, amount, ttl_s=ttl, window=span))
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

    async def _reserve_worst(
        self, user: str | None, team: str | None, tokens: int, nanos: int
    ) -> tuple[Reservation, ReserveResult]:
        """Reserve in the current windows, as the store's clock sees them.

        A store with its own clock (Redis) refuses a window its clock is not in; the
        windows are then recomputed with its time, and later calls use its offset.
        """
        for _ in range(3):
            reservation = self._reservation(user, team, tokens, nanos)
            try:
                return reservation, await self._reserve(reservation)
            except WindowMismatch as exc:
                self._store_offset = exc.store_now - self.clock()
        raise StoreUnavailable(
            "the budget store's clock kept moving out of the call's windows", url=self.store.url
        )

    async def _reserve(self, reservation: Reservation) -> ReserveResult:
        # Shielded: a call cancelled (or timed out) while its reserve is in flight does not
        # cut the reserve short (a SQLite thread or a Redis command would land anyway); the
        # reserve runs to its end and whatever it held is released.
        task = asyncio.ensure_future(
            self.store.reserve(
                reservation.charges,
                reservation_id=reservation.reservation_id,
                lease_s=self.lease_s,
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            task.add_done_callback(lambda done: self._release_after(reservation, done))
            self._background.add(task)  # drain() waits for it, and for the release
            task.add_done_callback(self._background.discard)
            raise
        except StoreUnavailable:
            # The reservation may or may not have landed: releasing is safe either way.
            self._spawn(self._quiet_release(reservation.reservation_id))
            raise

    def _release_after(self, reservation: Reservation, task: asyncio.Future[ReserveResult]) -> None:
        """Release a reservation whose caller was cancelled while reserving."""
        if not task.cancelled():
            error = task.exception()
            if error is None and not task.result().ok:
                return  # refused: nothing is held
            if error is not None and not isinstance(error, StoreUnavailable):
                return
        if not task.get_loop().is_closed():
            self._spawn(self._quiet_release(reservation.reservation_id))

    async def _quiet_release(self, reservation_id: str) -> None:
        try:
            await self.store.release(reservation_id)
        except StoreUnavailable:
            pass  # the lease frees it (nothing renews it)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _keep(self, reservation: Reservation) -> None:
        """Start renewing a held reservation's lease while its call is in flight."""
        store = self.store
        inner = store.inner if isinstance(store, JournalingStore) else store
        if isinstance(store, LeaseRenewer) and isinstance(inner, LeaseRenewer):
            reservation.lease = _Lease(self, store, reservation)

    # -- the call path -----------------------------------------------------------------

    async def reserve_call(
        self, user: str | None, team: str | None, tokens: int, nanos: int
    ) -> tuple[Reservation, ReserveResult]:
        """Reserve one call's worst case (``tokens``, ``nanos``) on every allowance.

        A reservation that fits is held (its lease renewed) until ``settle``; a refused
        one holds nothing, and the result says which counter refused and what it has
        left: the caller lowers the call's output bound or walks ``on_exhausted``.

        Raises:
            ConfigurationError: an allowance needs a user or team id the run lacks.
            StoreUnavailable: the store is unreachable and the policy fails closed.
        """
        reservation, result = await self._reserve_worst(user, team, tokens, nanos)
        if result.ok:
            self._keep(reservation)
        return reservation, result

    def output_that_fits(
        self,
        reservation: Reservation,
        result: ReserveResult,
        *,
        input_tokens: int,
        input_pico: int,
        pico_per_output: int | None,
    ) -> int | None:
        """The largest output bound the counter that refused ``reservation`` has room for
        (None: that counter does not bound output, as a dollar one with free output)."""
        assert result.refused_index is not None and result.available is not None
        unit = reservation.units[result.refused_index]
        available = result.available
        if unit == "tokens":
            return available - input_tokens
        return affordable_output(available, input_pico, pico_per_output)

    def cut_error(
        self, reservation: Reservation, result: ReserveResult, fitting: int
    ) -> Callable[[str], BudgetExhausted]:
        """The error for a response cut at the output bound an allowance left it."""
        index = result.refused_index if result.refused_index is not None else 0
        allowance = reservation.allowances[index]
        label = (
            f"the {allowance.label} allowance of {reservation.subjects[index]!r} for window "
            f"{reservation.windows[index]}"
        )
        exhausted = self.exhausted(reservation, result, refusal=None)

        def cut(what: str) -> BudgetExhausted:
            return BudgetExhausted(
                f"{label} left {fitting} output tokens for this call; {what}",
                limit=exhausted.limit,
                allowed=exhausted.allowed,
                observed=exhausted.observed,
                allowance=allowance,
            )

        return cut

    def exhausted(
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
        """Settle a call's reservation to its actual usage (and check soft thresholds).

        Never loses a paid call's spend and never raises ``StoreUnavailable``: a settle the
        store cannot take now is kept (in memory; in the journal when one is configured)
        and retried with backoff until it lands, exactly once (stores settle an id once).
        See :attr:`pending_settles` and :meth:`drain`.
        """
        actual: list[int] = []
        for unit in reservation.units:
            if unit == "tokens":
                actual.append(usage.total_tokens)
            else:
                if nanos is None:  # pragma: no cover - unpriced models fail closed earlier
                    raise ConfigurationError("an unpriced call cannot settle a dollar allowance")
                actual.append(nanos)
        try:
            await self.store.settle(reservation.reservation_id, actual)
        except (StoreUnavailable, OSError) as exc:  # OSError: a journal that cannot be written
            logger.warning(
                "agentbudget: the budget store cannot take a settle now; it is kept and retried "
                "(await budgets.drain() waits for it): %s",
                exc,
            )
            with self._pending_lock:
                self._pending[reservation.reservation_id] = _PendingSettle(
                    reservation, tuple(actual)
                )
            self._ensure_retrier()
            return  # the lease keeps being renewed until the settle lands
        if reservation.lease is not None:
            reservation.lease.stop()
        if self._journal is not None and self._journal.needs_replay:
            self._ensure_retrier()  # the settle went to the journal: replay it when possible
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
                # events of the same off-the-call-path delivery the sinks use
                for listener in self._alert_listeners():
                    self._events().submit_event(listener, alert)

    # -- inspection --------------------------------------------------------------------

    def _current_counters(
        self, kinds: set[str], user: str | None, team: str | None
    ) -> list[tuple[Allowance, str, str, str, int]]:
        """``(allowance, subject, window, unit, limit)`` of the current windows' counters of
        the allowances whose ``per`` is in ``kinds``."""
        now = self._now()
        counters = []
        for allowance in self.allowances:
            if allowance.per not in kinds:
                continue
            subject = self._subject(allowance, user, team)
            window, _, _ = _window(allowance, now, self.tz)
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

    async def forecast(
        self,
        *,
        user: str | None = None,
        team: str | None = None,
        ledger: Any = None,
        hours: int = 6,
        profile_days: int = 28,
    ) -> list[WindowForecast]:
        """Each current window of :meth:`spend`, projected to its end, with when its
        allowance will be exhausted (if it will).

        The rate is the linear rate of the last ``hours`` hours of the subject's runs in
        ``ledger`` (a ``SQLiteLedger`` or ``PostgresLedger``), with a weekday profile of
        its last ``profile_days`` days for windows longer than a day; without a ledger,
        the window's spend so far over the time elapsed. See ``agentbudget.planning``.
        """
        from .planning import check_forecast_options, forecast_window

        check_forecast_options(ledger, hours, profile_days)
        rows = await self.spend(user=user, team=team)
        now = self._now()
        out = []
        for row in rows:
            _, _, span = _window(row.allowance, now, self.tz)
            out.append(
                await forecast_window(
                    allowance=row.allowance.label,
                    per=row.allowance.per,
                    subject=row.subject,
                    window=row.window,
                    unit=row.unit,
                    limit=row.limit,
                    spent=row.spent,
                    reserved=row.reserved,
                    span=span,
                    now=now,
                    tz=self.tz,
                    ledger=ledger,
                    hours=hours,
                    profile_days=profile_days,
                )
            )
        return out

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

    # -- settles the store could not take yet --------------------------------------------
    @property
    def pending_settles(self) -> int:
        """Settles kept until the store takes them: in memory, plus journaled ones."""
        journaled = self._journal.pending_count if self._journal is not None else 0
        return len(self._pending) + journaled

    def _ensure_retrier(self) -> None:
        """Run one retry loop on the current event loop while settles are pending."""
        loop = asyncio.get_running_loop()
        with self._pending_lock:  # the map of loops is shared by every thread's loop
            task = self._retriers.get(loop)
            if task is not None and not task.done():
                return
            task = loop.create_task(self._retry_settles())
            self._retriers[loop] = task
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _retry_settles(self) -> None:
        """Retry pending settles (and journal replay) with exponential backoff until none is
        left. Several loops may run one each; an entry is tried by one loop at a time."""
        delay = _RETRY_FIRST_S
        while True:
            with self._pending_lock:
                batch = [p for p in self._pending.values() if not p.claimed]
                for entry in batch:
                    entry.claimed = True
                waiting = len(self._pending) > len(batch)
            replay = self._journal is not None and self._journal.needs_replay
            if not batch and not replay and not waiting:
                return
            failed = waiting  # entries other loops hold: look again after a wait
            for entry in batch:
                failed = not await self._retry_one(entry) or failed
            if replay and not failed:
                assert self._journal is not None
                try:
                    await self._journal.replay()
                except StoreUnavailable:
                    failed = True
            if not failed:
                delay = _RETRY_FIRST_S
                continue
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, _RETRY_MAX_S)

    async def _retry_one(self, entry: _PendingSettle) -> bool:
        """Try one pending settle; True when it is done with (landed, or cannot ever land)."""
        reservation = entry.reservation
        try:
            await self.store.settle(reservation.reservation_id, entry.actual)
        except (StoreUnavailable, OSError):
            return False
        except ConfigurationError as exc:  # e.g. ReservationNotFound after retention_s
            logger.error(
                "agentbudget: a kept settle of %s (amounts %s) cannot land and is dropped: %s",
                reservation.reservation_id,
                entry.actual,
                exc,
            )
        except Exception:
            logger.exception("agentbudget: retrying a kept settle failed; trying again")
            return False
        finally:
            with self._pending_lock:
                entry.claimed = False
        with self._pending_lock:
            self._pending.pop(reservation.reservation_id, None)
        if reservation.lease is not None:
            reservation.lease.stop()
        logger.info("agentbudget: a kept settle of %s landed", reservation.reservation_id)
        return True

    async def drain(self, timeout: float | None = None) -> int:
        """Wait for background work: soft-threshold checks, releases, and settles the store
        could not take yet (retried until they land).

        Args:
            timeout: give up waiting after this many seconds (``None``: wait until done).

        Returns:
            How many settles are still pending (0 unless ``timeout`` passed).
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        current = asyncio.current_task()
        while True:
            if self._pending or (self._journal is not None and self._journal.needs_replay):
                self._ensure_retrier()
            tasks = [t for t in self._background if t.get_loop() is loop and t is not current]
            if not tasks and not self._pending:
                if self._alerts is not None:  # the alerts those checks raised, delivered
                    left = None if deadline is None else max(deadline - loop.time(), 0)
                    await self._alerts.aflush(left)
                return self.pending_settles
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return self.pending_settles
            if tasks:
                await asyncio.wait(tasks, timeout=left)
            else:  # another loop's retrier holds the last entries
                await asyncio.sleep(min(_RETRY_FIRST_S, left or _RETRY_FIRST_S))

    async def close(self, timeout: float | None = 30.0) -> None:
        """Finish background work (see :meth:`drain`, at most ``timeout`` seconds; ``None``
        waits as long as it takes) and close the store.

        Settles still pending then are logged as an error: journaled ones stay in the
        journal (the next process replays them); without a journal they are lost.
        """
        left = await self.drain(timeout)
        if left:
            logger.error(
                "agentbudget: closing budgets with %d settles the store has not taken%s",
                left,
                "; they stay in the journal" if self._journal is not None else "",
            )
        await self.store.close()
        if self._alerts is not None:
            await self._alerts.aclose(5.0)

    def add_alert_listener(self, listener: Callable[[BudgetAlert], object]) -> None:
        """Also give each ``BudgetAlert`` to ``listener`` (off the call path, as ``on_alert``).

        ``Guard(budgets=..., alerts=...)`` registers its ``Alerts`` here. Registering the
        same listener twice changes nothing.
        """
        if not callable(listener):
            raise ConfigurationError(f"an alert listener must be callable, got {listener!r}")
        with self._pending_lock:
            if listener not in self._listeners:
                self._listeners.append(listener)

    def _alert_listeners(self) -> list[Callable[[BudgetAlert], object]]:
        with self._pending_lock:
            listeners = list(self._listeners)
        return listeners if self.on_alert is None else [self.on_alert, *listeners]

    def _events(self) -> EventDispatcher:
        """The dispatcher of this policy's alert events (made on the first alert)."""
        with self._pending_lock:
            if self._alerts is None:
                self._alerts = EventDispatcher(name="agentbudget-budget-alerts")
            return self._alerts


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
