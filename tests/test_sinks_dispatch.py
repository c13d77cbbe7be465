"""The sink dispatcher: reports and events delivered off the call path.

Sinks here record what they receive; the tests assert what arrived, in which order, how
often, and what was counted as dropped or failed.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from agentbudget.errors import ConfigurationError
from agentbudget.report import RunReport
from agentbudget.sinks import EventDispatcher, JsonlSink, SinkDispatcher

ROOT = Path(__file__).resolve().parent.parent
STARTED = datetime(2026, 1, 1, tzinfo=timezone.utc)


def report(i: int | str) -> RunReport:
    return RunReport(run_id=f"r{i}", agent="support", started_at=STARTED)


def ids(reports: Sequence[RunReport]) -> list[str]:
    return [r.run_id for r in reports]


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


class Recorder:
    """A sync sink with ``record`` only."""

    def __init__(self) -> None:
        self.got: list[str] = []
        self.threads: set[str] = set()
        self.closed = 0

    def record(self, r: RunReport) -> None:
        self.threads.add(threading.current_thread().name)
        self.got.append(r.run_id)

    def close(self) -> None:
        self.closed += 1


class BatchRecorder(Recorder):
    """A sink with both ``record_batch`` and ``record``: batches must be preferred."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.single_calls = 0

    def record(self, r: RunReport) -> None:
        self.single_calls += 1
        super().record(r)

    def record_batch(self, reports: Sequence[RunReport]) -> None:
        self.batches.append(len(reports))
        self.got.extend(ids(reports))


