"""The pytest plugin is tested with pytester: each test writes a small project and runs it."""

from __future__ import annotations

import textwrap

import pytest

HEADER = '''\
from decimal import Decimal

import pytest
from agents import Agent, Runner, function_tool, set_tracing_disabled

import agentbudget as ab
from agentbudget.testing import (
    agent_costing,
    handoff_call,
    reply,
    scripted_agent,
    scripted_model,
    tool_call,
    tool_loop,
)

set_tracing_disabled(True)  # offline: no trace export


@function_tool
def lookup(q: str) -> str:
    """Look something up."""
    return f"found {q}"

'''

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
addopts = --strict-markers --strict-config -p no:cacheprovider
    # unrelated plugins installed here; hypothesis alone adds a second to every run
    -p no:hypothesispytest -p no:anyio
filterwarnings = error
"""


class Project:
    """A pytester project configured the way strict users configure theirs: strict markers
    and config, warnings as errors, pytest-asyncio in auto mode."""

    def __init__(self, pytester: pytest.Pytester) -> None:
        self.pytester = pytester
        pytester.makeini(INI)

    def write(self, body: str, *, name: str = "test_generated_costs") -> None:
        """A test module: common imports (tracing disabled, a ``lookup`` tool), then ``body``."""
        self.pytester.makepyfile(**{name: HEADER + textwrap.dedent(body)})

    def run(self, *args: str) -> pytest.RunResult:
        """Run the project in this process (the plugin loads through its entry point)."""
        return self.pytester.runpytest_inprocess(*args)


@pytest.fixture(autouse=True)
def _close_sdk_loop(close_sdk_loop: None) -> None:
    """The tests here (and the in-process pytester runs) share this thread: close the
    default event loop ``Runner.run_sync`` leaves open after each test."""


@pytest.fixture
def project(pytester: pytest.Pytester) -> Project:
    return Project(pytester)
