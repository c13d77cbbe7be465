"""A governed run behaves as the bare SDK run: the divergences the SDK's own suite found.

Each test drives the SDK through ``Runner`` inside a generous ``budget()`` scope (no limit
can trip) and asserts what the bare SDK does. ``nox -s sdk_suite`` runs the SDK's whole
Runner suite the same way.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest
from agents import Agent, AgentHooks, RunHooks, Runner
from agents.models.interface import Model
from agents.testing import ModelStep
from agents.usage import Usage
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

import agentbudget as ab
from agentbudget.testing import handoff_call, long_stream, reply, scripted_model

GENEROUS: dict[str, Any] = {
    "max_tool_calls": 1_000,
    "max_llm_calls": 1_000,
    "max_tokens": 10**9,
    "max_cost_usd": "1000",
    "max_seconds": 3600,
}


def answering(text: str = "hi", model: str = "gpt-4o") -> Agent[Any]:
    return Agent(name="a", model=scripted_model(model, [reply(text)]))


# -- 1. hooks are validated by the SDK, not wrapped first --------------------------------------


async def test_agent_hooks_as_run_hooks_get_the_sdks_type_error() -> None:
    with pytest.raises(TypeError) as bare:
        await Runner.run(answering(), "q", hooks=AgentHooks())  # type: ignore[arg-type]
    async with ab.budget(**GENEROUS) as scope:
        with pytest.raises(TypeError) as governed:
            await Runner.run(answering(), "q", hooks=AgentHooks())  # type: ignore[arg-type]
    assert str(governed.value) == str(bare.value)
    assert "Run hooks must be instances of RunHooks" in str(bare.value)
    assert scope.reports[0].outcome == "error"


def test_agent_hooks_on_run_streamed_outside_a_loop_get_the_sdks_type_error() -> None:
    with pytest.raises(TypeError) as bare:
        Runner.run_streamed(answering(), "q", hooks=AgentHooks())  # type: ignore[arg-type]
    with ab.budget(**GENEROUS), pytest.raises(TypeError) as governed:
        Runner.run_streamed(answering(), "q", hooks=AgentHooks())  # type: ignore[arg-type]
    assert str(governed.value) == str(bare.value)


async def test_user_run_hooks_are_still_called_and_tools_counted() -> None:
    seen: list[str] = []

    class Hooks(RunHooks[Any]):
        async def on_agent_start(self, context: Any, agent: Agent[Any]) -> None:
            seen.append(agent.name)

    async with ab.budget(**GENEROUS) as scope:
        await Runner.run(answering(), "q", hooks=Hooks())
    assert seen == ["a"] and scope.llm_calls == 1


# -- 2. the model stream is closed in the task that iterates it --------------------------------


class TaskRecordingModel(Model):
    """Streams from ``inner`` and records the task that starts and the task that finalizes
    its generator."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.model = getattr(inner, "model", "gpt-4o")
        self.started: asyncio.Task[Any] | None = None
        self.finalized: asyncio.Task[Any] | None = None

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        return await self.inner.get_response(*args, **kwargs)

    async def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        self.started = asyncio.current_task()
        try:
            async for event in self.inner.stream_response(*args, **kwargs):
                yield event
        finally:
            self.finalized = asyncio.current_task()


async def test_a_stream_cut_short_is_finalized_in_its_own_task() -> None:
    # the scope's output limit stops the stream mid-way: the inner generator is closed early
    model = TaskRecordingModel(scripted_model("gpt-4o", [long_stream(400)]))
    agent = Agent(name="a", model=model)
    async with ab.budget(max_output_tokens=50):
        streamed = Runner.run_streamed(agent, "q")
        with pytest.raises(ab.TokenLimitExceeded):
            async for _ in streamed.stream_events():
                pass
    assert model.started is not None and model.finalized is model.started


# -- 3. _cleanup_on_run_end reaches the real model, once per model per run ---------------------


class CleanupCounting:
    """Counts ``_cleanup_on_run_end`` calls of a scripted model."""

    def __init__(self, model: Model) -> None:
        self.calls: list[object] = []
        self.model = model

        async def cleanup(owner: object) -> None:
            self.calls.append(owner)

        model._cleanup_on_run_end = cleanup  # type: ignore[method-assign]


def two_agents_sharing_a_model() -> tuple[Agent[Any], CleanupCounting]:
    second = Agent(name="second")
    shared = scripted_model("gpt-4o", [handoff_call(second), reply("done")])
    second.model = shared
    first = Agent(name="first", model=shared, handoffs=[second])
    return first, CleanupCounting(shared)


@pytest.mark.parametrize("streamed", [False, True])
async def test_cleanup_reaches_a_shared_model_once_per_run(streamed: bool) -> None:
    async def run(agent: Agent[Any]) -> None:
        if streamed:
            result = Runner.run_streamed(agent, "q")
            async for _ in result.stream_events():
                pass
        else:
            await Runner.run(agent, "q")

    bare_agent, bare = two_agents_sharing_a_model()
    await run(bare_agent)
    governed_agent, governed = two_agents_sharing_a_model()
    async with ab.budget(**GENEROUS) as scope:
        await run(governed_agent)
    assert len(bare.calls) == 1
    assert len(governed.calls) == 1  # two agents, two proxies, one model: one cleanup
    assert scope.llm_calls == 2


