"""Delivery of run reports and events off the call path.

``EventDispatcher`` owns one daemon worker thread, started on the first submit, that runs
a private asyncio loop. Each target (a sink, or an event callback) has a *channel*: its
own bounded queue and its own task on that loop, so a failing or full target never
drops another's records. ``submit`` only appends to the queues under a lock.

``async def`` targets are awaited on the worker's loop. Synchronous ones are called in a
daemon thread of their own (a ``_Runner``, started with the target's first record), so
a slow or hung sink holds up only itself, and a sink is always called from the same
thread (a SQLite connection needs that). A channel holds at most ``maxsize`` waiting
records plus the batch being delivered.

``SinkDispatcher`` is an ``EventDispatcher`` whose channels are the sinks given at
construction: ``submit(report)`` queues the report for every sink; a sink that raises
is retried with exponential backoff and jitter, its failed records kept in order at
the head of its queue. Event callbacks (``submit_event(callback, event)``: budget
alerts, the coming ``Alerts``) share the worker and the isolation but are not retried.

What can be lost, and when:

- a queue is full (``maxsize`` records wait for one target): the **oldest** waiting
  record of that target is dropped, counted and logged. The oldest, because the newest
  reports describe the spend that is happening now, which alerts and dashboards act on,
  and because a target that has been failing long enough to fill its queue is further
  behind on its oldest records than on any other (keeping the old ones would make it
  drop every new report until it recovers);
- the process ends without ``close()``: an ``atexit`` hook flushes every open dispatcher
  for up to ``exit_flush_s`` seconds (2 by default); what is still queued then is lost,
  as is everything queued when the process is killed (SIGKILL, ``os._exit``);
- ``close(timeout)`` gives up on what could not be delivered within ``timeout``
  (counted as dropped; a sync call already under way may still complete), and a report
  submitted after ``close`` is dropped and counted.

This module does not import ``agents``.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import inspect
import logging
import math
import os
import queue
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from ..report import RunReport

__all__ = ["ChannelStats", "Deferred", "EventDispatcher", "SinkDispatcher"]

logger = logging.getLogger("agentbudget")

DROP_LOG_INTERVAL_S = 1.0
"""Drops of one channel are logged at most once per this many seconds (with the count)."""


@dataclass(frozen=True)
class ChannelStats:
    """The counters of one target (a sink or an event callback) of a dispatcher.

    Attributes:
        target: the sink or the callback.
        pending: records waiting (queued or being delivered).
        delivered: records the target took.
        dropped: records lost: queue full, submitted after close, undelivered at close.
        failures: calls that raised (each retry of a failing sink counts).
        failing: the last call raised and the sink has not recovered yet.
    """

    target: object
    pending: int
    delivered: int
    dropped: int
    failures: int
    failing: bool


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return  # the waiting task was cancelled (close): the result has nowhere to go
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class _Runner:
    """A daemon thread that makes one target's synchronous calls, one at a time.

    A sync sink blocks only its own thread, so a slow or hung one holds up nobody else,
    and a sink is always called from the same thread (SQLite connections need that).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, Any] | None
        ] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Call ``fn(*args)`` in this runner's thread (from the worker's loop)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
            self._thread.start()
        self._calls.put((fn, args, loop, fut))
        return fut

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, args, loop, fut = item
            try:
                ok, value = True, fn(*args)
            except Exception as exc:
                ok, value = False, exc
            except BaseException as exc:  # never leave the worker waiting for an answer
                ok, value = False, RuntimeError(f"{type(exc).__name__} in a sink call")
            try:
                loop.call_soon_threadsafe(_settle, fut, ok, value)
            except RuntimeError:  # the worker's loop is closed: nobody waits any more
                pass

    def stop(self) -> None:
        if self._thread is not None:
            self._calls.put(None)


