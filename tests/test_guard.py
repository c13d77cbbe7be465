"""Guard.run / run_sync / run_streamed: the cost of every run, transparently."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, RunConfig, RunContextWrapper, RunHooks, Runner, function_tool
from agents.result import RunResult

import agentbudget as ab
from agentbudget.testing import handoff_call, long_stream, reply, scripted_model, tool_call

executed: list[str] = []


@function_tool
def lookup(q: str) -> str:
    """Look something up."""
    executed.append(q)
    return f"result for {q}"


def handoff_agents() -> tuple[Agent[Any], Agent[Any]]:
    mini = Agent(
        name="mini",
        model=scripted_model(
            "gpt-4o-mini",
            [reply("done", input_tokens=3_000, output_tokens=70, cached_input_tokens=1_000)],
        ),
    )
    main = Agent(
        name="main",
        tools=[lookup],
        handoffs=[mini],
        model=scripted_model(
            "gpt-4o",
            [
                tool_call("lookup", {"q": "x"}, input_tokens=1_000, output_tokens=20),
                handoff_call(mini, input_tokens=1_234, output_tokens=17),
            ],
        ),
    )
    return main, mini


async def test_handoff_run_is_priced_per_model_to_the_nano_dollar() -> None:
    main, _ = handoff_agents()
    result = await ab.Guard().run(main, "hi", user="u-1")
    report = ab.report_of(result)
    assert [(c.agent, c.model) for c in report.calls] == [
        ("main", "gpt-4o"),
        ("main", "gpt-4o"),
        ("mini", "gpt-4o-mini"),
    ]
    # gpt-4o: 1000*2.50 + 20*10 = 2,700 ; 1234*2.50 + 17*10 = 3,255 (USD per 1M tokens)
    # gpt-4o-mini: 2000*0.15 + 1000*0.075 + 70*0.60 = 417
    assert [c.cost_usd for c in report.calls] == [
        Decimal("0.002700000"),
        Decimal("0.003255000"),
        Decimal("0.000417000"),
    ]
    assert report.cost_usd == Decimal("0.006372000")
    assert report.cost_usd == sum(c.cost_usd for c in report.calls if c.cost_usd)
    assert report.cost_by_model() == {
        "gpt-4o": Decimal("0.005955000"),
        "gpt-4o-mini": Decimal("0.000417000"),
    }
    assert (report.input_tokens, report.output_tokens) == (5_234, 107)
    assert report.tool_calls == 1 and report.tool_names == ("lookup",)
    assert report.user == "u-1" and report.agent == "main" and report.outcome == "completed"


async def test_handoff_gpt_4o_to_gpt_4o_mini_two_calls_exact_sum() -> None:
    mini = Agent(
        name="mini",
        model=scripted_model(
            "gpt-4o-mini",
            [reply("bye", input_tokens=2_345, output_tokens=67, cached_input_tokens=1_024)],
        ),
    )
    start = Agent(
        name="start",
        handoffs=[mini],
        model=scripted_model("gpt-4o", [handoff_call(mini, input_tokens=1_111, output_tokens=13)]),
    )
    report = ab.report_of(await ab.Guard().run(start, "hi"))
    first, second = report.calls
    assert (first.model, second.model) == ("gpt-4o", "gpt-4o-mini")
    # 1111 x 2.50 + 13 x 10.00 = 2,907.5 USD per 1M tokens -> $0.0029075
    assert first.cost_usd == Decimal("0.002907500")
    # (2345 - 1024) x 0.15 + 1024 x 0.075 + 67 x 0.60 = 198.15 + 76.8 + 40.2 = 315.15
    assert second.cost_usd == Decimal("0.000315150")
    assert report.cost_usd == first.cost_usd + second.cost_usd == Decimal("0.003222650")


async def test_guarded_result_is_what_runner_returns() -> None:
    plain_main, _ = handoff_agents()
    plain = await Runner.run(plain_main, "hi")
    guarded_main, _ = handoff_agents()
    guarded = await ab.Guard(limits=ab.Limits(max_tool_calls=3)).run(guarded_main, "hi")
    assert type(guarded) is type(plain) is RunResult
    assert guarded.final_output == plain.final_output
    assert guarded.last_agent.name == plain.last_agent.name
    assert [type(i).__name__ for i in guarded.new_items] == [
        type(i).__name__ for i in plain.new_items
    ]
    assert guarded.context_wrapper.usage.total_tokens == plain.context_wrapper.usage.total_tokens


async def test_plain_runner_outside_any_scope_is_untouched() -> None:
    ab.instrument()
    main, _ = handoff_agents()
    result = await Runner.run(main, "hi")
    with pytest.raises(LookupError):
        ab.report_of(result)
    # the model saw the SDK's own settings: no output bound was added
    assert main.model.calls[0].model_settings.max_tokens is None  # type: ignore[union-attr]


def test_instrument_is_idempotent_and_reversible() -> None:
    from agents.run import AgentRunner
    from agents.run_internal import run_loop

    before = (AgentRunner.__dict__["run"], AgentRunner.__dict__["run_streamed"], run_loop.get_model)
    ab.instrument()
    ab.instrument()
    assert AgentRunner.__dict__["run"] is not before[0]
    ab.uninstrument()
    ab.uninstrument()
    assert (
        AgentRunner.__dict__["run"],
        AgentRunner.__dict__["run_streamed"],
        run_loop.get_model,
    ) == before


class RecordingHooks(RunHooks[Any]):
    def __init__(self) -> None:
        self.events: list[str] = []

    async def on_llm_start(
        self, context: RunContextWrapper[Any], agent: Agent[Any], *a: Any
    ) -> None:
        self.events.append(f"llm_start:{agent.name}")

    async def on_llm_end(self, context: RunContextWrapper[Any], agent: Agent[Any], r: Any) -> None:
        self.events.append(f"llm_end:{agent.name}")

    async def on_tool_start(self, context: Any, agent: Any, tool: Any) -> None:
        self.events.append(f"tool_start:{tool.name}")

    async def on_tool_end(self, context: Any, agent: Any, tool: Any, result: Any) -> None:
        self.events.append(f"tool_end:{tool.name}")

    async def on_handoff(self, context: Any, from_agent: Any, to_agent: Any) -> None:
        self.events.append(f"handoff:{to_agent.name}")

    async def on_agent_start(self, context: Any, agent: Any) -> None:
        self.events.append(f"agent_start:{agent.name}")

    async def on_agent_end(self, context: Any, agent: Any, output: Any) -> None:
        self.events.append(f"agent_end:{agent.name}")


async def test_user_hooks_are_still_called() -> None:
    plain_hooks, guarded_hooks = RecordingHooks(), RecordingHooks()
    await Runner.run(handoff_agents()[0], "hi", hooks=plain_hooks)
    await ab.Guard().run(handoff_agents()[0], "hi", hooks=guarded_hooks)
    assert guarded_hooks.events == plain_hooks.events
    assert "tool_start:lookup" in guarded_hooks.events and "handoff:mini" in guarded_hooks.events


def test_run_sync(close_sdk_loop: None) -> None:
    main, _ = handoff_agents()
    result = ab.Guard().run_sync(main, "hi")
    assert result.final_output == "done"
    assert ab.report_of(result).cost_usd == Decimal("0.006372000")


async def test_run_streamed_report() -> None:
    agent = Agent(name="s", model=scripted_model("gpt-4o", [long_stream(300, input_tokens=40)]))
    streamed = ab.Guard().run_streamed(agent, "hi")
    # before the stream is consumed the run is still going: its report says so
    assert ab.report_of(streamed).outcome == "running"
    deltas = [
        e
        async for e in streamed.stream_events()
        if e.type == "raw_response_event" and e.data.type == "response.output_text.delta"
    ]
    assert len(deltas) == 300
    report = ab.report_of(streamed)
    assert report.outcome == "completed" and report.calls[0].streamed
    assert (report.input_tokens, report.output_tokens) == (40, 300)
    assert report.cost_usd == Decimal("0.003100000")  # 40*2.50 + 300*10


async def test_model_instance_priced_by_its_model_attribute_and_run_config_model() -> None:
    agent = Agent(
        name="a",
        model=scripted_model("claude-haiku-4-5", [reply("x", input_tokens=10, output_tokens=10)]),
    )
    report = ab.report_of(await ab.Guard().run(agent, "hi"))
    assert report.calls[0].model == "claude-haiku-4-5"
    assert report.calls[0].cost_usd == Decimal("0.000060000")
    # RunConfig(model=...) overrides every agent's model, and is priced as such
    override = scripted_model("gpt-4o-mini", [reply("y", input_tokens=1_000, output_tokens=0)])
    agent2 = Agent(name="b", model=scripted_model("gpt-4o", []))
    report2 = ab.report_of(await ab.Guard().run(agent2, "hi", run_config=RunConfig(model=override)))
    assert report2.calls[0].model == "gpt-4o-mini"
    assert report2.calls[0].cost_usd == Decimal("0.000150000")


async def test_unpriced_model_without_dollar_limit_runs_and_is_marked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = Agent(
        name="a",
        model=scripted_model("my-local-llm", [reply("x", input_tokens=5, output_tokens=5)]),
    )
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        result = await ab.Guard(limits=ab.Limits(max_tool_calls=3)).run(agent, "hi")
    report = ab.report_of(result)
    assert report.calls[0].cost_usd is None and report.calls[0].price_key is None
    # every call unpriced: the run's cost is unknown, not $0
    assert report.unpriced_calls == 1 and report.cost_usd is None
    assert "my-local-llm" in caplog.text
    assert ab.RunReport.model_validate_json(report.model_dump_json()) == report


async def test_a_run_with_priced_and_unpriced_calls_sums_the_priced_ones() -> None:
    local = Agent(
        name="local",
        model=scripted_model("my-local-llm", [reply("x", input_tokens=5, output_tokens=5)]),
    )
    start = Agent(
        name="s",
        handoffs=[local],
        model=scripted_model("gpt-4o", [handoff_call(local, input_tokens=100, output_tokens=0)]),
    )
    report = ab.report_of(await ab.Guard().run(start, "hi"))
    assert report.unpriced_calls == 1 and report.cost_usd == Decimal("0.000250000")


async def test_unpriced_model_under_dollar_limit_fails_before_any_call() -> None:
    model = scripted_model("my-local-llm", [reply("x")])
    agent = Agent(name="a", model=model)
    with pytest.raises(ab.UnknownModelError, match="my-local-llm"):
        await ab.Guard(limits=ab.Limits(max_cost_usd="1")).run(agent, "hi")
    assert model.calls == ()


async def test_handoff_to_unpriced_model_under_dollar_limit_fails_before_its_call() -> None:
    target_model = scripted_model("my-local-llm", [reply("x")])
    target = Agent(name="t", model=target_model)
    start = Agent(
        name="s", handoffs=[target], model=scripted_model("gpt-4o", [handoff_call(target)])
    )
    with pytest.raises(ab.UnknownModelError):
        await ab.Guard(limits=ab.Limits(max_cost_usd="1")).run(start, "hi")
    assert target_model.calls == ()


async def test_report_round_trips_through_json(tmp_path: Path) -> None:
    sink = ab.JsonlSink(tmp_path / "spend.jsonl")
    main, _ = handoff_agents()
    guard = ab.Guard(sinks=[sink])
    result = await guard.run(main, "hi", user="u-2")
    report = ab.report_of(result)
    assert ab.RunReport.model_validate_json(report.model_dump_json()) == report
    assert await guard.aflush(timeout=10)  # sinks are written off the call path
    assert sink.read() == [report]


async def test_sinks_get_tripped_runs_with_spend_before_the_trip(tmp_path: Path) -> None:
    sink = ab.JsonlSink(tmp_path / "spend.jsonl")
    agent = Agent(
        name="loop",
        tools=[lookup],
        model=scripted_model(
            "gpt-4o",
            [
                tool_call("lookup", {"q": str(i)}, input_tokens=1_000, output_tokens=10)
                for i in range(10)
            ],
        ),
    )
    guard = ab.Guard(limits=ab.Limits(max_tool_calls=2), sinks=[sink])
    with pytest.raises(ab.ToolCallLimitExceeded) as info:
        await guard.run(agent, "hi")
    assert await guard.aflush(timeout=10)
    (written,) = sink.read()
    assert written == info.value.report
    assert written.outcome == "tripped" and written.tripped_limit == "max_tool_calls"
    assert len(written.calls) == 3 and written.cost_usd == Decimal("0.007800000")


class BrokenSink:
    def record(self, report: ab.RunReport) -> None:
        raise RuntimeError("disk full")


async def test_a_failing_sink_does_not_break_the_run_or_other_sinks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = ab.JsonlSink(tmp_path / "s.jsonl")
    main, _ = handoff_agents()
    guard = ab.Guard(sinks=[BrokenSink(), good])
    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        result = await guard.run(main, "hi")
        # the broken sink keeps its report and is retried: a flush cannot complete
        assert not await guard.aflush(timeout=0.5)
    assert result.final_output is not None
    assert good.read() == [ab.report_of(result)]
    assert "disk full" in caplog.text
    guard.close(timeout=0.1)


def test_bad_guard_arguments() -> None:
    with pytest.raises(ab.ConfigurationError):
        ab.Guard(limits={"max_tool_calls": 3})  # type: ignore[arg-type]
    with pytest.raises(ab.ConfigurationError):
        ab.Guard(sinks=[object()])  # type: ignore[list-item]


async def test_empty_user_id_is_rejected() -> None:
    main, _ = handoff_agents()
    with pytest.raises(ab.ConfigurationError, match="user"):
        await ab.Guard().run(main, "hi", user="")


async def test_uninstrument_while_a_run_is_in_flight_lets_it_finish() -> None:
    import asyncio

    from agents.testing import ModelStep

    release = asyncio.Event()

    async def slow(_call: Any) -> Any:
        await release.wait()
        return reply("done", input_tokens=10, output_tokens=5)

    agent = Agent(name="a", model=scripted_model("gpt-4o", [ModelStep.respond(slow)]))
    task = asyncio.ensure_future(ab.Guard().run(agent, "hi"))
    await asyncio.sleep(0.01)
    ab.uninstrument()
    release.set()
    result = await task
    assert ab.report_of(result).calls[0].output_tokens == 5


async def test_a_bucket_without_a_rate_is_recorded_unpriced_never_free(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # gpt-4o-2024-05-13 has no cached-input rate; the provider reports cached tokens
    def agent() -> Agent[Any]:
        return Agent(
            name="a",
            model=scripted_model(
                "gpt-4o-2024-05-13",
                [reply("x", input_tokens=1_000, output_tokens=10, cached_input_tokens=500)],
            ),
        )

    with caplog.at_level(logging.WARNING, logger="agentbudget"):
        report = ab.report_of(await ab.Guard().run(agent(), "hi"))
    assert report.calls[0].cost_usd is None and report.unpriced_calls == 1
    assert "cached_input" in caplog.text
    # under a dollar limit the run stops instead, with the call in its report
    with pytest.raises(ab.UnknownModelError) as info:
        await ab.Guard(limits=ab.Limits(max_cost_usd="1")).run(agent(), "hi")
    assert "cached_input" in str(info.value)


async def test_log_sink_writes_one_line_per_run_at_its_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = Agent(
        name="a", model=scripted_model("gpt-4o", [reply("x", input_tokens=10, output_tokens=10)])
    )
    guard = ab.Guard(sinks=[ab.LogSink()])
    with caplog.at_level(logging.DEBUG, logger="agentbudget"):
        await guard.run(agent, "hi", user="u-1")
        assert await guard.aflush(timeout=10)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("agentbudget run ")]
    assert record.levelno == logging.INFO and record.name == "agentbudget"
    assert "user=u-1 outcome=completed cost_usd=0.000125000 tokens=20" in record.getMessage()
    caplog.clear()
    agent2 = Agent(
        name="a", model=scripted_model("gpt-4o", [reply("x", input_tokens=10, output_tokens=10)])
    )
    guard = ab.Guard(sinks=[ab.LogSink("myapp.costs", level=logging.WARNING)])
    with caplog.at_level(logging.DEBUG, logger="myapp"):
        await guard.run(agent2, "hi")
        assert await guard.aflush(timeout=10)
    (record,) = [r for r in caplog.records if r.getMessage().startswith("agentbudget run ")]
    assert (record.levelno, record.name) == (logging.WARNING, "myapp.costs")
