"""``memory://``: counters in a dict, for one process."""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigurationError
from .base import (
    DEFAULT_GRACE_S,
    DEFAULT_RETENTION_S,
    BaseStore,
    Charge,
    CounterState,
    LeaseRenewer,
    ReserveResult,
    SpendRecorder,
    check_seconds,
    settle_error,
)

__all__ = ["MemoryStore"]


@dataclass
class _Counter:
    spent: int = 0
    reserved: int = 0
    expires_at: float | None = None
    holds: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (amount, lease)
    leases: list[tuple[float, str]] = field(default_factory=list)  # heap of (lease, id)

    def expire_holds(self, now: float) -> None:
        while self.leases and self.leases[0][0] <= now:
            lease_until, reservation_id = heapq.heappop(self.leases)
            hold = self.holds.get(reservation_id)
            if hold is not None and hold[1] == lease_until:
                del self.holds[reservation_id]
                self.reserved -= hold[0]


@dataclass
class _Record:
    keys: tuple[str, ...]
    expiries: tuple[float | None, ...]  # each counter's expiry, to recreate a purged one
    settled: bool
    expires_at: float


class MemoryStore(BaseStore, SpendRecorder, LeaseRenewer):
    """Budget counters in process memory, guarded by a ``threading.Lock``.

    The lock is never held across an ``await``: every operation runs to completion
    synchronously inside it. Expired counters and records are purged lazily.

    Args:
        url: ``memory://``.
        clock: returns the time in seconds; inject a fake one in tests.
        grace_s: seconds a counter outlives its window.
        retention_s: seconds a reservation record outlives its lease or its settle.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        clock: Callable[[], float] = time.time,
        grace_s: float = DEFAULT_GRACE_S,
        retention_s: float = DEFAULT_RETENTION_S,
    ) -> None:
        if url.rstrip("/") != "memory:":
            raise ConfigurationError(f"a memory store URL is 'memory://', got {url!r}")
        super().__init__(url)
        self.grace_s = check_seconds("grace_s", grace_s, allow_zero=True)
        self.retention_s = check_seconds("retention_s", retention_s)
        self._clock = clock
        self._lock = threading.Lock()
        self._counters: dict[str, _Counter] = {}
        self._records: dict[str, _Record] = {}
        self._counter_expiries: list[tuple[float, str]] = []
        self._record_expiries: list[tuple[float, str]] = []

    async def _do_reserve(
        self, charges: tuple[Charge, ...], reservation_id: str, lease_s: float
    ) -> ReserveResult:
        with self._lock:
            now = self._clock()
            self._purge(now)
            if self._record(reservation_id, now) is not None:
                raise ConfigurationError(
                    f"reservation id {reservation_id!r} was already used; use a fresh id"
                )
            for index, charge in enumerate(charges):
                counter = self._counter(charge.key, now)
                used = counter.spent + counter.reserved if counter else 0
                if used + charge.amount > charge.limit:
                    return ReserveResult(False, reservation_id, index, charge.limit - used)
            lease_until = now + lease_s
            expiries = tuple(self._expiry(c, now) for c in charges)
            for charge, expires_at in zip(charges, expiries, strict=True):
                counter = self._writable(charge.key, now, expires_at)
                counter.reserved += charge.amount
                counter.holds[reservation_id] = (charge.amount, lease_until)
                heapq.heappush(counter.leases, (lease_until, reservation_id))
            keys = tuple(c.key for c in charges)
            record = _Record(keys, expiries, settled=False, expires_at=lease_until)
            self._remember(reservation_id, record, since=lease_until)
            return ReserveResult(True, reservation_id)

    async def _do_settle(self, reservation_id: str, actual: tuple[int, ...] | None) -> None:
        with self._lock:
            now = self._clock()
            self._purge(now)
            record = self._record(reservation_id, now)
            if record is None:
                if actual is None or not any(actual):
                    return
                raise settle_error(reservation_id, None, len(actual))
            if record.settled:
                return
            amounts = actual if actual is not None else (0,) * len(record.keys)
            if len(amounts) != len(record.keys):
                raise settle_error(reservation_id, len(record.keys), len(amounts))
            self._apply(reservation_id, record, amounts, now)

    async def _do_record(
        self, reservation_id: str, charges: tuple[Charge, ...], actual: tuple[int, ...]
    ) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now)
            record = self._record(reservation_id, now)
            if record is not None and record.settled:
                return False
            if record is None:
                keys = tuple(c.key for c in charges)
                expiries = tuple(self._expiry(c, now) for c in charges)
                record = _Record(keys, expiries, settled=False, expires_at=now)
            elif len(record.keys) != len(actual):
                raise settle_error(reservation_id, len(record.keys), len(actual))
            self._apply(reservation_id, record, actual, now)
            return True

    async def _do_renew(self, reservation_id: str, lease_s: float) -> bool:
        with self._lock:
            now = self._clock()
            self._purge(now)
            record = self._record(reservation_id, now)
            if record is None or record.settled:
                return False
            lease_until = now + lease_s
            renewed = False
            for key in record.keys:
                counter = self._counter(key, now)  # drops holds whose lease passed
                hold = counter.holds.get(reservation_id) if counter is not None else None
                if counter is None or hold is None:
                    continue
                counter.holds[reservation_id] = (hold[0], lease_until)
                heapq.heappush(counter.leases, (lease_until, reservation_id))
                renewed = True
            if renewed:
                self._remember(reservation_id, record, since=lease_until)
            return renewed

    async def _do_state(self, key: str) -> CounterState:
        with self._lock:
            counter = self._counter(key, self._clock())
            if counter is None:
                return CounterState(spent=0, reserved=0)
            return CounterState(spent=counter.spent, reserved=counter.reserved)

    async def _do_reset(self, key: str) -> None:
        with self._lock:
            self._counters.pop(key, None)

    # Helpers: called with the lock held.

    def _expiry(self, charge: Charge, now: float) -> float | None:
        return None if charge.ttl_s is None else now + charge.ttl_s + self.grace_s

    def _counter(self, key: str, now: float) -> _Counter | None:
        counter = self._counters.get(key)
        if counter is not None and counter.expires_at is not None and counter.expires_at <= now:
            del self._counters[key]
            counter = None
        if counter is not None:
            counter.expire_holds(now)
        return counter

    def _writable(self, key: str, now: float, expires_at: float | None) -> _Counter:
        counter = self._counter(key, now)
        if counter is None:
            counter = self._counters[key] = _Counter()
        if expires_at is not None and expires_at != counter.expires_at:
            if counter.expires_at is None or expires_at < counter.expires_at:
                heapq.heappush(self._counter_expiries, (expires_at, key))
            counter.expires_at = expires_at
        return counter

    def _record(self, reservation_id: str, now: float) -> _Record | None:
        record = self._records.get(reservation_id)
        if record is not None and record.expires_at <= now:
            del self._records[reservation_id]
            return None
        return record

    def _remember(self, reservation_id: str, record: _Record, since: float) -> None:
        record.expires_at = since + self.retention_s
        self._records[reservation_id] = record
        heapq.heappush(self._record_expiries, (record.expires_at, reservation_id))

    def _apply(
        self, reservation_id: str, record: _Record, actual: tuple[int, ...], now: float
    ) -> None:
        for key, expires_at, amount in zip(record.keys, record.expiries, actual, strict=True):
            counter = self._counter(key, now)
            if counter is not None:
                hold = counter.holds.pop(reservation_id, None)
                if hold is not None:
                    counter.reserved -= hold[0]
            if amount == 0:
                continue
            if counter is None:
                if expires_at is not None and expires_at <= now:
                    expires_at = now + self.grace_s  # a late settle revives its window
                counter = self._writable(key, now, expires_at)
            counter.spent += amount
        record.settled = True
        self._remember(reservation_id, record, since=now)

    def _purge(self, now: float) -> None:
        # A counter's heap entry is pushed only when its expiry moves earlier, so a
        # stale entry is pushed back with the later expiry. Records push on each change.
        heap = self._counter_expiries
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            counter = self._counters.get(key)
            if counter is None or counter.expires_at is None:
                continue
            if counter.expires_at <= now:
                del self._counters[key]
            else:
                heapq.heappush(heap, (counter.expires_at, key))
        heap = self._record_expiries
        while heap and heap[0][0] <= now:
            _, reservation_id = heapq.heappop(heap)
            record = self._records.get(reservation_id)
            if record is not None and record.expires_at <= now:
                del self._records[reservation_id]
