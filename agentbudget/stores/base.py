"""The budget store contract: reserve, then settle.

A policy reserves the worst case of an LLM call in every counter that applies to it,
atomically (all or none), then settles the reservation to the actual amount. Stores
never check-then-act.

Choices every shipped store makes (the contract tests pin them down):

* **Reservation ids are single use.** Reserving an id the store still remembers
  (held, lease passed, or settled) raises :class:`ConfigurationError`. After an
  ambiguous failure (``StoreUnavailable`` on ``reserve``) call ``release(old_id)``,
  which is safe whether or not the reservation landed, and reserve with a fresh id.
  A refused reservation leaves nothing behind, so its id may be reused.
* **Records outlive leases.** When a lease passes the reservation stops counting in
  ``reserved`` (a crashed process returns its units to the budget), but the record
  of its counters is kept for ``retention_s`` (default one day) after the lease, and
  again after settling. So a late ``settle`` still adds its spend to the right
  counters, and settling twice never double counts.
* **Unknown ids.** Settling an id the store has no record of (never reserved, or
  forgotten after ``retention_s``) with non-zero amounts raises
  :class:`ReservationNotFound`; with zeros (``release``) it does nothing.
* **Windows.** A counter with ``ttl_s`` expires ``ttl_s + grace_s`` seconds after the
  last reservation on it, together with its holds; an expired counter reads as zero.
  A key names the counter of one window: policies put the window start in the key.
  A settle always lands in the window its reservation was made in: a settle that
  arrives after that window's counter expired recreates the counter, for ``grace_s``.
* **Leases.** A lease ends ``lease_s`` after the reserve unless it is renewed
  (:class:`LeaseRenewer`): policies renew the holds of calls still in flight, so only a
  dead process's holds lapse.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import ConfigurationError

__all__ = [
    "MAX_SECONDS",
    "MAX_UNITS",
    "BaseStore",
    "BudgetStore",
    "Charge",
    "CounterState",
    "LeaseRenewer",
    "ReservationNotFound",
    "ReserveResult",
    "SpendRecorder",
    "StoreConfigurationError",
]

MAX_UNITS = 10**18
"""The largest limit or amount a store accepts: $1,000,000,000 in nano-dollars, or 10^18
tokens. Counters stay exact far beyond it (Redis scripts compare them as integers split
in two limbs, never as doubles; SQLite and Redis keep 64-bit integers)."""

MAX_SECONDS = 315_360_000
"""The longest lease, grace, retention or window a store accepts: ten years, in seconds."""

DEFAULT_GRACE_S = 300.0
DEFAULT_RETENTION_S = 86_400.0


class StoreConfigurationError(ConfigurationError):
    """The store itself is misconfigured (credentials, address, database): no operation
    on it can succeed until the configuration is fixed. Not an outage."""

    def __init__(self, message: str, *, url: str) -> None:
        super().__init__(message)
        self.url = url


class ReservationNotFound(ConfigurationError):
    """The store has no record of a reservation id, so its spend cannot be attributed."""

    def __init__(self, message: str, *, reservation_id: str) -> None:
        super().__init__(message)
        self.reservation_id = reservation_id


def _check_units(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{name} must be an int, got {value!r}")
    if not 0 <= value <= MAX_UNITS:
        raise ConfigurationError(f"{name} must be between 0 and {MAX_UNITS}, got {value}")
    return value


def check_id(name: str, value: object) -> str:
    """Return ``value`` if it is a non-empty string of valid Unicode, else raise
    ConfigurationError (a lone surrogate cannot be stored or sent)."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"{name} must be a non-empty string, got {value!r}")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ConfigurationError(
                f"{name} must be valid Unicode (it has a lone surrogate), got {value!r}"
            ) from None
    return value


