"""One event loop in a daemon thread that owns the connections of network stores.

``redis.asyncio`` connections belong to the event loop that opened them. A store used
from several loops (``Runner.run_sync`` in many threads, sequential ``asyncio.run``
calls, a sub-run in a worker thread) would hand a connection of one loop to another,
or to a loop that is already closed. Network stores therefore run their I/O here: the
caller's coroutine awaits a future that the I/O loop completes, whatever loop or thread
the caller is on. Cancelling the caller cancels the operation on the I/O loop.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["io_loop", "run_on_io_loop"]

_T = TypeVar("_T")

_lock = threading.Lock()
_state: dict[str, object] = {}  # "loop", "pid"


def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    loop.call_soon(ready.set)
    loop.run_forever()


def io_loop() -> asyncio.AbstractEventLoop:
    """The I/O loop of this process, started on first use (and again after a fork)."""
    loop = _state.get("loop")
    if isinstance(loop, asyncio.AbstractEventLoop) and _state.get("pid") == os.getpid():
        return loop
    with _lock:
        loop = _state.get("loop")
        if isinstance(loop, asyncio.AbstractEventLoop) and _state.get("pid") == os.getpid():
            return loop
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        thread = threading.Thread(
            target=_serve, args=(loop, ready), name="agentbudget-io", daemon=True
        )
        thread.start()
        ready.wait()
        _state["loop"], _state["pid"] = loop, os.getpid()
        return loop


async def run_on_io_loop(operation: Callable[[], Awaitable[_T]]) -> _T:
    """Run ``operation()`` on the I/O loop and return its result to the calling loop."""
    loop = io_loop()
    if asyncio.get_running_loop() is loop:
        return await operation()

    async def call() -> _T:
        return await operation()

    future = asyncio.run_coroutine_threadsafe(call(), loop)
    return await asyncio.wrap_future(future)
