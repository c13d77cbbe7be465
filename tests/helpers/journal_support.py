"""A store that can be switched off, and a reader of journal files (journal tests)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from agentbudget.errors import StoreUnavailable
from agentbudget.stores import Charge, CounterState, MemoryStore, ReserveResult
from agentbudget.stores.journal import decode_record


class Flaky:
    """A store that can be switched off: then every call raises StoreUnavailable.

    It implements the protocol only (no ``record``), like a store a user brings.
    """

    def __init__(self, inner: MemoryStore) -> None:
        self.inner = inner
        self.url = "flaky://"
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable("down", url=self.url)

    async def reserve(
        self, charges: Sequence[Charge], *, reservation_id: str, lease_s: float
    ) -> ReserveResult:
        self._check()
        return await self.inner.reserve(charges, reservation_id=reservation_id, lease_s=lease_s)

    async def settle(self, reservation_id: str, actual: Sequence[int]) -> None:
        self._check()
        await self.inner.settle(reservation_id, actual)

    async def release(self, reservation_id: str) -> None:
        self._check()
        await self.inner.release(reservation_id)

    async def state(self, key: str) -> CounterState:
        self._check()
        return await self.inner.state(key)

    async def reset(self, key: str) -> None:
        self._check()
        await self.inner.reset(key)

    async def close(self) -> None:
        await self.inner.close()


class FlakyRecorder(Flaky):
    """A flaky store with the ``record`` capability (like the shipped ones)."""

    async def record(
        self, reservation_id: str, charges: Sequence[Charge], actual: Sequence[int]
    ) -> bool:
        self._check()
        return await self.inner.record(reservation_id, charges, actual)


def live_entries(path: Path) -> list[dict[str, object]]:
    """The live entries of a journal file (added and not yet marked done)."""
    entries: dict[object, dict[str, object]] = {}
    for line in path.read_bytes().splitlines():
        record = decode_record(line)
        if record["op"] == "add":
            entries[record["entry"]] = record
        else:
            for entry in record["entries"]:
                entries.pop(entry, None)
    return list(entries.values())


C = [Charge("user", 100, 40, 3600), Charge("global", 1000, 40, None)]
