"""Fail open: admit calls and journal their spend locally while the store is down."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import math
import os
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, StoreUnavailable
from .base import (
    MAX_UNITS,
    BaseStore,
    BudgetStore,
    Charge,
    CounterState,
    LeaseRenewer,
    ReserveResult,
    SpendRecorder,
    StoreConfigurationError,
    settle_error,
)

__all__ = ["Journal", "JournalingStore"]

logger = logging.getLogger("agentbudget.stores")

_FORGET_AFTER_S = 86_400.0
_REPLAY_LEASE_S = 60.0
_TOMBSTONE_BATCH = 256
_COMPACT_AFTER = 1024  # dead records before the file is rewritten (amortised O(1))

# A journaled charge: [counter key, end of its window (clock seconds) or None].
_Targets = list[tuple[str, float | None]]


@dataclass
class _Pending:
    targets: _Targets
    local: bool  # admitted while the inner store was down: the store never saw it
    since: float


@dataclass(frozen=True)
class JournalEntry:
    """A settle kept in the journal until the store takes it."""

    entry: str
    reservation_id: str
    charges: _Targets | None  # None: the store holds the reservation (settle by id)
    actual: tuple[int, ...]
    at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "op": "add",
            "entry": self.entry,
            "reservation_id": self.reservation_id,
            "charges": self.charges,
            "actual": list(self.actual),
            "at": self.at,
        }


def encode_record(record: dict[str, Any]) -> bytes:
    """One journal record: ``<crc32 of the JSON, 8 hex digits> <JSON>\\n``.

    JSON never contains a raw newline, so a record is self-delimiting; the checksum
    tells a complete record from a torn or altered one.
    """
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=True).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_record(line: bytes) -> dict[str, Any]:
    """The record of one journal line; ValueError when it is torn, altered or malformed."""
    crc, _, body = line.partition(b" ")
    if len(crc) != 8 or int(crc, 16) != zlib.crc32(body):
        raise ValueError("bad checksum")
    record = json.loads(body)
    if not isinstance(record, dict):
        raise ValueError("not an object")
    return record


def _entry(record: dict[str, Any]) -> JournalEntry:
    """Validate an ``add`` record (ValueError when it cannot be replayed)."""
    entry, reservation_id = record.get("entry"), record.get("reservation_id")
    actual, charges, at = record.get("actual"), record.get("charges"), record.get("at", 0.0)
    if not isinstance(entry, str) or not entry:
        raise ValueError("entry id")
    if not isinstance(reservation_id, str) or not reservation_id:
        raise ValueError("reservation id")
    if not isinstance(actual, list) or not actual:
        raise ValueError("actual amounts")
    for amount in actual:
        if isinstance(amount, bool) or not isinstance(amount, int) or not 0 <= amount <= MAX_UNITS:
            raise ValueError("actual amounts")
    targets: _Targets | None = None
    if charges is not None:
        if not isinstance(charges, list) or len(charges) != len(actual):
            raise ValueError("charges")
        targets = []
        for charge in charges:
            if not isinstance(charge, list) or len(charge) != 2:
                raise ValueError("charges")
            key, end = charge
            valid_end = end is None or (
                isinstance(end, int | float) and not isinstance(end, bool) and math.isfinite(end)
            )
            if not isinstance(key, str) or not key or not valid_end:
                raise ValueError("charges")
            targets.append((key, None if end is None else float(end)))
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise ValueError("at")
    return JournalEntry(entry, reservation_id, targets, tuple(actual), float(at))


def check_journal_path(path: str) -> None:
    """Raise ConfigurationError unless ``path`` can be a journal file (tried for real)."""
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ConfigurationError(f"the journal directory {parent!r} does not exist")
    if os.path.isdir(path):
        raise ConfigurationError(f"the journal {path!r} is a directory; give a file path")
    existed = os.path.exists(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.close(fd)
        if not existed:
            os.unlink(path)
    except OSError as exc:
        raise ConfigurationError(f"the journal {path!r} cannot be written: {exc}") from None


class Journal:
    """The append-only journal file and its index in memory.

    The file is read once, when the journal is opened; afterwards ``append`` writes
    one record and ``remove`` one tombstone record per batch, each O(1). Records that
    are torn (a crash mid-write), altered or malformed are moved to ``<path>.rejected``
    with a warning and never affect the records around them. The file is compacted
    when every entry is done (truncated) or when dead records outnumber live ones.
    Not safe for two processes at once: give each process its own file.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float]) -> None:
        self.path = os.fspath(path)
        self.rejected_path = self.path + ".rejected"
        check_journal_path(self.path)
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, JournalEntry] = {}  # entry id -> entry, in journal order
        self._by_reservation: dict[str, str] = {}  # reservation id -> entry id
        self._dead = 0  # records in the file that no longer count
        self._torn = False  # a write failed part way: start the next record on a new line
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def has(self, reservation_id: str) -> bool:
        return reservation_id in self._by_reservation

    def entries(self, limit: int | None = None) -> list[JournalEntry]:
        """The live entries in journal order (the first ``limit`` of them: O(limit))."""
        with self._lock:
            return list(itertools.islice(self._entries.values(), limit))

    def append(
        self, reservation_id: str, targets: _Targets | None, actual: Sequence[int]
    ) -> JournalEntry | None:
        """Journal a settle (None if the reservation is journaled already)."""
        entry = JournalEntry(
            uuid.uuid4().hex, reservation_id, targets, tuple(actual), self._clock()
        )
        with self._lock:
            if reservation_id in self._by_reservation:
                return None
            self._entries[entry.entry] = entry
            self._by_reservation[reservation_id] = entry.entry
            self._write(encode_record(entry.to_json()))
        return entry

    def remove(
        self, done: Sequence[JournalEntry], rejected: Sequence[tuple[JournalEntry, str]] = ()
    ) -> None:
        """Drop applied entries and move rejected ones aside: one tombstone record."""
        if not done and not rejected:
            return
        with self._lock:
            for entry, error in rejected:
                logger.warning(
                    "budget journal entry %s rejected by the store, moved to %r: %s",
                    entry.reservation_id,
                    self.rejected_path,
                    error,
                )
                line = json.dumps({**entry.to_json(), "error": error}, ensure_ascii=True)
                _append(self.rejected_path, line.encode("ascii") + b"\n")
            ids = [e.entry for e in done] + [e.entry for e, _ in rejected]
            for entry_id in ids:
                gone = self._entries.pop(entry_id, None)
                if gone is not None:
                    self._by_reservation.pop(gone.reservation_id, None)
                    self._dead += 1
            if not self._entries:
                self._rewrite()  # nothing left: truncate
            elif self._dead > max(_COMPACT_AFTER, len(self._entries)):
                self._rewrite()
            else:
                self._write(encode_record({"op": "done", "entries": ids}))
                self._dead += 1

    def _write(self, record: bytes) -> None:
        try:
            _append(self.path, b"\n" + record if self._torn else record)
            self._torn = False
        except OSError as exc:  # kept in memory: this process still replays it
            self._torn = True
            logger.error("budget journal %r cannot be written: %s", self.path, exc)

    def _load(self) -> None:
        """Read the file once: index its live entries, move its bad records aside."""
        try:
            with open(self.path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return
        lines = data.split(b"\n")
        torn = lines.pop()  # after the last newline: empty, or a record cut short
        bad: list[bytes] = [torn] if torn else []
        records = 0
        for line in lines:
            if not line.strip():
                continue
            records += 1
            try:
                record = decode_record(line)
                if record.get("op") == "done":
                    done = record.get("entries")
                    if not isinstance(done, list):
                        raise ValueError("entries")
                    for entry_id in done:
                        gone = self._entries.pop(str(entry_id), None)
                        if gone is not None:
                            self._by_reservation.pop(gone.reservation_id, None)
                    continue
                if record.get("op") != "add":
                    raise ValueError("op")
                entry = _entry(record)
            except ValueError:
                bad.append(line)
                continue
            if entry.reservation_id not in self._by_reservation:
                self._entries[entry.entry] = entry
                self._by_reservation[entry.reservation_id] = entry.entry
        if bad:
            logger.warning(
                "budget journal %r: %d torn or malformed records moved to %r",
                self.path,
                len(bad),
                self.rejected_path,
            )
            for line in bad:
                _append(self.rejected_path, line + b"\n")
        self._dead = records - len(self._entries)
        if bad or self._dead:
            self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file with the live entries only (atomically); empty: truncate."""
        if not self._entries:
            if os.path.exists(self.path):
                with open(self.path, "r+b") as file:
                    file.truncate(0)
                    file.flush()
                    os.fsync(file.fileno())
            self._dead = 0
            return
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as file:
            for entry in self._entries.values():
                file.write(encode_record(entry.to_json()))
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path)
        self._dead = 0


class JournalingStore(BaseStore, LeaseRenewer):
    """Wrap a store so that a policy with ``fail="open"`` keeps running through an outage.

    While the inner store raises ``StoreUnavailable``, ``reserve`` admits the call
    (``ok=True`` under the caller's id, held nowhere) and ``settle`` appends the
    amounts to the journal (a :class:`Journal`: checksummed records, fsync'd one by
    one). ``replay()`` pushes journaled settles into the inner store and drops what it
    applied; ``reserve`` replays first whenever the journal is not empty (while the
    store is down that costs one failed call, not a read of the journal). A journal
    written by a process that died is replayed by the next one that opens it.

    Nothing is lost or counted twice: each entry is applied under its reservation id
    with :meth:`SpendRecorder.record` (settles the store's reservation, or adds the
    spend and remembers the id as settled), so an entry replayed again after a crash
    changes nothing. Releases while the store is down are not journaled: the
    reservation's lease frees it. ``state`` and ``reset`` go to the inner store.
    Entries the store rejects (an id it never knew, without counter keys) are moved
    to ``<journal>.rejected`` and logged. A misconfigured store
    (``StoreConfigurationError``) is not an outage: it is raised, and nothing is
    admitted or dropped. Give each process its own journal file.

    With ``admit=False`` (a ``fail="closed"`` policy with a journal) ``reserve`` raises
    ``StoreUnavailable`` instead of admitting, and only settles are journaled.

    Args:
        inner: the store to wrap.
        journal_path: the journal file (created on first use; checked now).
        clock: returns the time in seconds; used for window ends of journaled charges.
        admit: admit calls while the inner store is down (fail open).
    """

    def __init__(
        self,
        inner: BudgetStore,
        journal_path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        admit: bool = True,
    ) -> None:
        super().__init__(inner.url)
        self.admit = admit
        self.inner = inner
        self.journal = Journal(journal_path, clock=clock)
        self.journal_path = self.journal.path
        self.rejected_path = self.journal.rejected_path
        self._clock = clock
        self._replaying = threading.Lock()  # not an asyncio.Lock: any loop, any thread
        self._pending: dict[str, _Pending] = {}
        self._next_forget = clock() + _FORGET_AFTER_S

    async def pending_entries(self) -> int:
        """How many settles wait in the journal."""
        return len(self.journal)

    @property
    def needs_replay(self) -> bool:
        """True while journaled settles wait to be replayed."""
        return len(self.journal) > 0

    @property
    def pending_count(self) -> int:
        """Reservation ids with journaled settles not yet replayed."""
        return len(self.journal)

    async def replay(self, *, wait: bool = True) -> int:
        """Apply journaled settles to the inner store and drop them from the journal.

        Args:
            wait: if another replay is running, wait for it (else return 0 at once).

        Returns:
            How many entries were applied (rejected ones are not counted).

        Raises:
            StoreUnavailable: the inner store is still down (what was applied is dropped).
            StoreConfigurationError: the inner store is misconfigured (nothing is dropped).
        """
        while not self._replaying.acquire(blocking=False):
            if not wait:
                return 0
            await asyncio.sleep(0.005)
        try:
            return await self._replay()
        finally:
            self._replaying.release()

    async def _replay(self) -> int:
        applied = 0
        done: list[JournalEntry] = []
        rejected: list[tuple[JournalEntry, str]] = []
        # One entry first: while the store is down that is the one failed call, and the
        # journal is not copied (a reserve pays O(1) however long the outage).
        try:
            for entry in self._replay_order():
                try:
                    await self._apply(entry.reservation_id, entry.charges, entry.actual)
                except StoreConfigurationError:
                    raise  # the store is misconfigured, not the entry: keep it
                except ConfigurationError as exc:
                    rejected.append((entry, str(exc)))
                else:
                    done.append(entry)
                    applied += 1
                if len(done) + len(rejected) >= _TOMBSTONE_BATCH:
                    await asyncio.to_thread(self.journal.remove, done, rejected)
                    done, rejected = [], []
        finally:
            if done or rejected:
                await asyncio.to_thread(self.journal.remove, done, rejected)
        if applied:
            logger.info("replayed %d budget journal entries", applied)
        return applied

    def _replay_order(self) -> Iterator[JournalEntry]:
        first = self.journal.entries(limit=1)
        yield from first
        if first:
            yield from self.journal.entries()[1:]

    async def check(self) -> None:
        """Check the journal path and the inner store (raises even though fail-open)."""
        check_journal_path(self.journal_path)
        check = getattr(self.inner, "check", None)
        if check is not None:
            await check()
        else:
            await self.inner.state("agentbudget:check")

    async def _do_reserve(
        self, charges: tuple[Charge, ...], reservation_id: str, lease_s: float
    ) -> ReserveResult:
        now = self._clock()
        self._forget(now)
        if reservation_id in self._pending or self.journal.has(reservation_id):
            raise ConfigurationError(
                f"reservation id {reservation_id!r} was already used; use a fresh id"
            )
        targets: _Targets = [(c.key, None if c.ttl_s is None else now + c.ttl_s) for c in charges]
        if len(self.journal):
            try:
                await self.replay(wait=False)
            except StoreUnavailable:
                if not self.admit:
                    raise
                return self._admit(reservation_id, targets, now)
        try:
            result = await self.inner.reserve(
                charges, reservation_id=reservation_id, lease_s=lease_s
            )
        except StoreUnavailable as exc:
            if not self.admit:
                raise
            logger.warning("budget store unavailable, admitting locally (fail open): %s", exc)
            return self._admit(reservation_id, targets, now)
        if result.ok:
            self._pending[reservation_id] = _Pending(targets, local=False, since=now)
        return result

    async def _do_settle(self, reservation_id: str, actual: tuple[int, ...] | None) -> None:
        pending = self._pending.get(reservation_id)
        if pending is None and self.journal.has(reservation_id):
            return  # already settled into the journal
        if pending is not None and actual is not None and len(actual) != len(pending.targets):
            raise settle_error(reservation_id, len(pending.targets), len(actual))
        self._pending.pop(reservation_id, None)
        zero = actual is None or not any(actual)
        if pending is not None and pending.local and zero:
            return  # nothing was held anywhere and nothing was spent
        try:
            if pending is not None and pending.local:
                assert actual is not None
                await self._apply(reservation_id, pending.targets, actual)
            elif actual is None:
                await self.inner.release(reservation_id)
            else:
                await self.inner.settle(reservation_id, actual)
        except StoreUnavailable as exc:
            if zero:
                return  # the reservation's lease frees it
            assert actual is not None
            targets = pending.targets if pending is not None else None
            logger.warning("budget store unavailable, journaling a settle: %s", exc)
            await asyncio.to_thread(self.journal.append, reservation_id, targets, actual)

    async def _do_renew(self, reservation_id: str, lease_s: float) -> bool:
        pending = self._pending.get(reservation_id)
        if pending is None or not isinstance(self.inner, LeaseRenewer):
            return False  # settled, unknown, or the inner store cannot renew
        if pending.local:
            return True  # admitted locally during an outage: nothing to renew, still live
        return await self.inner.renew(reservation_id, lease_s=lease_s)

    async def _do_state(self, key: str) -> CounterState:
        return await self.inner.state(key)

    async def _do_reset(self, key: str) -> None:
        await self.inner.reset(key)

    async def close(self) -> None:
        """Close the inner store (the journal keeps what is not replayed)."""
        await self.inner.close()

    def _admit(self, reservation_id: str, targets: _Targets, now: float) -> ReserveResult:
        self._pending[reservation_id] = _Pending(targets, local=True, since=now)
        return ReserveResult(True, reservation_id)

    def _forget(self, now: float) -> None:
        """Drop reservations never settled, so a leak cannot grow without bound."""
        if now < self._next_forget:
            return
        self._next_forget = now + _FORGET_AFTER_S
        old = [rid for rid, p in self._pending.items() if p.since < now - _FORGET_AFTER_S]
        for reservation_id in old:
            del self._pending[reservation_id]

    async def _apply(
        self, reservation_id: str, targets: Sequence[Sequence[Any]] | None, actual: tuple[int, ...]
    ) -> None:
        """Settle a journaled spend into the inner store, idempotently."""
        if targets is None:
            await self.inner.settle(reservation_id, actual)
            return
        now = self._clock()
        charges = [
            Charge(
                key,
                limit=MAX_UNITS,
                amount=0,
                ttl_s=None if end is None else max(0, math.ceil(end - now)),
            )
            for key, end in targets
        ]
        if isinstance(self.inner, SpendRecorder):
            await self.inner.record(reservation_id, charges, actual)
            return
        try:  # a store without record(): a zero reservation, then a settle
            await self.inner.reserve(
                charges, reservation_id=reservation_id, lease_s=_REPLAY_LEASE_S
            )
        except StoreConfigurationError:
            raise
        except ConfigurationError:
            pass  # the store knows the id already (held or settled)
        await self.inner.settle(reservation_id, actual)


def _append(path: str, record: bytes) -> None:
    """Append whole records and fsync. A record cut short by a crash is found (bad
    checksum, or no final newline) and moved aside when the journal is next opened."""
    created = not os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(record)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(path)


def _fsync_dir(path: str) -> None:
    if os.name != "posix":
        return
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
