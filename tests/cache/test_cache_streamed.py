"""Streamed runs and the response cache: a hit replays stream events like a live run's."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent
from pydantic import BaseModel

import agentbudget as ab
from agentbudget.testing import reply, scripted_model

QUESTION = "What is the capital of France?"


def answering(*texts: str) -> Any:
    return scripted_model(
        "gpt-4o", [reply(t, input_tokens=1_000, output_tokens=100) for t in texts]
    )


def shape(event: Any) -> tuple[str, str | None]:
    kind = type(event).__name__
    detail = getattr(event, "name", None)
    data = getattr(event, "data", None)
    if data is not None:
        detail = getattr(data, "type", None)
    if kind == "AgentUpdatedStreamEvent":
        detail = event.new_agent.name
    return kind, detail


async def consume(result: Any) -> tuple[list[tuple[str, str | None]], str]:
    shapes, text = [], ""
    async for event in result.stream_events():
        shapes.append(shape(event))
        data = getattr(event, "data", None)
        if getattr(data, "type", None) == "response.output_text.delta":
            text += data.delta
    return shapes, text


async def test_a_streamed_hit_replays_the_events_of_a_live_run() -> None:
    live_model = answering("Paris is the capital.")
    live = await consume(ab.Guard().run_streamed(Agent(name="geo", model=live_model), QUESTION))

    model = answering("Paris is the capital.", "never sent")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    first = guard.run_streamed(agent, QUESTION, user="u")
    stored = await consume(first)
    hit = guard.run_streamed(agent, QUESTION, user="u")
    replayed = await consume(hit)

    assert len(model.calls) == 1
    assert replayed == stored == live
    assert replayed[1] == "Paris is the capital."
    assert hit.final_output == first.final_output == "Paris is the capital."
    report = ab.report_of(hit)
    assert report.cache_hit and report.calls == () and report.cost_usd == 0
    assert report.saved_usd == ab.report_of(first).cost_usd > 0
    assert hit.is_complete


async def test_streamed_and_plain_runs_share_entries() -> None:
    model = answering("Paris.")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache())
    await guard.run(agent, QUESTION, user="u")
    streamed = guard.run_streamed(agent, QUESTION, user="u")
    _, text = await consume(streamed)
    assert text == "Paris." and len(model.calls) == 1

    model = answering("Lyon.")
    agent = Agent(name="geo", model=model)
    streamed = guard.run_streamed(agent, "second city?", user="u")
    await consume(streamed)
    plain = await guard.run(agent, "second city?", user="u")
    assert plain.final_output == "Lyon." and ab.report_of(plain).cache_hit


class Capital(BaseModel):
    city: str


async def test_a_streamed_hit_validates_structured_output_like_a_live_run() -> None:
    model = answering('{"city": "Paris"}')
    agent = Agent(name="geo", model=model, output_type=Capital)
    guard = ab.Guard(cache=ab.ResponseCache())
    await guard.run(agent, QUESTION, user="u")
    hit = guard.run_streamed(agent, QUESTION, user="u")
    await consume(hit)
    assert hit.final_output == Capital(city="Paris") and len(model.calls) == 1


async def test_a_streamed_hit_counts_against_no_limit() -> None:
    model = answering("Paris.")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=ab.ResponseCache(), limits=ab.Limits(max_llm_calls=1))
    async with ab.budget(max_llm_calls=1) as scope:
        await guard.run(agent, QUESTION, user="u")
        for _ in range(2):
            await consume(guard.run_streamed(agent, QUESTION, user="u"))
    assert scope.llm_calls == 1 and [r.cache_hit for r in scope.reports] == [False, True, True]


async def test_async_dynamic_instructions_bypass_the_cache_for_streamed_runs() -> None:
    async def instructions(ctx: Any, agent: Agent[Any]) -> str:
        return "Be brief."

    model = answering("a", "b")
    agent = Agent(name="geo", model=model, instructions=instructions)
    guard = ab.Guard(cache=ab.ResponseCache())
    await guard.run(agent, QUESTION, user="u")
    streamed = guard.run_streamed(agent, QUESTION, user="u")
    await consume(streamed)
    assert len(model.calls) == 2 and streamed.final_output == "b"


async def test_a_sqlite_store_serves_streamed_hits(tmp_path: Any) -> None:
    cache = ab.ResponseCache(f"sqlite:///{tmp_path}/cache.db")
    model = answering("Paris.")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=cache)
    await guard.run(agent, QUESTION, user="u")
    cache.flush()
    hit = guard.run_streamed(agent, QUESTION, user="u")
    _, text = await consume(hit)
    assert text == "Paris." and ab.report_of(hit).cache_hit and len(model.calls) == 1
    cache.close()


@pytest.mark.redis
async def test_a_redis_store_serves_streamed_hits(redis_prefix: str) -> None:
    from helpers.cache_support import REDIS_URL

    from agentbudget.cache import RedisCacheStore

    cache = ab.ResponseCache(RedisCacheStore(REDIS_URL, prefix=redis_prefix))
    model = answering("Paris.", "never")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=cache)
    await guard.run(agent, QUESTION, user="u")
    cache.flush()
    hit = guard.run_streamed(agent, QUESTION, user="u")
    _, text = await consume(hit)
    assert text == "Paris." and ab.report_of(hit).cache_hit and len(model.calls) == 1
    cache.close()


@pytest.mark.redis
async def test_a_redis_store_can_skip_the_read_of_streamed_runs(redis_prefix: str) -> None:
    from helpers.cache_support import REDIS_URL

    from agentbudget.cache import RedisCacheStore

    store = RedisCacheStore(REDIS_URL, prefix=redis_prefix, streamed_read_timeout_s=None)
    cache = ab.ResponseCache(store)
    model = answering("Paris.", "Paris!", "never")
    agent = Agent(name="geo", model=model)
    guard = ab.Guard(cache=cache)
    await guard.run(agent, QUESTION, user="u")
    cache.flush()
    live = guard.run_streamed(agent, QUESTION, user="u")
    _, text = await consume(live)
    assert text == "Paris!" and not ab.report_of(live).cache_hit
    hit = await guard.run(agent, QUESTION, user="u")
    assert ab.report_of(hit).cache_hit and len(model.calls) == 2
    cache.close()


def test_a_streamed_lookup_of_an_unreachable_redis_is_a_bounded_miss() -> None:
    import socket
    import time

    from agentbudget.cache import RedisCacheStore

    with socket.socket() as listener:  # accepts connections, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        store = RedisCacheStore(f"redis://127.0.0.1:{port}/0", streamed_read_timeout_s=0.05)
        started = time.perf_counter()
        with pytest.raises(ab.StoreUnavailable):
            store.get_now("k")
        assert time.perf_counter() - started < 1.0
        store.close()
    with pytest.raises(ab.ConfigurationError, match="streamed_read_timeout_s"):
        RedisCacheStore("redis://127.0.0.1:6379/0", streamed_read_timeout_s=0)


async def test_a_nested_agent_as_tool_run_is_not_cached_on_its_own() -> None:
    from agentbudget.testing import tool_call

    inner_model = answering("inner 1", "inner 2")
    inner = Agent(name="inner", model=inner_model)
    outer_model = scripted_model(
        "gpt-4o",
        [tool_call("ask_inner", {"input": "x"}), reply("outer 1")] * 2,
    )
    outer = Agent(
        name="outer",
        model=outer_model,
        tools=[inner.as_tool(tool_name="ask_inner", tool_description="Ask.")],
    )
    guard = ab.Guard(cache=ab.ResponseCache())
    for _ in range(2):
        await guard.run(outer, QUESTION, user="u")
    assert len(inner_model.calls) == 2  # the nested run asked its model both times
