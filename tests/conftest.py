from __future__ import annotations

from collections.abc import Iterator

import pytest
from agents import set_tracing_disabled
from helpers.loops import close_thread_loop

import agentbudget as ab
from agentbudget.guard import reset_default_guard

pytest_plugins = ["pytester"]  # the plugin's tests (tests/plugin) run pytest in pytest


@pytest.fixture(autouse=True)
def _isolated() -> Iterator[None]:
    """No trace export (offline), a fresh default guard, and the SDK restored afterwards."""
    set_tracing_disabled(True)
    reset_default_guard()
    yield
    reset_default_guard()
    ab.uninstrument()


@pytest.fixture
def close_sdk_loop() -> Iterator[None]:
    """``Runner.run_sync`` leaves the thread's default event loop open by design; close it."""
    yield
    close_thread_loop()
