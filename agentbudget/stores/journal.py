"""Fail open: admit calls and journal their spend locally while the store is down."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, StoreUnavailable
from .base import (
    MAX_UNITS,
    BaseStore,
    BudgetStore,
    Charge,
    CounterState,
    ReserveResult,
    SpendRecorder,
    StoreConfigurationError,
    settle_error,
)

__all__ = ["JournalingStore"]

logger = logging.getLogger("agentbudget.stores")

_FORGET_AFTER_S = 86_400.0
_REPLAY_LEASE_S = 60.0

# A journaled charge: [counter key, end of its window (clock seconds) or None].
_Targets = list[tuple[str, float | None]]


@dataclass
class _Pending:
    targets: _Targets
    local: bool  # admitted while the inner store was down: the store never saw it
    since: float


class JournalingStore(BaseStore):
    """Wrap a store so that a policy with ``fail="open"`` keeps running through an outage.

    While the inner store raises ``StoreUnavailable``, ``reserve`` admits the call
    (``ok=True`` under the caller's id, held nowhere) and ``settle`` appends the
    amounts to an append-only JSONL journal, fsync'd line by line. ``replay()``
    pushes journaled settles into the inner store and removes what it applied;
    ``reserve`` replays first whenever the journal is not empty. A journal written
    by a process that died is replayed by the next one that opens it.

    Nothing is lost or counted twice: each entry is applied under its reservation id
    with :meth:`SpendRecorder.record` (settles the store's reservation, or adds the
    spend and remembers the id as settled), so an entry replayed again after a crash
    changes nothing. Releases while the store is down are not journaled: the
    reservation's lease frees it. ``state`` and ``reset`` go to the inner store.
    Entries the store rejects (an id it never knew, without counter keys) are moved
    to ``<journal>.rejected`` and logged. Give each process its own journal file.

    Args:
        inner: the store to wrap.
        journal_path: the JSONL journal file (created on first use).
        clock: returns the time in seconds; used for window ends of journaled charges.
    """

    def __init__(
        self,
        inner: BudgetStore,
        journal_path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(inner.url)
        self.inner = inner
        self.journal_path = os.fspath(journal_path)
        self.rejected_path = self.journal_path + ".rejected"
        parent = os.path.dirname(os.path.abspath(self.journal_path))
        if not os.path.isdir(parent):
            raise ConfigurationError(f"the journal directory {parent!r} does not exist")
        self._clock = clock
        self._file_lock = threading.Lock()
        self._replay_lock = asyncio.Lock()
        self._pending: dict[str, _Pending] = {}
        self._journaled: set[str] | None = None  # reservation ids in the journal
        self._next_forget = clock() + _FORGET_AFTER_S

    async def pending_entries(self) -> int:
        """How many settles wait in the journal."""
        return len(await asyncio.to_thread(self._read))

    async def replay(self) -> int:
        """Apply journaled settles to the inner store and drop them from the journal.

        Returns:
            How many entries were applied (rejected ones are not counted).

        Raises:
            StoreUnavailable: the inner store is still down (what was applied is dropped).
        """
        async with self._replay_lock:
            entries = await asyncio.to_thread(self._read)
            done: set[str] = set()
            rejected: list[dict[str, Any]] = []
            try:
                for entry in entries:
                    try:
                        await self._apply(
                            entry["reservation_id"], entry["charges"], tuple(entry["actual"])
                        )
                    except StoreConfigurationError:
                        raise  # the store is misconfigured, not the entry: keep it
                    except ConfigurationError as exc:
                        logger.error("budget journal entry rejected by the store: %s", exc)
                        rejected.append({**entry, "error": str(exc)})
                    done.add(entry["entry"])
            finally:
                if done:
                    await asyncio.to_thread(self._drop, done, rejected)
            if done:
                logger.info("replayed %d budget journal entries", len(done) - len(rejected))
            return len(done) - len(rejected)

    async def _do_reserve(
        self, charges: tuple[Charge, ...], reservation_id: str, lease_s: float
    ) -> ReserveResult:
        now = self._clock()
        self._forget(now)
        journaled = await self._journaled_ids()
        if reservation_id in self._pending or reservation_id in journaled:
            raise ConfigurationError(
                f"reservation id {reservation_id!r} was already used; use a fresh id"
            )
        targets: _Targets = [(c.key, None if c.ttl_s is None else now + c.ttl_s) for c in charges]
        if journaled and not self._replay_lock.locked():
            try:
                await self.replay()
            except StoreUnavailable:
                return self._admit(reservation_id, targets, now)
        try:
            result = await self.inner.reserve(
                charges, reservation_id=reservation_id, lease_s=lease_s
            )
        except StoreUnavailable as exc:
            logger.warning("budget store unavailable, admitting locally (fail open): %s", exc)
            return self._admit(reservation_id, targets, now)
        if result.ok:
            self._pending[reservation_id] = _Pending(targets, local=False, since=now)
        return result

    async def _do_settle(self, reservation_id: str, actual: tuple[int, ...] | None) -> None:
        pending = self._pending.get(reservation_id)
        if pending is None and reservation_id in await self._journaled_ids():
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
            await asyncio.to_thread(self._append, reservation_id, targets, actual)

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
        except StoreUnavailable:
            raise
        except ConfigurationError:
            pass  # the store knows the id already (held or settled)
        await self.inner.settle(reservation_id, actual)

    # The journal file.

    async def _journaled_ids(self) -> set[str]:
        if self._journaled is None:
            entries = await asyncio.to_thread(self._read)
            self._journaled = {e["reservation_id"] for e in entries}
        return self._journaled

    def _append(
        self, reservation_id: str, targets: _Targets | None, actual: tuple[int, ...]
    ) -> None:
        entry = {
            "entry": uuid.uuid4().hex,
            "reservation_id": reservation_id,
            "charges": targets,
            "actual": list(actual),
            "at": self._clock(),
        }
        line = (json.dumps(entry, separators=(",", ":")) + "\n").encode("utf-8")
        with self._file_lock:
            _append_line(self.journal_path, line)
            if self._journaled is not None:
                self._journaled.add(reservation_id)

    def _read(self) -> list[dict[str, Any]]:
        with self._file_lock:
            entries, _ = self._load()
            return entries

    def _load(self) -> tuple[list[dict[str, Any]], list[str]]:
        """The journal's entries, and its lines that are not entries (a torn write)."""
        try:
            with open(self.journal_path, encoding="utf-8") as file:
                lines = file.read().splitlines()
        except FileNotFoundError:
            return [], []
        entries: list[dict[str, Any]] = []
        broken: list[str] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or not {"entry", "reservation_id"} <= set(entry):
                    raise ValueError(line)
            except ValueError:
                broken.append(line)
                continue
            entries.append(entry)
        return entries, broken

    def _drop(self, done: set[str], rejected: list[dict[str, Any]]) -> None:
        """Rewrite the journal without the entries in ``done`` (atomically)."""
        with self._file_lock:
            entries, broken = self._load()
            for line in [json.dumps(e) for e in rejected] + broken:
                _append_line(self.rejected_path, (line + "\n").encode("utf-8"))
            keep = [e for e in entries if e["entry"] not in done]
            tmp = self.journal_path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as file:
                for entry in keep:
                    file.write(json.dumps(entry, separators=(",", ":")) + "\n")
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self.journal_path)
            _fsync_dir(self.journal_path)
            self._journaled = {e["reservation_id"] for e in keep}


def _append_line(path: str, line: bytes) -> None:
    created = not os.path.exists(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
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