class Deferred:
    """A record built when first needed, at most once, in whichever thread asks first.

    ``submit(Deferred(build))`` queues a report that the worker builds before delivering
    it, so the call path does not pay for building a report only sinks read.
    """

    __slots__ = ("_build", "_lock", "_value")

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build: Callable[[], Any] | None = build
        self._lock = threading.Lock()
        self._value: Any = None

    def get(self) -> Any:
        """The record (built now if nobody built it yet)."""
        if self._build is not None:
            with self._lock:
                build = self._build
                if build is not None:
                    self._value = build()
                    self._build = None
        return self._value


def _is_async(fn: Callable[..., Any] | None) -> bool:
    return fn is not None and (
        inspect.iscoroutinefunction(fn)
        or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
    )


def _record_each(
    fn: Callable[[Any], Any], batch: list[Any], start: int
) -> tuple[int, Exception | None, Any]:
    """Call ``fn`` on ``batch[start:]`` in a runner: ``(done, error, awaitable)``; stops at
    an error, or at a result that must be awaited on the loop."""
    for i in range(start, len(batch)):
        try:
            result = fn(batch[i])
        except Exception as exc:
            return i, exc, None
        if inspect.isawaitable(result):
            return i, None, result
    return len(batch), None, None


class _Channel:
    """One target's queue and counters. Fields are guarded by the dispatcher's lock,
    except ``batch``'s contents, which only the channel's task touches."""

    __slots__ = (
        "async_many",
        "async_one",
        "attempts",
        "batch",
        "batch_seq",
        "deliver",
        "delivered",
        "drop_logged_at",
        "dropped",
        "failures",
        "head",
        "label",
        "one",
        "queue",
        "retry",
        "runner",
        "target",
        "waiter",
    )

    def __init__(
        self,
        target: object,
        *,
        one: Callable[[Any], Any] | None,
        many: Callable[[list[Any]], Any] | None,
        retry: bool,
    ) -> None:
        self.target = target
        self.one = one
        self.deliver = many
        self.retry = retry
        self.label = repr(target)
        self.queue: deque[Any] = deque()
        self.head = 0  # sequence number of queue[0]
        self.batch: list[Any] = []  # taken from the queue, being delivered (or retried)
        self.batch_seq = 0  # sequence number of batch[0]
        self.waiter: asyncio.Future[None] | None = None  # set while the task idles
        self.delivered = 0
        self.dropped = 0
        self.failures = 0
        self.attempts = 0  # consecutive failed calls
        self.drop_logged_at = -math.inf
        self.async_one = _is_async(one)
        self.async_many = _is_async(many)
        self.runner: _Runner | None = None

    @property
    def end(self) -> int:
        """Sequence number the next record will get."""
        return self.head + len(self.queue)

    @property
    def low(self) -> int:
        """Sequence number of the oldest record not yet delivered or dropped."""
        return self.batch_seq if self.batch else self.head

    @property
    def pending(self) -> int:
        return len(self.batch) + len(self.queue)


_Targets = list[tuple[_Channel, int]]