class Gated(Recorder):
    """Blocks in its first call until ``gate`` is set; ``entered`` says it is inside."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def record(self, r: RunReport) -> None:
        self.entered.set()
        self.gate.wait(10)
        super().record(r)


class Flaky(Recorder):
    """``record_batch`` raises until ``healthy`` is set (or for its first ``fail`` calls)."""

    def __init__(self, fail: int | None = None) -> None:
        super().__init__()
        self.fail = fail
        self.healthy = threading.Event()
        self.calls = 0
        self.raised = 0

    def record_batch(self, reports: Sequence[RunReport]) -> None:
        self.calls += 1
        if (self.fail is not None and self.calls <= self.fail) or (
            self.fail is None and not self.healthy.is_set()
        ):
            self.raised += 1
            raise ConnectionError("ledger down")
        self.got.extend(ids(reports))


# -- construction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ([object()], {}, "needs a callable record"),
        ([type("NotCallable", (), {"record": 3})()], {}, "needs a callable record"),
        ("spend.jsonl", {}, "iterable of sinks"),
        ([], {"maxsize": 0}, "maxsize"),
        ([], {"maxsize": True}, "maxsize"),
        ([], {"batch_size": 0}, "batch_size"),
        ([], {"retry_initial_s": 0}, "retry_initial_s"),
        ([], {"retry_initial_s": float("nan")}, "retry_initial_s"),
        ([], {"retry_initial_s": 2.0, "retry_max_s": 1.0}, "retry_max_s"),
        ([], {"exit_flush_s": -1}, "exit_flush_s"),
        ([], {"name": ""}, "name"),
    ],
)
def test_bad_configuration_raises_at_construction(
    args: Any, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        SinkDispatcher(args, **kwargs)


def test_this_module_does_not_import_agents() -> None:
    tree = ast.parse((ROOT / "agentbudget/sinks/dispatch.py").read_text())
    modules = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ] + [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert not [m for m in modules if m == "agents" or m.startswith("agents.")]


def test_no_sinks_costs_nothing_and_starts_no_thread() -> None:
    before = threading.active_count()
    dispatcher = SinkDispatcher([], name="no-sinks")
    for i in range(1000):
        dispatcher.submit(report(i))
    assert dispatcher._thread is None
    assert dispatcher.pending == 0 and dispatcher.dropped == 0
    assert dispatcher.flush(0) is True
    assert dispatcher.close() is True
    assert dispatcher._thread is None
    assert threading.active_count() <= before  # (other tests' threads may end meanwhile)
    assert "no-sinks" not in {t.name for t in threading.enumerate()}


# -- the call path ----------------------------------------------------------------------


def test_submit_does_not_wait_for_a_slow_sink() -> None:
    class Slow(Recorder):
        def record(self, r: RunReport) -> None:
            time.sleep(0.2)
            super().record(r)

    slow = Slow()
    dispatcher = SinkDispatcher([slow])
    dispatcher.submit(report("warm"))  # starts the worker
    times = []
    for i in range(30):
        started = time.perf_counter()
        dispatcher.submit(report(i))
        times.append(time.perf_counter() - started)
    assert slow.got == [] or len(slow.got) <= 2  # the sink is still busy with the first
    assert statistics.median(times) < 0.001
    assert max(times) < 0.05  # a GIL switch at worst, never one 200 ms call
    assert dispatcher.pending >= 29
    assert dispatcher.close(timeout=0.1) is False  # 30 x 200 ms cannot fit: dropped, counted
    assert wait_until(lambda: dispatcher.dropped >= 25)  # once the sink's call returns


def test_order_is_kept_per_sink_and_record_batch_is_preferred() -> None:
    single, batched = Recorder(), BatchRecorder()
    dispatcher = SinkDispatcher([single, batched], batch_size=100)
    expected = [f"r{i}" for i in range(500)]
    for i in range(500):
        dispatcher.submit(report(i))
    assert dispatcher.flush(5)
    assert single.got == expected
    assert batched.got == expected
    assert batched.single_calls == 0
    assert max(batched.batches) <= 100
    assert sum(batched.batches) == 500
    assert single.threads == {"agentbudget-sinks:Recorder"}  # its own thread
    assert dispatcher.pending == 0 and dispatcher.dropped == 0
    dispatcher.close()


def test_batches_form_while_a_sink_is_busy() -> None:
    class GatedBatch(BatchRecorder):
        def __init__(self) -> None:
            super().__init__()
            self.gate, self.entered = threading.Event(), threading.Event()

        def record_batch(self, reports: Sequence[RunReport]) -> None:
            self.entered.set()
            self.gate.wait(10)
            super().record_batch(reports)

    sink = GatedBatch()
    dispatcher = SinkDispatcher([sink], batch_size=64)
    dispatcher.submit(report(0))
    assert sink.entered.wait(5)
    for i in range(1, 201):
        dispatcher.submit(report(i))
    sink.gate.set()
    assert dispatcher.flush(5)
    assert sink.batches == [1, 64, 64, 64, 8]
    assert sink.got == [f"r{i}" for i in range(201)]
    dispatcher.close()


def test_eight_threads_lose_and_duplicate_nothing() -> None:
    single, batched = Recorder(), BatchRecorder()
    dispatcher = SinkDispatcher([single, batched])

    def work(t: int) -> None:
        for i in range(1000):
            dispatcher.submit(report(f"{t}-{i}"))

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert dispatcher.flush(10)
    for sink in (single, batched):
        assert len(sink.got) == 8000
        assert len(set(sink.got)) == 8000
        for t in range(8):  # each thread's reports in its own order
            mine = [x for x in sink.got if x.startswith(f"r{t}-")]
            assert mine == [f"r{t}-{i}" for i in range(1000)]
    assert dispatcher.dropped == 0
    dispatcher.close()


# -- failures and retries ---------------------------------------------------------------


def test_failing_sink_gets_every_record_once_after_recovery_and_others_are_not_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentbudget")
    flaky, healthy = Flaky(), Recorder()
    dispatcher = SinkDispatcher([flaky, healthy], retry_initial_s=0.005, retry_max_s=0.02)
    expected = [f"r{i}" for i in range(100)]
    for i in range(100):
        dispatcher.submit(report(i))
    # the healthy sink gets everything while the other one is still failing
    assert wait_until(lambda: len(healthy.got) == 100)
    assert healthy.got == expected
    assert wait_until(lambda: flaky.calls >= 3)
    assert flaky.got == []
    assert dispatcher.stats()[0].failing is True
    assert dispatcher.stats()[0].pending == 100
    flaky.healthy.set()
    assert dispatcher.flush(5)
    assert flaky.got == expected  # in order, exactly once
    stats = dispatcher.stats()
    assert stats[0].failures == flaky.raised >= 3
    assert stats[0].delivered == 100 and stats[0].failing is False
    assert stats[1].failures == 0 and stats[1].delivered == 100
    assert dispatcher.dropped == 0
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "raised ConnectionError" in m]) == 1  # not per retry
    assert len([m for m in messages if "recovered after" in m]) == 1
    dispatcher.close()


def test_record_failing_midway_does_not_repeat_the_records_before_it() -> None:
    class FailsOnThird(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.failures = 0

        def record(self, r: RunReport) -> None:
            if r.run_id == "r2" and self.failures < 3:
                self.failures += 1
                raise OSError("disk full")
            super().record(r)

    sink, other = FailsOnThird(), Recorder()
    dispatcher = SinkDispatcher([sink, other], retry_initial_s=0.005, retry_max_s=0.01)
    for i in range(6):
        dispatcher.submit(report(i))
    assert dispatcher.flush(5)
    assert sink.got == [f"r{i}" for i in range(6)]  # r0, r1 once although r2 failed 3 times
    assert other.got == sink.got
    assert dispatcher.failures == 3
    dispatcher.close()


def test_backoff_doubles_up_to_the_maximum_with_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentbudget.sinks import dispatch

    dispatcher = SinkDispatcher([Recorder()], retry_initial_s=0.01, retry_max_s=0.05)
    monkeypatch.setattr(dispatch.random, "uniform", lambda a, b: b)  # the longest jitter
    longest = [dispatcher._backoff_s(n) for n in range(1, 7)]
    assert longest == pytest.approx([0.01, 0.02, 0.04, 0.05, 0.05, 0.05])
    monkeypatch.setattr(dispatch.random, "uniform", lambda a, b: a)  # the shortest
    assert [dispatcher._backoff_s(n) for n in range(1, 7)] == pytest.approx(
        [x / 2 for x in longest]
    )


def test_full_queue_drops_the_oldest_counts_and_warns_once_per_second(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentbudget")
    stuck, other = Gated(), Recorder()
    dispatcher = SinkDispatcher([stuck, other], maxsize=5)
    dispatcher.submit(report(0))
    assert stuck.entered.wait(5)  # r0 is being delivered: the queue is empty again
    for i in range(1, 21):
        dispatcher.submit(report(i))
        assert wait_until(lambda i=i: len(other.got) == i + 1)  # the other sink keeps up
    stats = dispatcher.stats()
    assert stats[0].dropped == 15 and stats[0].pending == 6  # r0 in delivery + 5 newest
    assert stats[1].dropped == 0
    assert dispatcher.dropped == 15
    stuck.gate.set()
    assert dispatcher.flush(5)
    assert stuck.got == ["r0", "r16", "r17", "r18", "r19", "r20"]
    assert other.got == [f"r{i}" for i in range(21)]
    drops = [r.getMessage() for r in caplog.records if "is full" in r.getMessage()]
    assert len(drops) == 1  # 15 drops within a second: one line
    assert "(1 dropped so far)" in drops[0]
    dispatcher.close()


# -- flush ------------------------------------------------------------------------------


def test_flush_waits_for_records_submitted_before_it() -> None:
    sink = Gated()
    dispatcher = SinkDispatcher([sink])
    for i in range(3):
        dispatcher.submit(report(i))
    assert sink.entered.wait(5)
    assert dispatcher.flush(timeout=0.05) is False  # the sink is still blocked
    threading.Timer(0.1, sink.gate.set).start()
    assert dispatcher.flush(timeout=5) is True
    assert sink.got == ["r0", "r1", "r2"]
    dispatcher.close()


def test_flush_with_a_sink_that_never_recovers_times_out_without_spinning() -> None:
    flaky = Flaky()
    dispatcher = SinkDispatcher([flaky], retry_initial_s=0.01, retry_max_s=0.05)
    dispatcher.submit(report(0))
    cpu, started = time.process_time(), time.monotonic()
    assert dispatcher.flush(timeout=0.4) is False
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 2.0
    assert time.process_time() - cpu < 0.2  # asleep, not spinning
    assert flaky.calls <= 20  # backoff, not a hot loop (0.4 s / >= 25 ms once at the cap)
    assert dispatcher.pending == 1
    assert dispatcher.close(timeout=0.2) is False  # what never landed is counted as dropped
    assert dispatcher.dropped == 1 and dispatcher.pending == 0


async def test_aflush_does_not_block_the_loop() -> None:
    sink = Gated()
    dispatcher = SinkDispatcher([sink])
    dispatcher.submit(report(0))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    task = asyncio.create_task(ticker())
    loop = asyncio.get_running_loop()
    loop.call_later(0.2, sink.gate.set)
    assert await dispatcher.aflush(timeout=5) is True
    assert ticks >= 5  # the loop kept running while aflush waited
    assert sink.got == ["r0"]
    task.cancel()
    assert await dispatcher.aclose() is True


async def test_aflush_times_out_with_a_failing_sink() -> None:
    flaky = Flaky()
    dispatcher = SinkDispatcher([flaky], retry_initial_s=0.01, retry_max_s=0.05)
    dispatcher.submit(report(0))
    started = time.monotonic()
    assert await dispatcher.aflush(timeout=0.2) is False
    assert 0.15 <= time.monotonic() - started < 2.0
    flaky.healthy.set()
    assert await dispatcher.aflush(timeout=5) is True
    assert flaky.got == ["r0"]
    assert await dispatcher.aclose(timeout=5) is True


# -- close ------------------------------------------------------------------------------


def test_close_closes_the_sinks_once_and_later_submits_are_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentbudget")

    class AsyncClose(Recorder):
        async def aclose(self) -> None:
            await asyncio.sleep(0)
            self.closed += 1

    sync_sink, async_sink = Recorder(), AsyncClose()
    dispatcher = SinkDispatcher([sync_sink, async_sink])
    for i in range(10):
        dispatcher.submit(report(i))
    assert dispatcher.close() is True
    assert sync_sink.got == async_sink.got == [f"r{i}" for i in range(10)]
    assert (sync_sink.closed, async_sink.closed) == (1, 1)
    assert dispatcher.close() is True  # idempotent
    assert (sync_sink.closed, async_sink.closed) == (1, 1)
    assert dispatcher._thread is not None and not dispatcher._thread.is_alive()
    runners = [ch.runner._thread for ch in dispatcher._channels if ch.runner is not None]
    assert len(runners) == 2  # each sync sink had a thread of its own: both stopped
    assert wait_until(lambda: not any(t is not None and t.is_alive() for t in runners))
    dispatcher.submit(report(10))
    dispatcher.submit(report(11))
    assert dispatcher.dropped == 4  # two reports, two sinks
    assert len(sync_sink.got) == 10
    closed = [r for r in caplog.records if "is closed" in r.getMessage()]
    assert len(closed) == 1


def test_close_without_any_submit_still_closes_the_sinks() -> None:
    sink = Recorder()
    dispatcher = SinkDispatcher([sink])
    assert dispatcher.close() is True
    assert sink.closed == 1


# -- async sinks and events -------------------------------------------------------------


def test_async_sinks_are_awaited_on_the_worker_and_do_not_hold_each_other() -> None:
    class AsyncSink:
        def __init__(self, delay: float) -> None:
            self.delay = delay
            self.got: list[str] = []
            self.threads: set[str] = set()

        async def record(self, r: RunReport) -> None:
            await asyncio.sleep(self.delay)
            self.threads.add(threading.current_thread().name)
            self.got.append(r.run_id)

    slow, quick = AsyncSink(0.3), AsyncSink(0)
    dispatcher = SinkDispatcher([slow, quick])
    for i in range(10):
        dispatcher.submit(report(i))
    assert wait_until(lambda: len(quick.got) == 10, timeout=2)
    assert len(slow.got) == 0  # still awaiting its first record: they run concurrently
    assert quick.threads == {"agentbudget-sinks"}
    assert dispatcher.close(timeout=0.1) is False
    assert dispatcher.stats()[0].dropped >= 9


def test_async_record_batch_and_a_sync_record_returning_a_coroutine_are_awaited() -> None:
    class AsyncBatch:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []

        async def record_batch(self, reports: Sequence[RunReport]) -> None:
            await asyncio.sleep(0)
            self.batches.append(ids(reports))

    class ReturnsCoroutine:  # a plain function returning an awaitable (a wrapped async def)
        def __init__(self) -> None:
            self.got: list[str] = []

        async def _write(self, r: RunReport) -> None:
            await asyncio.sleep(0)
            self.got.append(r.run_id)

        def record(self, r: RunReport) -> Any:
            return self._write(r)

    batched, wrapped = AsyncBatch(), ReturnsCoroutine()
    dispatcher = SinkDispatcher([batched, wrapped])
    for i in range(5):
        dispatcher.submit(report(i))
    assert dispatcher.flush(5)
    assert [x for batch in batched.batches for x in batch] == [f"r{i}" for i in range(5)]
    assert wrapped.got == [f"r{i}" for i in range(5)]
    assert dispatcher.failures == 0
    assert dispatcher.close()


def test_events_go_to_their_callback_in_order_and_are_not_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="agentbudget")
    events = EventDispatcher()
    got: list[object] = []
    calls: list[object] = []
    threads: set[str] = set()

    def notify(event: object) -> None:
        threads.add(threading.current_thread().name)
        got.append(event)

    def broken(event: object) -> None:
        calls.append(event)
        if event == 1:
            raise RuntimeError("webhook down")

    async def anotify(event: object) -> None:
        await asyncio.sleep(0)
        got.append(("async", event))

    for i in range(3):
        events.submit_event(notify, i)
        events.submit_event(broken, i)
    events.submit_event(anotify, "a")
    assert events.flush(5)
    assert [e for e in got if not isinstance(e, tuple)] == [0, 1, 2]
    assert ("async", "a") in got
    assert calls == [0, 1, 2]  # the event that raised was not called again
    assert threads == {
        "agentbudget-events:test_events_go_to_their_callback_in_order_and_are_not_retried.<locals>.notify"
    }
    assert events.failures == 1
    assert {s.target: s.delivered for s in events.stats()} == {notify: 3, broken: 2, anotify: 1}
    assert [r.getMessage() for r in caplog.records if "webhook down" in r.getMessage()]
    assert events.close() is True


def test_sinks_and_events_share_one_worker() -> None:
    sink = Recorder()
    dispatcher = SinkDispatcher([sink])
    seen: list[str] = []
    dispatcher.submit(report(0))
    dispatcher.submit_event(lambda e: seen.append(threading.current_thread().name), "alert")
    assert dispatcher.flush(5)
    assert seen[0].startswith("agentbudget-sinks:") and sink.got == ["r0"]
    dispatcher.close()


# -- JsonlSink --------------------------------------------------------------------------


def test_jsonl_record_batch_round_trips(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path / "spend.jsonl")
    sink.record(report(0))
    sink.record_batch([report(1), report(2)])
    sink.record_batch([])
    assert ids(sink.read()) == ["r0", "r1", "r2"]
    assert sink.read()[1] == report(1)


def fork(child: Any) -> int:
    """Run ``child()`` in a forked process; its exit status is 0 when it returned True."""
    with warnings.catch_warnings():  # Python 3.12 warns about forking with threads alive
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            code = 0 if child() else 1
        except BaseException:
            code = 2
        os._exit(code)
    return pid


def wait_status(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_jsonl_two_processes_append_without_tearing_lines(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"

    def writer(tag: str) -> bool:
        sink = JsonlSink(path)

        def rep(i: int) -> RunReport:  # 3 KB lines: writes that could tear if not atomic
            return RunReport(run_id=f"{tag}-{i}", agent="x" * 3000, started_at=STARTED)

        for b in range(40):
            sink.record_batch([rep(b * 10 + i) for i in range(10)])
        for i in range(400, 500):
            sink.record(rep(i))
        return True

    pids = [fork(lambda tag=tag: writer(tag)) for tag in ("a", "b")]
    assert [wait_status(pid) for pid in pids] == [0, 0]
    got = ids(JsonlSink(path).read())  # every line parses: no torn or interleaved line
    assert len(got) == len(set(got)) == 1000
    for tag in ("a", "b"):
        assert [x for x in got if x.startswith(tag)] == [f"{tag}-{i}" for i in range(500)]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_worker_and_does_not_redeliver(tmp_path: Path) -> None:
    stuck, jsonl = Gated(), JsonlSink(tmp_path / "spend.jsonl")
    dispatcher = SinkDispatcher([stuck, jsonl])
    dispatcher.submit(report(0))
    assert stuck.entered.wait(5) and dispatcher.flush(0.01) is False
    dispatcher.submit(report(1))  # queued for the stuck sink when the process forks
    assert wait_until(lambda: len(jsonl.read()) == 2)

    def child() -> bool:
        if dispatcher.pending != 0:  # the parent's records stay the parent's
            return False
        stuck.gate.set()
        dispatcher.submit(report("child"))
        return dispatcher.flush(5) and stuck.got == ["rchild"]

    assert wait_status(fork(child)) == 0
    assert ids(jsonl.read()) == ["r0", "r1", "rchild"]
    stuck.gate.set()
    assert dispatcher.flush(5) and stuck.got == ["r0", "r1"]
    dispatcher.close()


EXITER = """
import sys, time
from datetime import datetime, timezone
from agentbudget.report import RunReport
from agentbudget.sinks import JsonlSink, SinkDispatcher

class Slow(JsonlSink):
    def record_batch(self, reports):
        time.sleep(0.05)
        super().record_batch(reports)

dispatcher = SinkDispatcher([Slow(sys.argv[1])], batch_size=5)
for i in range(20):
    dispatcher.submit(RunReport(run_id=f"r{i}", agent="a", started_at=datetime(2026, 1, 1)))
# no flush, no close: the atexit hook delivers what is queued
"""


@pytest.mark.slow
def test_atexit_flushes_what_a_short_script_queued(tmp_path: Path) -> None:
    path = tmp_path / "spend.jsonl"
    script = tmp_path / "exiter.py"
    script.write_text(textwrap.dedent(EXITER))
    subprocess.run([sys.executable, str(script), str(path)], check=True, timeout=60)
    assert ids(JsonlSink(path).read()) == [f"r{i}" for i in range(20)]