def check_optional_id(name: str, value: object) -> str | None:
    """``check_id`` for an id that may be omitted (None)."""
    return None if value is None else check_id(name, value)


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """Return ``value`` as a float if it is a number of seconds, at most ``MAX_SECONDS``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{name} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigurationError(f"{name} must be finite and {bound}, got {value!r}")
    if seconds > MAX_SECONDS:
        raise ConfigurationError(
            f"{name} must be at most {MAX_SECONDS} seconds (ten years), got {value!r}"
        )
    return seconds


@dataclass(frozen=True)
class Charge:
    """One counter to reserve against.

    Attributes:
        key: the counter key, opaque and non-empty (any characters).
        limit: the counter's capacity in units for its window (>= 0).
        amount: units to reserve now (>= 0).
        ttl_s: seconds until the counter's window ends; ``None`` never expires.
        window: ``(start, end)`` of the key's window in Unix seconds, when the key names
            one. A store that keeps its own clock (Redis: the server's ``TIME``) checks
            that its now lies in it and raises :class:`WindowMismatch` otherwise, so the
            window a call is charged to is decided by one clock, not by each client's.
    """

    key: str
    limit: int
    amount: int
    ttl_s: int | None = None
    window: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_id("Charge.key", self.key)
        _check_units("Charge.limit", self.limit)
        _check_units("Charge.amount", self.amount)
        if self.ttl_s is not None:
            if isinstance(self.ttl_s, bool) or not isinstance(self.ttl_s, int):
                raise ConfigurationError(f"Charge.ttl_s must be an int or None, got {self.ttl_s!r}")
            if not 0 <= self.ttl_s <= MAX_SECONDS:
                raise ConfigurationError(
                    f"Charge.ttl_s must be between 0 and {MAX_SECONDS}, got {self.ttl_s}"
                )
        if self.window is not None:
            start, end = self.window
            if not (math.isfinite(start) and math.isfinite(end) and start < end):
                raise ConfigurationError(f"Charge.window must be (start, end), got {self.window!r}")


class WindowMismatch(Exception):
    """The store's clock is outside a charge's window: recompute the windows and retry.

    Nothing was reserved. ``store_now`` is the store's time in Unix seconds.
    """

    def __init__(self, store_now: float) -> None:
        super().__init__(f"the store's clock ({store_now:.3f}) is outside the charge's window")
        self.store_now = store_now


@dataclass(frozen=True)
class ReserveResult:
    """The outcome of :meth:`BudgetStore.reserve`.

    Attributes:
        ok: whether every charge was reserved.
        reservation_id: the id the reservation is held under.
        refused_index: index of the first charge that did not fit (``None`` when ok).
        available: ``limit - spent - reserved`` of that counter at the time; negative
            when the counter is already overspent (``None`` when ok).
    """

    ok: bool
    reservation_id: str
    refused_index: int | None = None
    available: int | None = None


@dataclass(frozen=True)
class CounterState:
    """A counter's spend and its live (unexpired) reservations, in units."""

    spent: int
    reserved: int


@runtime_checkable
class BudgetStore(Protocol):
    """What a budget store does; implement it to bring your own store."""

    url: str

    async def reserve(
        self, charges: Sequence[Charge], *, reservation_id: str, lease_s: float
    ) -> ReserveResult:
        """Hold every charge's amount under ``reservation_id``, or none of them."""
        ...

    async def settle(self, reservation_id: str, actual: Sequence[int]) -> None:
        """Drop the reservation and add ``actual[i]`` to the spend of charge ``i``."""
        ...

    async def release(self, reservation_id: str) -> None:
        """Cancel a reservation: settle it with zeros."""
        ...

    async def state(self, key: str) -> CounterState:
        """Return a counter's spend and live reservations."""
        ...

    async def reset(self, key: str) -> None:
        """Forget a counter: its spend and its holds."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...


class SpendRecorder(abc.ABC):
    """Capability mixin: settle a reservation the store may never have seen.

    The fail-open journal replays through it. Stores without it are replayed with a
    zero reservation followed by a settle.
    """

    async def record(
        self, reservation_id: str, charges: Sequence[Charge], actual: Sequence[int]
    ) -> bool:
        """Settle ``reservation_id`` if the store holds it; else add ``actual`` to ``charges``.

        Either way the id is remembered as settled, so calling again changes nothing.
        Only ``key`` and ``ttl_s`` of the charges are used.

        Returns:
            True if spend was applied, False if the id was already settled.
        """
        check_id("reservation_id", reservation_id)
        checked = tuple(charges)
        amounts = tuple(_check_units("actual amount", a) for a in actual)
        if len(checked) != len(amounts) or not checked:
            raise ConfigurationError("record needs one actual amount per charge")
        if len({c.key for c in checked}) != len(checked):
            raise ConfigurationError("a reservation cannot charge the same key twice")
        return await self._do_record(reservation_id, checked, amounts)

    @abc.abstractmethod
    async def _do_record(
        self, reservation_id: str, charges: tuple[Charge, ...], actual: tuple[int, ...]
    ) -> bool: ...


class LeaseRenewer(abc.ABC):
    """Capability mixin: extend the lease of a reservation whose call is still in flight.

    ``Budgets`` renews every held reservation well inside its lease (one round trip
    each), so a call that outlives ``lease_s`` keeps its hold and only the holds of a
    process that died lapse. Stores without it keep each hold for ``lease_s`` only.
    """

    async def renew(self, reservation_id: str, *, lease_s: float) -> bool:
        """Make the holds of ``reservation_id`` last ``lease_s`` seconds from now.

        Returns:
            True if the store still held the reservation; False if it was settled,
            released, unknown, or its lease had already passed (a lapsed hold is not
            taken again: its units may have been given to another call).

        Raises:
            ConfigurationError: bad arguments.
            StoreUnavailable: the backend cannot be reached.
        """
        check_id("reservation_id", reservation_id)
        return await self._do_renew(reservation_id, check_seconds("lease_s", lease_s))

    @abc.abstractmethod
    async def _do_renew(self, reservation_id: str, lease_s: float) -> bool: ...


class BaseStore(abc.ABC):
    """Base of the shipped stores: validates arguments, then calls the ``_do_*`` methods."""

    url: str

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    async def __aenter__(self) -> BaseStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def reserve(
        self, charges: Sequence[Charge], *, reservation_id: str, lease_s: float
    ) -> ReserveResult:
        """Hold every charge's amount under ``reservation_id``, or none of them.

        Raises:
            ConfigurationError: bad arguments, duplicate keys, or a reused id.
            StoreUnavailable: the backend cannot be reached.
        """
        check_id("reservation_id", reservation_id)
        lease = check_seconds("lease_s", lease_s)
        checked = tuple(charges)
        if not checked:
            raise ConfigurationError("reserve needs at least one Charge")
        for charge in checked:
            if not isinstance(charge, Charge):
                raise ConfigurationError(f"charges must be Charge objects, got {charge!r}")
        if len({c.key for c in checked}) != len(checked):
            raise ConfigurationError("a reservation cannot charge the same key twice")
        return await self._do_reserve(checked, reservation_id, lease)

    async def settle(self, reservation_id: str, actual: Sequence[int]) -> None:
        """Drop the reservation and add ``actual[i]`` to the spend of charge ``i``.

        ``actual`` may exceed what was reserved. Settling an already settled id does
        nothing; settling an id whose lease passed still records the spend.

        Raises:
            ReservationNotFound: unknown id and non-zero amounts.
            ConfigurationError: ``actual`` has the wrong length or bad values.
            StoreUnavailable: the backend cannot be reached.
        """
        check_id("reservation_id", reservation_id)
        amounts = tuple(_check_units("actual amount", a) for a in actual)
        await self._do_settle(reservation_id, amounts)

    async def release(self, reservation_id: str) -> None:
        """Cancel a reservation: settle it with zeros. Unknown ids are ignored."""
        check_id("reservation_id", reservation_id)
        await self._do_settle(reservation_id, None)

    async def state(self, key: str) -> CounterState:
        """Return a counter's spend and live reservations (zeros if it does not exist)."""
        return await self._do_state(check_id("key", key))

    async def reset(self, key: str) -> None:
        """Forget a counter: its spend and its holds. Later settles still add to it."""
        await self._do_reset(check_id("key", key))

    async def check(self) -> None:
        """Verify the store is reachable and correctly configured (one read).

        Raises:
            ConfigurationError: the store is misconfigured.
            StoreUnavailable: the store cannot be reached now.
        """
        await self._do_state("agentbudget:check")

    async def close(self) -> None:  # noqa: B027 - stores without resources need nothing
        """Release connections and files."""

    @abc.abstractmethod
    async def _do_reserve(
        self, charges: tuple[Charge, ...], reservation_id: str, lease_s: float
    ) -> ReserveResult: ...

    @abc.abstractmethod
    async def _do_settle(self, reservation_id: str, actual: tuple[int, ...] | None) -> None:
        """Settle; ``actual=None`` means release (zeros, unknown ids ignored)."""

    @abc.abstractmethod
    async def _do_state(self, key: str) -> CounterState: ...

    @abc.abstractmethod
    async def _do_reset(self, key: str) -> None: ...


def settle_error(reservation_id: str, expected: int | None, got: int) -> ConfigurationError:
    """The error for a settle whose amounts do not match the reservation."""
    if expected is None:
        return ReservationNotFound(
            f"no reservation {reservation_id!r} is known to the store (never reserved, or "
            "forgotten after retention_s), so its spend cannot be attributed to counters",
            reservation_id=reservation_id,
        )
    return ConfigurationError(
        f"reservation {reservation_id!r} has {expected} charges but settle got {got} amounts"
    )