def _reached(targets: _Targets) -> bool:
    return all(ch.low >= seq for ch, seq in targets)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _check_number(name: str, value: object, *, minimum: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < minimum or (strict and value == minimum):
        bound = f"> {minimum}" if strict else f">= {minimum}"
        raise ConfigurationError(f"{name} must be {bound}, got {value!r}")
    return float(value)


def _check_count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an integer >= 1, got {value!r}")
    return value


_LIVE: weakref.WeakSet[EventDispatcher] = weakref.WeakSet()


class EventDispatcher:
    """Calls event callbacks in a worker thread, off the call path.

    ``submit_event(callback, event)`` queues ``event`` for ``callback`` and returns at
    once. Each distinct callback gets its own bounded queue (``maxsize``), delivered in
    order from a thread of its own; an ``async def`` callback is awaited on the worker's
    event loop. A callback
    that raises is logged (once, and again when it recovers) and counted in
    ``failures``; the event is not retried. Pass the same callable each time (a bound
    method or a function): each distinct callable gets a queue of its own.

    No thread is started until something is submitted.

    Args:
        maxsize: records each target's queue holds; beyond it the oldest is dropped.
        batch_size: records taken from a queue at once (``record_batch`` size).
        exit_flush_s: how long the ``atexit`` hook waits for delivery at exit.
        name: the worker thread's name.
        poll_s: how often an idle worker looks for new events (0: on every submit).

    Raises:
        ConfigurationError: a bad number or name.
    """

    def __init__(
        self,
        *,
        maxsize: int = 10_000,
        batch_size: int = 256,
        exit_flush_s: float = 2.0,
        name: str = "agentbudget-events",
        poll_s: float = 0.05,
    ) -> None:
        self.maxsize = _check_count("maxsize", maxsize)
        self.batch_size = _check_count("batch_size", batch_size)
        self.exit_flush_s = _check_number("exit_flush_s", exit_flush_s, minimum=0, strict=False)
        self.poll_s = _check_number("poll_s", poll_s, minimum=0, strict=False)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a non-empty string, got {name!r}")
        self.name = name
        self._retry_initial_s = 0.1
        self._retry_max_s = 30.0
        self._channels: list[_Channel] = []
        self._callbacks: dict[object, _Channel] = {}
        self._init_runtime()
        _LIVE.add(self)

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._async_waiters: list[tuple[_Targets, asyncio.AbstractEventLoop, Any]] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[_Channel, asyncio.Task[None]] = {}
        self._wake_scheduled = False
        self._closed = False
        self._closed_warned = False
        self._shutdown_done: concurrent.futures.Future[bool] | None = None
        self._stop: asyncio.Future[None] | None = None

    # -- submitting ----------------------------------------------------------------------

    def submit_event(self, callback: Callable[[Any], Any], event: object) -> None:
        """Queue ``event`` for ``callback``; never blocks, never raises."""
        try:
            with self._lock:
                key: object = callback
                try:
                    ch = self._callbacks.get(key)
                except TypeError:  # unhashable callable
                    key = id(callback)
                    ch = self._callbacks.get(key)
                if ch is None and not self._closed:
                    ch = _Channel(callback, one=callback, many=None, retry=False)
                    self._callbacks[key] = ch
                    self._channels.append(ch)
                    if self._loop is not None:
                        self._loop.call_soon_threadsafe(self._start_task, ch)
                notes = self._enqueue(() if ch is None else (ch,), event)
            if notes:
                self._after_enqueue(notes)
        except Exception:  # pragma: no cover - the call path must never see an error
            logger.exception("agentbudget: could not queue an event for %r", callback)

    def _enqueue(self, channels: Iterable[_Channel], item: object) -> list[str]:
        """Append ``item`` to each channel (lock held). Returns log lines to emit after
        the lock is released, and whether the worker needs a wake-up."""
        if self._closed:
            return self._drop_closed(channels, item)
        if self._thread is None:
            self._start()
        notes: list[str] = []
        progressed = False
        for ch in channels:
            if len(ch.queue) >= self.maxsize:
                ch.queue.popleft()
                ch.head += 1
                ch.dropped += 1
                progressed = True
                now = time.monotonic()
                if now - ch.drop_logged_at >= DROP_LOG_INTERVAL_S:
                    ch.drop_logged_at = now
                    notes.append(
                        f"agentbudget: the queue of {ch.label} is full ({self.maxsize}); "
                        f"dropped its oldest record ({ch.dropped} dropped so far)"
                    )
            ch.queue.append(item)
            if ch.waiter is not None and not self._wake_scheduled and not self.poll_s:
                self._wake_scheduled = True
                notes.append("")  # "" = wake the worker
        if progressed:
            self._progress()
        return notes

    def _drop_closed(self, channels: Iterable[_Channel], item: object) -> list[str]:
        for ch in channels:
            ch.dropped += 1
        if self._closed_warned:
            return []
        self._closed_warned = True
        return [f"agentbudget: {self.name} is closed; dropped a record submitted after close"]

    def _after_enqueue(self, notes: list[str]) -> None:
        for note in notes:
            if note:
                logger.warning("%s", note)
            elif self._loop is not None:
                try:
                    self._loop.call_soon_threadsafe(self._wake)
                except RuntimeError:  # the loop closed meanwhile (close() ran)
                    pass

    # -- the worker ----------------------------------------------------------------------

    def _start(self) -> None:
        """Start the worker thread and its loop (lock held)."""
        loop = asyncio.new_event_loop()
        self._stop = loop.create_future()
        self._shutdown_done = concurrent.futures.Future()
        thread = threading.Thread(target=self._run, args=(loop,), name=self.name, daemon=True)
        thread.start()
        self._loop = loop
        self._thread = thread

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self) -> None:
        with self._lock:
            channels = list(self._channels)
            stop = self._stop
        assert stop is not None
        for ch in channels:
            self._start_task(ch)
        await stop

    def _start_task(self, ch: _Channel) -> None:
        if ch not in self._tasks:
            self._tasks[ch] = asyncio.get_running_loop().create_task(self._pump(ch))

    def _wake_now(self) -> None:
        """Have the worker look at the queues now, not at its next poll (lock held)."""
        if self._loop is not None and not self._wake_scheduled:
            self._wake_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # the loop closed meanwhile (close() ran)
                self._wake_scheduled = False

    def _wake(self) -> None:
        with self._lock:
            self._wake_scheduled = False
            for ch in self._channels:
                if ch.waiter is not None and ch.queue:
                    _resolve(ch.waiter)

    async def _pump(self, ch: _Channel) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                if not ch.batch:
                    n = min(len(ch.queue), self.batch_size)
                    if n:
                        ch.batch_seq = ch.head
                        ch.batch = [ch.queue.popleft() for _ in range(n)]
                        ch.head += n
                        ch.waiter = None
                    else:
                        ch.waiter = loop.create_future()
                waiter = ch.waiter
            if waiter is not None:
                if self.poll_s:
                    # Idle: look again every poll_s. A submit does not wake the worker (a
                    # cross-thread wake-up costs the call path more than queueing does);
                    # flush and close do.
                    await asyncio.wait((waiter,), timeout=self.poll_s)
                else:
                    await waiter
                continue
            await self._deliver(ch)
            await asyncio.sleep(0)  # let the other channels run between batches

    def _built(self, ch: _Channel, batch: list[Any]) -> list[Any]:
        """``batch`` with its ``Deferred`` records built (here, off the call path). A record
        that fails to build is logged and counted as dropped; the others go on."""
        built: list[Any] = []
        failed = 0
        for item in batch:
            if not isinstance(item, Deferred):
                built.append(item)
                continue
            try:
                built.append(item.get())
            except Exception:
                failed += 1
                logger.exception("agentbudget: a report for %s could not be built", ch.label)
        if failed:
            with self._lock:
                ch.dropped += failed
                ch.batch_seq += failed  # they count as taken: the next ones follow them
                self._progress()
        return built

    def _runner(self, ch: _Channel) -> _Runner:
        if ch.runner is None:
            label = getattr(ch.target, "__qualname__", None) or type(ch.target).__name__
            ch.runner = _Runner(f"{self.name}:{label}")
        return ch.runner

    async def _deliver(self, ch: _Channel) -> None:
        batch = ch.batch
        if any(isinstance(item, Deferred) for item in batch):
            batch = ch.batch = self._built(ch, batch)
            if not batch:
                return
        done = 0
        error: Exception | None = None
        try:
            if ch.deliver is not None:
                if ch.async_many:
                    result = ch.deliver(list(batch))
                else:
                    result = await self._runner(ch).call(ch.deliver, list(batch))
                if inspect.isawaitable(result):
                    await result
                done = len(batch)
            else:
                assert ch.one is not None
                while done < len(batch):
                    if ch.async_one:
                        await ch.one(batch[done])
                        done += 1
                        continue
                    done, error, pending = await self._runner(ch).call(
                        _record_each, ch.one, batch, done
                    )
                    if error is not None:
                        break
                    if pending is not None:
                        await pending
                        done += 1
        except Exception as exc:
            error = exc
        if error is not None and not ch.retry:
            done += 1  # a callback's event is not retried: move past it
        if error is None and ch.attempts:  # before a flush waiting on this batch returns
            logger.warning(
                "agentbudget: %s recovered after %d failed call%s",
                ch.label,
                ch.attempts,
                "" if ch.attempts == 1 else "s",
            )
        with self._lock:
            ch.batch = batch[done:]
            ch.batch_seq += done
            ch.delivered += done if error is None or ch.retry else done - 1
            if error is not None:
                ch.failures += 1
                ch.attempts += 1
            attempts = ch.attempts
            if error is None:
                ch.attempts = 0
            self._progress()
        if error is not None:
            if attempts == 1:
                logger.warning(
                    "agentbudget: %s raised %s: %s; %s",
                    ch.label,
                    type(error).__name__,
                    error,
                    "retrying with backoff, nothing is dropped while its queue has room"
                    if ch.retry
                    else "the event is not retried",
                    exc_info=error,
                )
            if ch.retry:
                await asyncio.sleep(self._backoff_s(attempts))

    def _backoff_s(self, attempts: int) -> float:
        """The pause after ``attempts`` consecutive failures: ``retry_initial_s`` doubling
        up to ``retry_max_s``, of which a random half is jitter (so that processes that
        failed together do not retry together)."""
        delay = min(self._retry_max_s, self._retry_initial_s * 2.0 ** min(attempts - 1, 64))
        return delay / 2 + random.uniform(0, delay / 2)

    def _progress(self) -> None:
        """Wake the flushes that are done (lock held)."""
        self._cond.notify_all()
        if self._async_waiters:
            still = []
            for waiter in self._async_waiters:
                targets, loop, fut = waiter
                if _reached(targets):
                    try:
                        loop.call_soon_threadsafe(_resolve, fut)
                    except RuntimeError:  # that loop is closed: nobody waits any more
                        pass
                else:
                    still.append(waiter)
            self._async_waiters = still

    # -- flush and close -----------------------------------------------------------------

    def _targets(self) -> _Targets:
        return [(ch, ch.end) for ch in self._channels if ch.low < ch.end]

    def flush(self, timeout: float | None = None) -> bool:
        """Block until every record submitted before this call is delivered or dropped.

        A failing sink keeps its records, so with one the flush waits (asleep, not
        spinning) until the sink recovers or ``timeout`` seconds pass.

        Returns:
            True when everything was delivered or dropped, False at the timeout.
        """
        with self._lock:
            targets = self._targets()
            if not targets:
                return True
            if threading.current_thread() is self._thread:
                return False  # called from a sink: waiting would deadlock the worker
            self._wake_now()
            return self._cond.wait_for(lambda: _reached(targets), timeout)

    async def aflush(self, timeout: float | None = None) -> bool:
        """``flush`` for async code: waits without blocking the running loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            targets = self._targets()
            if not targets:
                return True
            if threading.current_thread() is self._thread:
                return False
            self._wake_now()
            fut: asyncio.Future[None] = loop.create_future()
            waiter = (targets, loop, fut)
            self._async_waiters.append(waiter)
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            with self._lock:
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)

    def close(self, timeout: float = 30.0) -> bool:
        """Flush for up to ``timeout`` seconds, stop the worker, close the sinks.

        Each sink's own ``aclose()`` (awaited) or ``close()`` is then called in the worker.
        What is still undelivered is dropped and counted; later submits are dropped and
        counted too. Calling ``close`` again does nothing.

        Returns:
            True when every record was delivered and the sinks closed within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        done = self._begin_close(timeout)
        if done is None:
            return True
        if threading.current_thread() is self._thread:
            self._request_stop()  # called from a sink: stop without waiting for ourselves
            return False
        flushed = self.flush(max(0.0, deadline - time.monotonic()))
        self._request_stop()
        try:
            closed = done.result(max(0.1, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            return False
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        return flushed and closed

    async def aclose(self, timeout: float = 30.0) -> bool:
        """``close`` for async code: waits without blocking the running loop."""
        deadline = time.monotonic() + timeout
        done = self._begin_close(timeout)
        if done is None:
            return True
        flushed = await self.aflush(max(0.0, deadline - time.monotonic()))
        self._request_stop()
        try:
            closed = await asyncio.wait_for(
                asyncio.wrap_future(done), max(0.1, deadline - time.monotonic())
            )
        except asyncio.TimeoutError:
            return False
        return flushed and closed

    def _closers(self) -> list[tuple[Callable[[], Any], _Channel]]:
        """Each target's ``aclose``/``close`` with the channel whose thread calls it."""
        return []

    def _begin_close(self, timeout: float) -> concurrent.futures.Future[bool] | None:
        _check_number("timeout", timeout, minimum=0, strict=False)
        with self._lock:
            if self._closed:
                return None
            self._closed = True
            if self._thread is None:
                if not self._closers():
                    return None
                self._start()  # the sinks are closed on the worker, as their records are
            return self._shutdown_done

    def _request_stop(self) -> None:
        with self._lock:
            loop = self._loop
        if loop is not None:
            try:
                loop.call_soon_threadsafe(lambda: loop.create_task(self._shutdown()))
            except RuntimeError:
                pass

    async def _shutdown(self) -> None:
        clean = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        lost = 0
        with self._lock:
            for ch in self._channels:
                n = ch.pending
                if n:
                    ch.dropped += n
                    lost += n
                    ch.head = ch.end
                    ch.queue.clear()
                    ch.batch = []
            self._progress()
        if lost:
            clean = False
            logger.warning("agentbudget: %s closed with %d undelivered record(s)", self.name, lost)
        for closer, ch in self._closers():
            try:
                if _is_async(closer):
                    result = closer()
                else:  # in the thread that made the sink's calls
                    result = await self._runner(ch).call(closer)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                clean = False
                logger.exception("agentbudget: %r failed while closing", closer)
        for ch in self._channels:
            if ch.runner is not None:
                ch.runner.stop()
        assert self._shutdown_done is not None and self._stop is not None
        self._shutdown_done.set_result(clean)
        self._stop.set_result(None)

    # -- inspection ----------------------------------------------------------------------

    def stats(self) -> list[ChannelStats]:
        """The counters of every target, sinks first, in order."""
        with self._lock:
            return [
                ChannelStats(
                    target=ch.target,
                    pending=ch.pending,
                    delivered=ch.delivered,
                    dropped=ch.dropped,
                    failures=ch.failures,
                    failing=ch.attempts > 0 and ch.retry,
                )
                for ch in self._channels
            ]

    @property
    def pending(self) -> int:
        """Records waiting for delivery, summed over targets."""
        with self._lock:
            return sum(ch.pending for ch in self._channels)

    @property
    def dropped(self) -> int:
        """Records lost, summed over targets (a report lost for two sinks counts twice)."""
        with self._lock:
            return sum(ch.dropped for ch in self._channels)

    @property
    def failures(self) -> int:
        """Calls to targets that raised, summed over targets."""
        with self._lock:
            return sum(ch.failures for ch in self._channels)

    @property
    def closed(self) -> bool:
        return self._closed

    def _after_fork(self) -> None:
        """In a forked child: no worker, and the parent's queued records are the parent's."""
        closed = self._closed
        self._init_runtime()
        self._closed = self._closed_warned = closed
        for ch in self._channels:
            ch.queue.clear()
            ch.batch = []
            ch.head = ch.batch_seq = 0
            ch.waiter = None
            ch.attempts = 0
            ch.runner = None  # its thread did not survive the fork


class SinkDispatcher(EventDispatcher):
    """Delivers run reports to sinks in a worker thread, off the call path.

    ``submit(report)`` queues the report for every sink and returns at once; with no
    sinks it does nothing and no thread is ever started. A sink with ``record_batch``
    gets lists of up to ``batch_size`` reports, otherwise ``record`` is called per
    report; either may be ``async def``. A sink that raises is retried with exponential
    backoff and jitter (``retry_initial_s`` doubling up to ``retry_max_s``), its records
    kept in order; a warning is logged on its first failure and on its recovery.
    Each sync sink is called from a thread of its own and async ones are awaited on the
    worker's loop, so a slow sink holds up only itself.

    Args:
        sinks: objects with a callable ``record`` or ``record_batch``.
        maxsize: reports each sink's queue holds; beyond it the oldest is dropped.
        retry_initial_s: the first backoff after a failure.
        retry_max_s: the longest backoff.
        batch_size: the most reports given to one ``record_batch`` call.
        exit_flush_s: how long the ``atexit`` hook waits for delivery at exit.
        name: the worker thread's name (a sync sink's thread is ``name:SinkClass``).
        poll_s: how often an idle worker looks for new reports (0.05 s: a report waits at
            most that long); ``submit`` does not wake it, ``flush`` and ``close`` do.
            0 wakes the worker on every submit (sooner delivery, a dearer call path).

    Raises:
        ConfigurationError: a sink without ``record``/``record_batch``, or a bad number.
    """

    def __init__(
        self,
        sinks: Iterable[object],
        *,
        maxsize: int = 10_000,
        retry_initial_s: float = 0.1,
        retry_max_s: float = 30.0,
        batch_size: int = 256,
        exit_flush_s: float = 2.0,
        name: str = "agentbudget-sinks",
        poll_s: float = 0.05,
    ) -> None:
        super().__init__(
            maxsize=maxsize,
            batch_size=batch_size,
            exit_flush_s=exit_flush_s,
            name=name,
            poll_s=poll_s,
        )
        self._retry_initial_s = _check_number(
            "retry_initial_s", retry_initial_s, minimum=0, strict=True
        )
        self._retry_max_s = _check_number("retry_max_s", retry_max_s, minimum=0, strict=True)
        if self._retry_max_s < self._retry_initial_s:
            raise ConfigurationError(
                f"retry_max_s ({retry_max_s!r}) must be >= retry_initial_s ({retry_initial_s!r})"
            )
        if isinstance(sinks, (str, bytes)) or not isinstance(sinks, Iterable):
            raise ConfigurationError(f"sinks must be an iterable of sinks, got {sinks!r}")
        self.sinks: tuple[object, ...] = tuple(sinks)
        channels = []
        for sink in self.sinks:
            many = getattr(sink, "record_batch", None)
            one = getattr(sink, "record", None)
            if not callable(many) and not callable(one):
                raise ConfigurationError(
                    f"{sink!r} is not a sink: it needs a callable record(report) "
                    "or record_batch(reports)"
                )
            channels.append(
                _Channel(
                    sink,
                    one=one if callable(one) else None,
                    many=many if callable(many) else None,
                    retry=True,
                )
            )
        self._sink_channels = tuple(channels)
        self._channels.extend(channels)

    def submit(self, report: RunReport | Deferred) -> None:
        """Queue ``report`` for every sink; never blocks, never raises. A ``Deferred``
        report is built by the worker, before its first delivery."""
        if not self._sink_channels:
            return
        try:
            with self._lock:
                notes = self._enqueue(self._sink_channels, report)
            if notes:
                self._after_enqueue(notes)
        except Exception:  # pragma: no cover - the call path must never see an error
            logger.exception("agentbudget: could not queue a report")

    def _closers(self) -> list[tuple[Callable[[], Any], _Channel]]:
        closers: list[tuple[Callable[[], Any], _Channel]] = []
        seen: set[int] = set()
        for ch in self._sink_channels:
            if id(ch.target) in seen:
                continue
            seen.add(id(ch.target))
            closer = getattr(ch.target, "aclose", None)
            if not callable(closer):
                closer = getattr(ch.target, "close", None)
            if callable(closer):
                closers.append((closer, ch))
        return closers


def _flush_at_exit() -> None:
    for dispatcher in list(_LIVE):
        if dispatcher._thread is not None and not dispatcher._closed:
            try:
                if not dispatcher.flush(dispatcher.exit_flush_s):
                    logger.warning(
                        "agentbudget: %s exits with %d undelivered record(s)",
                        dispatcher.name,
                        dispatcher.pending,
                    )
            except Exception:  # pragma: no cover - never fail the interpreter's exit
                pass


def _after_fork_in_child() -> None:
    for dispatcher in list(_LIVE):
        dispatcher._after_fork()


atexit.register(_flush_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
