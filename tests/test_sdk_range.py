"""The declared openai-agents range, and a clear error when an SDK internal is missing."""

from __future__ import annotations

import sys
from importlib.metadata import version
from pathlib import Path

import pytest
from agents.result import RunResultStreaming
from agents.run import AgentRunner
from agents.run_internal import run_loop

import agentbudget as ab
from agentbudget import _sdk, runtime

SDK_VERSION = version("openai-agents")


def test_the_installed_sdk_has_every_internal_agentbudget_patches() -> None:
    assert [name for name, present in _sdk.internals() if not present] == []
    runtime.check_sdk()


def test_instrument_names_the_version_when_get_model_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(run_loop, "get_model")
    run_before = AgentRunner.__dict__["run"]
    with pytest.raises(ab.ConfigurationError) as info:
        ab.instrument()
    message = str(info.value)
    assert f"openai-agents {SDK_VERSION}" in message
    assert "agents.run_internal.run_loop.get_model" in message
    assert runtime.SDK_RANGE in message
    # nothing was patched half-way
    assert not runtime.is_instrumented()
    assert AgentRunner.__dict__["run"] is run_before


def test_a_scope_fails_on_entry_when_stored_exception_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(RunResultStreaming.__dataclass_fields__, "_stored_exception")
    with pytest.raises(ab.ConfigurationError, match=r"RunResultStreaming\._stored_exception"):
        with ab.budget(max_tool_calls=3):
            pass


def test_instrument_fails_when_the_runner_method_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(AgentRunner, "run_streamed")
    with pytest.raises(ab.ConfigurationError, match=r"AgentRunner\.run_streamed"):
        ab.instrument()


@pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib")
def test_pyproject_declares_the_range_the_runtime_checks() -> None:
    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    assert f"openai-agents{runtime.SDK_RANGE}" in deps
    lower = runtime.SDK_RANGE.split(",")[0].removeprefix(">=")
    assert tuple(map(int, lower.split("."))) <= tuple(map(int, SDK_VERSION.split(".")[:2]))
