"""Event-loop housekeeping for tests that call ``Runner.run_sync``."""

from __future__ import annotations

import asyncio
import warnings


def close_thread_loop() -> None:
    """Close the current thread's default event loop and unset it.

    ``Runner.run_sync`` leaves the thread's default loop open by design; a test (or a
    worker thread) that used it calls this at the end. A running loop is left alone.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        try:
            loop = policy.get_event_loop()
        except RuntimeError:
            return
    if not loop.is_running():
        loop.close()
    policy.set_event_loop(None)
