"""``AnthropicModel``'s options: construction errors, prompt caching, structured output,
the provider and token counts."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, ModelSettings, RunConfig, function_tool
from helpers.fake_anthropic import FakeAnthropic, Turn
from pydantic import BaseModel

import agentbudget as ab
from agentbudget.models import AnthropicModel, AnthropicProvider
from agentbudget.tokens import APPROXIMATION_FACTOR


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cache_control": "10m"}, "cache_control"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"thinking_budget": 512}, "at least 1024"),
        ({"thinking_budget": 9_000}, "below max_tokens"),
        ({"structured_output": "xml"}, "structured_output"),
        ({"structured_output": "tool", "thinking_budget": 2_048}, "thinking"),
        ({"client": object()}, "AsyncAnthropic"),
    ],
)
def test_bad_options_raise_configuration_error(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ab.ConfigurationError, match=message):
        AnthropicModel("claude-sonnet-4-5", **kwargs)
    with pytest.raises(ab.ConfigurationError):
        AnthropicModel("anthropic/")


def test_the_prefix_is_dropped_and_the_model_is_priced_by_its_name() -> None:
    model = AnthropicModel("anthropic/claude-sonnet-4-5", FakeAnthropic().client())
    assert model.model == "claude-sonnet-4-5"
    assert ab.PriceTable.default().lookup(model.model)[0] == "claude-sonnet-4-5"


async def test_cache_control_marks_the_system_prompt_and_the_last_tool() -> None:
    @function_tool
    def one(q: str) -> str:
        """One."""
        return q

    @function_tool
    def two(q: str) -> str:
        """Two."""
        return q

    server = FakeAnthropic([Turn(output_tokens=3)])
    agent = Agent(
        name="a",
        instructions="Long stable instructions.",
        model=server.model(cache_control="1h"),
        tools=[one, two],
    )
    await ab.Guard().run(agent, "hi")
    (body,) = server.requests
    marker = {"type": "ephemeral", "ttl": "1h"}
    assert body["system"][-1]["cache_control"] == marker
    assert "cache_control" not in body["tools"][0] and body["tools"][1]["cache_control"] == marker


async def test_model_settings_are_mapped_to_the_messages_api() -> None:
    @function_tool
    def lookup(q: str) -> str:
        """Look up."""
        return q

    server = FakeAnthropic([Turn(output_tokens=3)])
    settings = ModelSettings(
        temperature=0.2,
        top_p=0.9,
        tool_choice="required",
        parallel_tool_calls=False,
        max_tokens=700,
        extra_args={"top_k": 5},
    )
    agent = Agent(name="a", model=server.model(), tools=[lookup], model_settings=settings)
    await ab.Guard().run(agent, "hi")
    (body,) = server.requests
    assert (body["temperature"], body["top_p"], body["top_k"], body["max_tokens"]) == (
        0.2,
        0.9,
        5,
        700,
    )
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


class Answer(BaseModel):
    city: str
    population: int


async def test_structured_output_with_anthropics_json_schema_mode() -> None:
    server = FakeAnthropic([Turn(text='{"city": "Oslo", "population": 700000}')])
    agent = Agent(name="a", model=server.model(), output_type=Answer)
    result = await ab.Guard().run(agent, "hi")
    assert result.final_output == Answer(city="Oslo", population=700_000)
    fmt = server.requests[0]["output_config"]["format"]
    assert fmt["type"] == "json_schema" and set(fmt["schema"]["properties"]) == {
        "city",
        "population",
    }


@pytest.mark.parametrize("streamed", [False, True])
async def test_structured_output_through_a_forced_tool(streamed: bool) -> None:
    server = FakeAnthropic([Turn(final_tool_input={"city": "Oslo", "population": 7})])
    agent = Agent(name="a", model=server.model(structured_output="tool"), output_type=Answer)
    if streamed:
        result: Any = ab.Guard().run_streamed(agent, "hi")
        async for _ in result.stream_events():
            pass
    else:
        result = await ab.Guard().run(agent, "hi")
    assert result.final_output == Answer(city="Oslo", population=7)
    body = server.requests[0]
    assert body["tool_choice"] == {"type": "tool", "name": "final_output"}
    assert "output_config" not in body


async def test_the_provider_serves_anthropic_names_and_hands_on_the_rest() -> None:
    server = FakeAnthropic([Turn(output_tokens=4)])
    fallback_asked: list[str | None] = []

    class Fallback:
        def get_model(self, name: str | None) -> Any:
            fallback_asked.append(name)
            return server.model()

    provider = AnthropicProvider(server.client(), fallback=Fallback(), cache_control="5m")  # type: ignore[arg-type]
    model = provider.get_model("anthropic/claude-haiku-4-5")
    assert isinstance(model, AnthropicModel) and model.model == "claude-haiku-4-5"
    assert model.cache_control == "5m" and provider.get_model("claude-haiku-4-5") is model
    provider.get_model("gpt-4o")
    assert fallback_asked == ["gpt-4o"]
    agent = Agent(name="a", model="anthropic/claude-sonnet-4-5")
    result = await ab.Guard().run(agent, "hi", run_config=RunConfig(model_provider=provider))
    assert server.requests[0]["model"] == "claude-sonnet-4-5"
    assert ab.report_of(result).calls[0].price_key == "claude-sonnet-4-5"
    with pytest.raises(ab.ConfigurationError):
        AnthropicProvider(server.client(), thinking_budget=10)


# -- token counts -----------------------------------------------------------------------


async def test_count_tokens_asks_the_api_once_per_content_when_opted_in() -> None:
    server = FakeAnthropic(count=4_321)
    model = server.model(count_tokens=True)
    first = await model.count_input_tokens("Be brief.", "What is 2+2?")
    again = await model.count_input_tokens("Be brief.", "What is 2+2?")
    assert (first.tokens, first.approximate, again.tokens) == (4_321, False, 4_321)
    assert len(server.counted) == 1
    assert server.counted[0]["system"] == [{"type": "text", "text": "Be brief."}]
    assert "max_tokens" not in server.counted[0]
    await model.count_input_tokens("Be brief.", "What is 3+3?")
    assert len(server.counted) == 2


async def test_without_opting_in_the_count_is_an_offline_estimate() -> None:
    server = FakeAnthropic()
    model = server.model()
    estimate = await model.count_input_tokens(None, "word" + " word" * 99)
    assert estimate.approximate and server.counted == []
    # o200k_base tokens (100 + framing) times the documented factor for Claude
    assert estimate.tokens >= 100 * APPROXIMATION_FACTOR["anthropic"]
