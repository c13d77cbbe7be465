"""The journal file: checksummed records, bad ones moved aside, O(1) per operation."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

import pytest
from helpers.journal_support import C, Flaky, FlakyRecorder, live_entries
from helpers.stores_support import START, FakeClock

from agentbudget.errors import ConfigurationError, StoreUnavailable
from agentbudget.stores import Charge, CounterState, JournalingStore, MemoryStore
from agentbudget.stores import journal as journal_module
from agentbudget.stores.journal import Journal, decode_record, encode_record


def _flaky(down: bool = True) -> FlakyRecorder:
    flaky = FlakyRecorder(MemoryStore(clock=FakeClock()))
    flaky.down = down
    return flaky


async def _journal_some(path: Path, flaky: Flaky, *ids: str) -> None:
    store = JournalingStore(flaky, path)
    for reservation_id in ids:
        await store.reserve(C, reservation_id=reservation_id, lease_s=30)
        await store.settle(reservation_id, [10, 10])


def test_records_are_checksummed_and_self_delimiting() -> None:
    record = encode_record({"op": "add", "entry": "e", "text": "line\nbreak"})
    assert record.endswith(b"\n") and record.count(b"\n") == 1
    assert decode_record(record[:-1])["text"] == "line\nbreak"
    altered = record[:-3] + (b"X" if record[-3:-2] != b"X" else b"Y") + record[-2:-1]
    with pytest.raises(ValueError):
        decode_record(altered)
    with pytest.raises(ValueError):
        decode_record(record[:20])  # torn


async def test_a_torn_last_record_is_moved_aside_and_the_next_entry_is_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.jsonl"
    flaky = _flaky()
    await _journal_some(path, flaky, "a")
    whole = path.read_bytes()
    with path.open("ab") as file:  # the process died mid-write
        file.write(encode_record({"op": "add", "entry": "x", "reservation_id": "torn"})[:25])

    with caplog.at_level(logging.WARNING, logger="agentbudget.stores"):
        restarted = JournalingStore(flaky, path)
    assert "torn or malformed" in caplog.text
    await restarted.reserve(C, reservation_id="b", lease_s=30)
    await restarted.settle("b", [77, 77])  # this entry must not be swallowed by the torn one
    assert path.read_bytes().startswith(whole)
    assert [e["reservation_id"] for e in live_entries(path)] == ["a", "b"]
    (rejected,) = (tmp_path / "j.jsonl.rejected").read_bytes().splitlines()
    assert b'"reservation_id":"torn"' not in rejected and len(rejected) == 25

    flaky.down = False
    again = JournalingStore(flaky, path)
    assert await again.replay() == 2
    assert await again.state("user") == CounterState(87, 0)


@pytest.mark.parametrize(
    "bad",
    [
        b'{"entry": "e1", "reservation_id": "r1"}',  # valid JSON, no checksum, no fields
        encode_record({"op": "add", "entry": "e2", "reservation_id": "r2"}).strip(),
        encode_record({"op": "add", "entry": "e3", "reservation_id": "r3", "actual": ["x"]}),
        encode_record({"op": "add", "entry": "e4", "reservation_id": "", "actual": [1]}),
        encode_record(
            {
                "op": "add",
                "entry": "e5",
                "reservation_id": "r5",
                "charges": [["k", None]],
                "actual": [1, 2],
            }
        ),
        encode_record(["not", "an", "object"]),  # type: ignore[arg-type]
        encode_record({"op": "done", "entries": "e"}),
        encode_record({"op": "launch"}),
        b"\xff\xfe garbage",
    ],
    ids=range(9),
)
async def test_a_malformed_record_never_blocks_the_others(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / "j.jsonl"
    flaky = _flaky()
    await _journal_some(path, flaky, "a")
    with path.open("ab") as file:
        file.write(bad.rstrip(b"\n") + b"\n")
    await _journal_some(path, flaky, "b")  # a new process appends after the bad record

    flaky.down = False
    store = JournalingStore(flaky, path)
    assert await store.pending_entries() == 2
    assert (await store.reserve([Charge("user", 100, 1, 3600)], reservation_id="c", lease_s=30)).ok
    assert await store.state("user") == CounterState(20, 1)  # both replayed first
    assert (tmp_path / "j.jsonl.rejected").read_bytes() == bad.rstrip(b"\n") + b"\n"
    assert live_entries(path) == []


async def test_an_altered_record_goes_aside_without_its_neighbours(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    flaky = _flaky()
    await _journal_some(path, flaky, "a", "b", "c")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = lines[1].replace(b"[10,10]", b"[10,99]")  # a flipped byte
    path.write_bytes(b"".join(lines))
    flaky.down = False
    store = JournalingStore(flaky, path)
    assert await store.replay() == 2
    assert await store.state("user") == CounterState(20, 0)
    assert (tmp_path / "j.jsonl.rejected").read_bytes() == lines[1]


async def test_applied_entries_are_marked_done_so_a_crash_mid_replay_does_not_repeat_them(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.jsonl"
    flaky = _flaky()
    await _journal_some(path, flaky, "a", "b", "c")

    class DiesAfterOneEntry(FlakyRecorder):
        def _check(self) -> None:
            super()._check()
            if self.calls > 2:  # a zero reservation and a settle: the first entry
                raise StoreUnavailable("gone again", url=self.url)

    dies = DiesAfterOneEntry(flaky.inner)
    with pytest.raises(StoreUnavailable):
        await JournalingStore(dies, path).replay()
    assert [e["reservation_id"] for e in live_entries(path)] == ["b", "c"]
    flaky.down = False
    restarted = JournalingStore(flaky, path)
    assert await restarted.replay() == 2
    assert await restarted.state("user") == CounterState(30, 0)


def test_the_journal_path_is_checked_at_construction(tmp_path: Path) -> None:
    inner = MemoryStore()
    with pytest.raises(ConfigurationError, match="is a directory"):
        JournalingStore(inner, tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        JournalingStore(inner, tmp_path / "missing" / "j.jsonl")
    with pytest.raises(ConfigurationError, match="cannot be written"):
        JournalingStore(inner, "/proc/agentbudget-journal.jsonl")  # not writable, even as root
    JournalingStore(inner, tmp_path / "fine.jsonl")
    assert not (tmp_path / "fine.jsonl").exists()  # checked for real, nothing left behind


def test_the_file_is_compacted_so_it_does_not_grow_with_done_entries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "_COMPACT_AFTER", 16)
    path = tmp_path / "j.jsonl"
    journal = Journal(path, clock=time.time)
    kept = journal.append("kept", None, [1])
    assert kept is not None
    for i in range(100):
        entry = journal.append(f"r{i}", None, [1])
        assert entry is not None
        journal.remove([entry])
        assert len(path.read_bytes().splitlines()) <= 1 + 2 * 17
    assert [e["reservation_id"] for e in live_entries(path)] == ["kept"]
    assert [e.reservation_id for e in Journal(path, clock=time.time).entries()] == ["kept"]


async def _mean_reserve_s(store: JournalingStore, prefix: str, n: int = 300) -> float:
    start = time.perf_counter()
    for i in range(n):
        await store.reserve(C, reservation_id=f"{prefix}{i}", lease_s=30)
    return (time.perf_counter() - start) / n


async def test_5000_pending_entries_add_under_1ms_to_a_reserve(tmp_path: Path) -> None:
    empty = JournalingStore(_flaky(), tmp_path / "empty.jsonl")
    await empty.reserve(C, reservation_id="seed", lease_s=30)
    await empty.settle("seed", [1, 1])  # one entry: a reserve tries the replay
    path = tmp_path / "full.jsonl"
    records = (
        encode_record(
            {
                "op": "add",
                "entry": f"e{i}",
                "reservation_id": f"p{i}",
                "charges": [["user", None], ["global", None]],
                "actual": [1, 1],
                "at": START,
            }
        )
        for i in range(5000)
    )
    path.write_bytes(b"".join(records))  # as 5000 appends during an outage would leave it
    full = JournalingStore(_flaky(), path)
    assert await full.pending_entries() == 5000

    await _mean_reserve_s(empty, "warm")
    base = min([await _mean_reserve_s(empty, f"e{k}-") for k in range(3)])
    loaded = min([await _mean_reserve_s(full, f"f{k}-") for k in range(3)])
    print(f"reserve while down: {base * 1e6:.0f} us (1 entry), {loaded * 1e6:.0f} us (5000)")
    assert loaded - base < 0.001
    assert loaded < base * 3 + 0.0002  # O(1): no copy or read of the journal per reserve


async def test_a_journaling_store_works_from_sequential_event_loops(tmp_path: Path) -> None:
    store = JournalingStore(_flaky(down=False), tmp_path / "j.jsonl")
    flaky = store.inner
    assert isinstance(flaky, Flaky)
    flaky.down = True
    await store.reserve(C, reservation_id="a", lease_s=30)
    await store.settle("a", [4, 4])

    results: list[object] = []

    def other_loop() -> None:
        flaky.down = False
        results.append(asyncio.run(store.replay()))

    thread = threading.Thread(target=other_loop)
    thread.start()
    thread.join(10)
    assert results == [1]
    assert await store.state("user") == CounterState(4, 0)