async def test_cleanup_reaches_a_model_swapped_in_by_downgrade() -> None:
    cheap = scripted_model("gpt-4o-mini", [reply("cheap answer", output_tokens=10)])
    counting = CleanupCounting(cheap)
    pricey = scripted_model("gpt-4o", [reply("pricey answer")])
    pricey_cleanup = CleanupCounting(pricey)
    budgets = ab.Budgets(
        store="memory://",
        allowances=[ab.Allowance(per="global", window="day", usd="0.0001")],
        on_exhausted=[ab.Downgrade(cheap)],
    )
    from agents import ModelSettings

    agent = Agent(name="a", model=pricey, model_settings=ModelSettings(max_tokens=100))
    result = await ab.Guard(budgets=budgets).run(agent, "q")
    assert result.final_output == "cheap answer"
    assert len(counting.calls) == 1
    assert len(pricey_cleanup.calls) == 1
    await budgets.close()


# -- 4. an exception whose __str__ raises ------------------------------------------------------


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ failed")


class FailingModel(Model):
    model = "gpt-4o"

    async def get_response(self, *args: Any, **kwargs: Any) -> Any:
        raise Unprintable()

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError


async def test_an_unprintable_exception_reaches_the_caller_unchanged() -> None:
    agent = Agent(name="a", model=FailingModel())
    with pytest.raises(Unprintable):
        await Runner.run(agent, "q")
    async with ab.budget(**GENEROUS) as scope:
        with pytest.raises(Unprintable):
            await Runner.run(agent, "q")
    (report,) = scope.reports
    assert report.outcome == "error"
    assert report.error is not None and report.error.startswith("Unprintable: ")


# -- 5. nothing of the run is held after it ---------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_the_agent_is_released_after_a_governed_run(streamed: bool) -> None:
    # the SDK's test_agent_memory_leak, under a scope with a watchdog (max_seconds)
    async def run(agent: Agent[Any]) -> None:
        if streamed:
            result = Runner.run_streamed(agent, "What is the capital of France?")
            async for _ in result.stream_events():
                pass
        else:
            await Runner.run(agent, "What is the capital of France?")

    agent = answering("Paris")
    agent_ref = weakref.ref(agent)
    model_ref = weakref.ref(agent.model)  # type: ignore[arg-type]
    async with ab.budget(**GENEROUS) as scope:
        await run(agent)
        # a streamed run's report is filed by a done callback, a loop turn or two later
        while not scope.reports:  # noqa: ASYNC110
            await asyncio.sleep(0)
        del agent
        gc.collect()
        assert agent_ref() is None
        assert model_ref() is None
    assert scope.llm_calls == 1


# -- 6. run_config given as a dict ------------------------------------------------------------


async def test_run_config_as_a_dict_under_a_dollar_limit() -> None:
    mini = scripted_model("gpt-4o-mini", [reply("from mini")])
    async with ab.budget(max_cost_usd="1") as scope:
        plain = await Runner.run(answering(), "q", run_config={"workflow_name": "w"})
        routed = await Runner.run(answering(), "q", run_config={"model": mini})
    assert plain.final_output == "hi" and routed.final_output == "from mini"
    assert [r.calls[0].model for r in scope.reports] == ["gpt-4o", "gpt-4o-mini"]
    assert all(r.cost_usd > 0 for r in scope.reports)


async def test_run_config_dict_with_an_unpriced_model_fails_closed_before_the_call() -> None:
    unknown = scripted_model("no-such-model-xyz", [reply("x")])
    async with ab.budget(max_cost_usd="1"):
        with pytest.raises(ab.UnknownModelError):
            await Runner.run(answering(), "q", run_config={"model": "no-such-model-xyz"})
    assert unknown.calls == ()


# -- 7. usage shapes the SDK accepts -----------------------------------------------------------


def odd_usage(**fields: Any) -> Usage:
    """A ``Usage`` as the SDK builds it from a provider's null total (``None or 0``) beside
    non-zero details."""
    return Usage(requests=1, **fields)


@pytest.mark.parametrize(
    "usage",
    [
        odd_usage(
            input_tokens=0,
            input_tokens_details=InputTokensDetails.model_validate(
                {"cached_tokens": 40, "cache_write_tokens": 0}
            ),
            output_tokens=5,
        ),
        odd_usage(
            input_tokens=30,
            output_tokens=0,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=12),
        ),
    ],
    ids=["null-input-with-cached", "null-output-with-reasoning"],
)
async def test_null_totals_with_details_do_not_fail_the_run(usage: Usage) -> None:
    from agents.testing import assistant_message

    step = ModelStep(output=[assistant_message("ok", item_id="m1")], usage=usage)
    agent = Agent(name="a", model=scripted_model("gpt-4o", [step]))
    async with ab.budget(**GENEROUS) as scope:
        result = await Runner.run(agent, "q")
    assert result.final_output == "ok"
    (call,) = scope.reports[0].calls
    # never priced below the details the provider reported
    assert call.input_tokens >= call.cached_input_tokens
    assert call.output_tokens >= call.reasoning_tokens
    assert call.cached_input_tokens + call.reasoning_tokens in (40, 12)
