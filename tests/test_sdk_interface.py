"""The model proxy and the metering hooks cover the SDK's whole interface.

A method the SDK adds to ``agents.Model`` or an ``on_*`` hook it adds to
``RunHooksBase`` must not be silently skipped: the proxy would inherit ``Model``'s
default (``__getattr__`` never sees an inherited name) instead of forwarding to the real
model, and the hooks would swallow the user's hook. These tests list the SDK's own
class dicts, so they fail on the first SDK release that adds one.
"""

from __future__ import annotations

import inspect
from typing import Any

import agents
import pytest
from agents.lifecycle import RunHooksBase

from agentbudget.hooks import MeterHooks
from agentbudget.interceptor import MeteredModel


def _is_method(value: object) -> bool:
    return callable(value) or isinstance(value, (classmethod, staticmethod, property))


MODEL_METHODS = sorted(
    name
    for name, value in vars(agents.Model).items()
    if not (name.startswith("__") and name.endswith("__")) and _is_method(value)
)
HOOKS = sorted(name for name in dir(RunHooksBase) if name.startswith("on_"))


def test_the_lists_are_the_sdk_interface() -> None:
    # not vacuous: the methods the run loop is known to call are in the lists
    assert {
        "get_response",
        "stream_response",
        "close",
        "get_retry_advice",
        "_cleanup_on_run_end",
    } <= set(MODEL_METHODS)
    assert {"on_llm_start", "on_llm_end", "on_tool_start", "on_tool_end", "on_handoff"} <= set(
        HOOKS
    )


@pytest.mark.parametrize("name", MODEL_METHODS)
def test_the_model_proxy_defines_every_model_method(name: str) -> None:
    assert issubclass(MeteredModel, agents.Model)
    own = vars(MeteredModel).get(name)
    assert own is not None, f"MeteredModel does not override agents.Model.{name}"
    assert own is not vars(agents.Model)[name]


@pytest.mark.parametrize("name", HOOKS)
def test_the_metering_hooks_define_every_run_hook(name: str) -> None:
    assert issubclass(MeterHooks, RunHooksBase)
    own = vars(MeterHooks).get(name)
    assert own is not None, f"{MeterHooks.__qualname__} does not override RunHooksBase.{name}"
    assert inspect.iscoroutinefunction(own)


class _QuietMeter:
    """A run meter with no limits and nothing tripped: every other call is a no-op."""

    tripped = None
    accounts = ()

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _Arg:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


def _recording_hooks() -> tuple[RunHooksBase[Any, Any], list[tuple[str, tuple[Any, ...]]]]:
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def record(name: str) -> Any:
        async def hook(self: Any, *args: Any) -> None:
            seen.append((name, args))

        return hook

    class RecordingHooks(agents.RunHooks[Any]):
        pass

    for name in HOOKS:
        setattr(RecordingHooks, name, record(name))
    return RecordingHooks(), seen


@pytest.mark.parametrize("name", HOOKS)
async def test_each_metering_hook_forwards_to_the_users_hook(name: str) -> None:
    user_hooks, seen = _recording_hooks()
    hooks = MeterHooks(_QuietMeter(), user_hooks)  # type: ignore[arg-type]
    params = list(inspect.signature(getattr(RunHooksBase, name)).parameters)[1:]  # no self
    args = tuple(_Arg(param) for param in params)
    await getattr(hooks, name)(*args)
    assert seen == [(name, args)]  # called once, with the very same arguments in order
