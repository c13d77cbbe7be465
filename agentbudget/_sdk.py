"""Every private Agents SDK internal agentbudget relies on, in one place, each with its reason.

agentbudget governs runs by replacing three SDK functions while instrumented (``install``
/ ``uninstall``), reads two private fields of a streamed run's result, and reads the
paid response the SDK drops when it turns one into an error. None of these is public
API, so agentbudget declares the ``openai-agents`` releases it is tested with
(``SDK_RANGE``, also in ``pyproject.toml``) and ``check_sdk`` raises
``ConfigurationError`` on an SDK that lacks one of them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from agents.result import RunResultStreaming
from agents.run import AgentRunner

from .errors import ConfigurationError

try:  # a private module: check_sdk() says which SDK versions have it
    from agents.run_internal import run_loop
except ImportError:  # pragma: no cover - older or newer SDKs
    run_loop = None  # type: ignore[assignment]

try:  # optional: an SDK without server-side compaction has nothing to meter there
    from agents.memory.openai_responses_compaction_session import (
        OpenAIResponsesCompactionSession,
    )
except ImportError:  # pragma: no cover - older SDKs
    OpenAIResponsesCompactionSession = None  # type: ignore[assignment,misc]

__all__ = [
    "SDK_RANGE",
    "check_sdk",
    "install",
    "installed",
    "original",
    "paid_response_locals",
    "provider_retries_disabled",
    "run_task",
    "store_exception",
    "stored_exception",
    "uninstall",
]

SDK_RANGE = ">=0.21,<0.25"
"""The ``openai-agents`` releases agentbudget is tested with (``pyproject.toml`` declares it)."""

_lock = threading.Lock()
_installed: dict[str, Any] = {}
# What the SDK had when agentbudget was imported: a run still in flight when
# uninstall() is called keeps working with these.
_sdk: dict[str, Any] = {
    "run": AgentRunner.__dict__.get("run"),
    "run_streamed": AgentRunner.__dict__.get("run_streamed"),
    "get_model": getattr(run_loop, "get_model", None),
}


def internals() -> list[tuple[str, bool]]:
    """Each private SDK internal agentbudget relies on, and whether this SDK has it."""
    fields = getattr(RunResultStreaming, "__dataclass_fields__", {})
    return [
        # Runner.run, run_sync and run_streamed all go through these: a governed run
        # starts here (and an ungoverned one goes straight on, untouched).
        ("agents.run.AgentRunner.run", callable(AgentRunner.__dict__.get("run"))),
        ("agents.run.AgentRunner.run_streamed", callable(AgentRunner.__dict__.get("run_streamed"))),
        # The run loop resolves each agent's model here. The proxy that meters each call
        # goes in here rather than through a ModelProvider, because a Model instance set
        # on an agent or a RunConfig bypasses the provider.
        (
            "agents.run_internal.run_loop.get_model",
            callable(getattr(run_loop, "get_model", None)),
        ),
        # A streamed run that trips its time limit stores the error where the SDK raises
        # it from stream_events() (there is no public way to fail a stream with an error).
        ("agents.result.RunResultStreaming._stored_exception", "_stored_exception" in fields),
        # A streamed run's report is filed when the task that runs its loop finishes.
        ("agents.result.RunResultStreaming.run_loop_task", "run_loop_task" in fields),
    ]


def optional_internals() -> list[tuple[str, bool]]:
    """Private internals agentbudget uses when present (an SDK without them still works;
    the feature they serve is then not metered)."""
    session = OpenAIResponsesCompactionSession
    return [
        # The compaction session calls responses.compact on this client itself.
        (
            "agents.memory.openai_responses_compaction_session."
            "OpenAIResponsesCompactionSession.client",
            session is not None and isinstance(session.__dict__.get("client"), property),
        ),
    ]


def check_sdk() -> None:
    """Raise ``ConfigurationError`` when the installed SDK lacks an internal agentbudget patches.

    Raises:
        ConfigurationError: naming the missing internal and the installed SDK version.
    """
    missing = [name for name, present in internals() if not present]
    if missing:
        raise ConfigurationError(
            f"agentbudget cannot govern runs with openai-agents {sdk_version()}: it has no "
            f"{', '.join(missing)}. agentbudget is tested with openai-agents{SDK_RANGE}; "
            f'install one of those (pip install "openai-agents{SDK_RANGE}").'
        )


def sdk_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("openai-agents")
    except PackageNotFoundError:  # pragma: no cover - a vendored SDK
        return "(unknown version)"


def install(
    run: Callable[..., Any],
    run_streamed: Callable[..., Any],
    get_model: Callable[..., Any],
    compaction_client: Callable[[Any], Any] | None = None,
) -> None:
    """Replace ``AgentRunner.run``, ``AgentRunner.run_streamed`` and the run loop's
    ``get_model``; with ``compaction_client``, also wrap the client that
    ``OpenAIResponsesCompactionSession`` calls ``responses.compact`` on (its ``client``
    property: the session calls the API itself, not through a ``Model``, so its calls
    would escape metering). Idempotent (a second call changes nothing).

    Raises:
        ConfigurationError: the SDK lacks one of the internals (see ``check_sdk``).
    """
    if _installed:
        return  # Guard.run asks on every run: no lock once installed
    with _lock:
        if _installed:
            return
        check_sdk()
        _installed["run"] = AgentRunner.__dict__["run"]
        _installed["run_streamed"] = AgentRunner.__dict__["run_streamed"]
        _installed["get_model"] = run_loop.get_model
        AgentRunner.run = run  # type: ignore[method-assign]
        AgentRunner.run_streamed = run_streamed  # type: ignore[method-assign]
        run_loop.get_model = get_model
        session = OpenAIResponsesCompactionSession
        original = None if session is None else session.__dict__.get("client")
        if compaction_client is not None and isinstance(original, property):
            getter = original.fget
            assert getter is not None
            _installed["compaction_client"] = original
            session.client = property(  # type: ignore[method-assign,assignment]
                lambda self: compaction_client(getter(self)), doc=original.__doc__
            )


def uninstall() -> None:
    """Restore exactly what ``install`` replaced. Idempotent."""
    with _lock:
        if not _installed:
            return
        AgentRunner.run = _installed.pop("run")  # type: ignore[method-assign]
        AgentRunner.run_streamed = _installed.pop("run_streamed")  # type: ignore[method-assign]
        run_loop.get_model = _installed.pop("get_model")
        if "compaction_client" in _installed:
            session = OpenAIResponsesCompactionSession
            session.client = _installed.pop("compaction_client")  # type: ignore[method-assign]


def installed() -> bool:
    return bool(_installed)


def original(name: str) -> Any:
    """The SDK's own ``run``, ``run_streamed`` or ``get_model`` (the one ``install``
    replaced, or the one there at import when not installed)."""
    return _installed.get(name, _sdk[name])


# -- a streamed run's result ------------------------------------------------------------


def stored_exception(result: RunResultStreaming) -> BaseException | None:
    """The error a streamed run's ``stream_events()`` raises, if one is stored."""
    return getattr(result, "_stored_exception", None)


def store_exception(result: RunResultStreaming, error: BaseException) -> None:
    """Make ``stream_events()`` raise ``error`` (unless the run stored its own first)."""
    if getattr(result, "_stored_exception", None) is None:
        result._stored_exception = error


def run_task(result: RunResultStreaming) -> asyncio.Task[Any]:
    """The task that runs a streamed run's loop."""
    task: asyncio.Task[Any] = result.run_loop_task  # type: ignore[assignment]
    return task


# -- the paid response behind a ModelBehaviorError ----------------------------------------


def paid_response_locals(exc: BaseException) -> list[dict[str, Any]]:
    """The local variables of each frame ``exc`` passed through, innermost last.

    The SDK raises ``ModelBehaviorError`` for a Responses response that ended
    ``incomplete`` or ``failed`` and for a Chat Completions answer cut by ``length`` with
    nothing in it, without keeping the response. That response was paid for; its usage is
    still in the frame that raised, so the interceptor reads it from here.
    """
    frames: list[dict[str, Any]] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_locals)
        tb = tb.tb_next
    return frames


# -- provider-managed retries ----------------------------------------------------------------


def provider_retries_disabled() -> bool:
    """Whether the SDK's runner is retrying the current model call itself.

    The SDK's own model classes then build their client with ``max_retries=0`` (so a
    call is not retried by two layers); ``AnthropicModel`` does the same. The flag lives
    in a private module (``agents.models._retry_runtime``); without it, False.
    """
    try:
        from agents.models._retry_runtime import should_disable_provider_managed_retries
    except ImportError:  # pragma: no cover - older or newer SDKs
        return False
    return bool(should_disable_provider_managed_retries())
