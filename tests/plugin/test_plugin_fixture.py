"""The ``agent_costs`` fixture: every run of the test, exact totals, ``assert_under``."""

from __future__ import annotations

SEVERAL_RUNS = """
async def test_several_runs(agent_costs):
    results = []

    # 1. gpt-4o: 1,000,000 input tokens at $2.50/1M = $2.50
    results.append(await Runner.run(agent_costing("2.50", name="big", model="gpt-4o"), "a"))

    # 2. gpt-4o-mini: 1,234 x $0.15/1M + 567 x $0.60/1M = $0.0005253
    triage = scripted_agent(
        "triage", [reply("x", input_tokens=1_234, output_tokens=567)], model="gpt-4o-mini"
    )
    results.append(await Runner.run(triage, "b"))

    # 3. a tool call, gpt-4.1: 2,100 x $2/1M + 70 x $8/1M = $0.00476
    tooled = scripted_agent(
        "tooled",
        [tool_call("lookup", {"q": "a"}, input_tokens=1_000, output_tokens=20),
         reply("y", input_tokens=1_100, output_tokens=50)],
        model="gpt-4.1",
        tools=[lookup],
    )
    results.append(await Runner.run(tooled, "c"))

    # 4. a handoff mixing models: gpt-4o-mini $0.000021 + gpt-4o $0.0008 = $0.000821
    billing = scripted_agent(
        "billing", [reply("paid", input_tokens=200, output_tokens=30)], model="gpt-4o"
    )
    router = scripted_agent(
        "router", [handoff_call(billing, input_tokens=100, output_tokens=10)],
        model="gpt-4o-mini", handoffs=[billing],
    )
    results.append(await Runner.run(router, "d"))

    # 5. streamed, gpt-4o: 4,000 input tokens = $0.01
    streamed = Runner.run_streamed(agent_costing("0.01", name="streamer"), "e")
    async for _event in streamed.stream_events():
        pass
    results.append(streamed)

    assert [r.agent for r in agent_costs.reports] == [
        "big", "triage", "tooled", "router", "streamer"
    ]
    assert [r.run_id for r in agent_costs.reports] == [
        ab.report_of(result).run_id for result in results
    ]
    assert isinstance(agent_costs.cost_usd, Decimal)
    assert agent_costs.cost_usd == Decimal("2.5161063")
    assert agent_costs.cost_usd == sum(
        (r.cost_usd for r in agent_costs.reports), Decimal(0)
    )
    assert [r.cost_usd for r in agent_costs.reports] == [
        Decimal("2.50"), Decimal("0.0005253"), Decimal("0.00476"), Decimal("0.000821"),
        Decimal("0.01"),
    ]
    assert agent_costs.tokens == 1_000_000 + 1_801 + 2_170 + 340 + 4_000
    assert agent_costs.input_tokens == 1_000_000 + 1_234 + 2_100 + 300 + 4_000
    assert agent_costs.output_tokens == 567 + 70 + 40
    assert agent_costs.llm_calls == 1 + 1 + 2 + 2 + 1
    assert agent_costs.tool_calls == 1  # a handoff is not a tool call
    assert agent_costs.unpriced_calls == 0
"""


def test_cost_usd_is_the_exact_sum_of_every_kind_of_run(project):
    project.write(SEVERAL_RUNS)
    project.run().assert_outcomes(passed=1)


def test_a_nested_agent_as_tool_run_is_folded_into_its_parent(project):
    project.write(
        """
        def test_nested(agent_costs):
            expert = scripted_agent(
                "expert", [reply("answer", input_tokens=300, output_tokens=60)],
                model="gpt-4o-mini",
            )
            orchestrator = scripted_agent(
                "orchestrator",
                [tool_call("ask_expert", {"input": "q"}, input_tokens=500, output_tokens=20),
                 reply("final", input_tokens=600, output_tokens=40)],
                model="gpt-4o",
                tools=[expert.as_tool(tool_name="ask_expert", tool_description="Ask.")],
            )
            assert Runner.run_sync(orchestrator, "q").final_output == "final"
            assert [r.agent for r in agent_costs.reports] == ["orchestrator"]
            assert agent_costs.llm_calls == 3
            assert agent_costs.tool_calls == 1
            # gpt-4o (1,100 in, 60 out) $0.00335 + gpt-4o-mini (300 in, 60 out) $0.000081
            assert agent_costs.cost_usd == Decimal("0.003431")
        """
    )
    project.run().assert_outcomes(passed=1)


def test_a_streamed_run_is_recorded_when_its_stream_has_been_consumed(project):
    project.write(
        """
        async def test_streamed(agent_costs):
            streamed = Runner.run_streamed(agent_costing("2.50", name="streamer"), "hi")
            assert agent_costs.reports == []
            async for _event in streamed.stream_events():
                pass
            assert [r.agent for r in agent_costs.reports] == ["streamer"]
            assert agent_costs.cost_usd == Decimal("2.50")
        """
    )
    project.run().assert_outcomes(passed=1)


def test_runs_that_fail_are_recorded_with_their_outcome(project):
    project.write(
        """
        from agents.exceptions import MaxTurnsExceeded

        def test_runaway(agent_costs):
            looping = scripted_agent(
                "looper", tool_loop("lookup", times=3, input_tokens=1_000, output_tokens=0),
                tools=[lookup],
            )
            with pytest.raises(MaxTurnsExceeded):
                Runner.run_sync(looping, "loop", max_turns=2)
            [report] = agent_costs.reports
            assert report.outcome == "error"
            assert agent_costs.llm_calls == 2
            assert agent_costs.cost_usd == Decimal("0.005")  # 2,000 gpt-4o input tokens
        """
    )
    project.run().assert_outcomes(passed=1)


def test_runs_outside_the_tests_window_are_not_recorded(project):
    project.write(
        """
        @pytest.fixture(scope="module")
        def module_warmup():
            Runner.run_sync(agent_costing("1.00", name="module-warmup"), "warm")

        def test_first(module_warmup, agent_costs):
            Runner.run_sync(agent_costing("0.01", name="first"), "a")
            assert [r.agent for r in agent_costs.reports] == ["first"]

        def test_second(agent_costs):
            assert agent_costs.reports == []
            Runner.run_sync(agent_costing("0.02", name="second"), "b")
            assert agent_costs.cost_usd == Decimal("0.02")

        @pytest.fixture
        def warm():
            Runner.run_sync(agent_costing("0.05", name="warm"), "warm")

        def test_fixture_set_up_before_recording(warm, agent_costs):
            assert agent_costs.reports == []

        def test_fixture_set_up_while_recording(agent_costs, warm):
            assert [r.agent for r in agent_costs.reports] == ["warm"]

        @pytest.mark.agent_budget(max_cost_usd="0.10")
        def test_marker_records_from_before_every_function_fixture(warm, agent_costs):
            assert [r.agent for r in agent_costs.reports] == ["warm"]
        """
    )
    project.run("-p", "no:randomly").assert_outcomes(passed=5)


def test_assert_under_passes_within_inclusive_bounds(project):
    project.write(
        """
        def test_within(agent_costs):
            Runner.run_sync(agent_costing("2.50"), "hi")
            agent_costs.assert_under(usd="2.50", tokens=1_000_000, tool_calls=0, llm_calls=1)
            agent_costs.assert_under(usd=Decimal("3"))
            agent_costs.assert_under(usd=3)
        """
    )
    project.run().assert_outcomes(passed=1)


def test_assert_under_lists_each_measure_against_its_bound_and_each_run(project):
    project.write(
        """
        def test_over(agent_costs):
            Runner.run_sync(agent_costing("0.60", name="first"), "a")
            Runner.run_sync(agent_costing("0.60", name="second"), "b")
            agent_costs.assert_under(usd="1.00", tokens=500_000, tool_calls=3, llm_calls=2)
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            ">       agent_costs.assert_under(usd=*",  # the traceback ends at the user's call
            "E       AssertionError: agent costs over budget: cost_usd $1.20 > max $1.00",
            "E       bounds (totals over 2 runs):",
            "E         cost_usd: $1.20 > max $1.00  EXCEEDED in run 2 (agent 'second', run_id *)",
            "E         tokens: 480,000 <= max 500,000  ok",
            "E         tool_calls: 0 <= max 3  ok",
            "E         llm_calls: 2 <= max 2  ok",
            "E       runs:",
            "E         1. agent 'first' run_id * (completed): $0.60, 240,000 tokens, 1 LLM call, "
            "0 tool calls",
            "E         2. agent 'second' run_id * (completed): $0.60, 240,000 tokens, 1 LLM call, "
            "0 tool calls",
        ]
    )
    output = result.stdout.str()
    assert "pytest_plugin.py" not in output  # __tracebackhide__ keeps the plugin out
    assert "- agent costs -" not in output  # the message already lists the runs


def test_assert_under_fails_on_unpriced_calls_when_usd_is_bounded(project):
    project.write(
        """
        def test_unpriced(agent_costs):
            agent = scripted_agent("private", [reply("hi", input_tokens=10, output_tokens=5)],
                                   model="my-private-finetune")
            Runner.run_sync(agent, "hi")
            assert agent_costs.unpriced_calls == 1
            assert agent_costs.cost_usd == 0
            agent_costs.assert_under(tokens=15)
            with pytest.raises(AssertionError, match=r"cost_usd unknown \\(1 LLM call unpriced\\)"):
                agent_costs.assert_under(usd="1000")
        """
    )
    project.run().assert_outcomes(passed=1)


def test_assert_under_rejects_bad_bounds_as_usage_errors(project):
    project.write(
        """
        @pytest.mark.parametrize(
            ("bounds", "message"),
            [
                ({"usd": 0.5}, "usd must be a Decimal, str or int, not float"),
                ({"usd": "-1"}, "usd must not be negative"),
                ({"tokens": -1}, "tokens must not be negative, got -1"),
                ({"tool_calls": True}, "tool_calls must be a whole number"),
                ({"llm_calls": 2.0}, "llm_calls must be a whole number"),
                ({}, "no bound given; set at least one of usd, tokens, tool_calls, llm_calls"),
            ],
        )
        def test_bad(agent_costs, bounds, message):
            with pytest.raises(ab.ConfigurationError, match=message) as info:
                agent_costs.assert_under(**bounds)
            assert not isinstance(info.value, AssertionError)

        def test_unknown_keyword(agent_costs):
            with pytest.raises(TypeError, match="max_cost_usd"):
                agent_costs.assert_under(max_cost_usd="1")
        """
    )
    project.run().assert_outcomes(passed=7)


def test_a_failing_test_gets_an_agent_costs_section_and_the_observer_is_removed(project):
    project.write(
        """
        from agentbudget.runtime import is_instrumented

        def test_behaviour_fails(agent_costs):
            Runner.run_sync(agent_costing("0.01", name="support"), "hi")
            assert is_instrumented()
            assert False, "wrong answer"

        def test_next_test_is_not_governed():
            assert not is_instrumented()
            ab.instrument()  # instrumented, with no observer left: plain runs pass through
            try:
                result = Runner.run_sync(agent_costing("0.01"), "hi")
            finally:
                ab.uninstrument()
            with pytest.raises(LookupError):
                ab.report_of(result)
        """
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*wrong answer*",
            "*- agent costs -*",
            "runs:",
            "  1. agent 'support' run_id * (completed): $0.01, 4,000 tokens, 1 LLM call, "
            "0 tool calls",
        ]
    )


def test_instrumentation_already_in_place_is_left_in_place(project):
    project.write(
        """
        from agentbudget.runtime import is_instrumented

        @pytest.fixture
        def instrumented():
            ab.instrument()
            yield
            ab.uninstrument()

        def test_with_fixture(instrumented, agent_costs):
            assert is_instrumented()

        def test_after(instrumented):
            assert is_instrumented()
        """
    )
    project.run("-p", "no:randomly").assert_outcomes(passed=2)


def test_the_recorder_is_thread_safe_for_runs_in_threads(project):
    project.write(
        """
        import asyncio
        from concurrent.futures import ThreadPoolExecutor

        def one_run(n):
            # asyncio.run closes its loop (run_sync would leave one open in each thread)
            return asyncio.run(Runner.run(agent_costing("0.01", name=f"worker-{n}"), "hi"))

        def test_threads(agent_costs):
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(pool.map(one_run, range(8)))
            assert len(agent_costs.reports) == 8
            assert agent_costs.cost_usd == Decimal("0.08")
        """
    )
    project.run().assert_outcomes(passed=1)


def test_guard_runs_and_budget_scope_runs_are_recorded_too(project):
    project.write(
        """
        def test_governed_runs(agent_costs):
            ab.Guard().run_sync(agent_costing("0.01", name="guarded"), "a")
            with ab.budget(max_cost_usd="5"):
                Runner.run_sync(agent_costing("0.02", name="scoped"), "b")
            with pytest.raises(ab.LLMCallLimitExceeded):
                with ab.budget(max_llm_calls=0):
                    Runner.run_sync(agent_costing("0.03", name="stopped"), "c")
            assert [(r.agent, r.outcome) for r in agent_costs.reports] == [
                ("guarded", "completed"), ("scoped", "completed"), ("stopped", "tripped"),
            ]
            assert agent_costs.cost_usd == Decimal("0.03")
        """
    )
    project.run().assert_outcomes(passed=1)


def test_while_recording_the_configured_default_guard_governs_plain_runs(project):
    project.write(
        """
        @pytest.fixture
        def one_call_per_run():
            ab.configure(limits=ab.Limits(max_llm_calls=1))
            yield
            ab.configure()

        def test_configured_limits_apply(one_call_per_run, agent_costs):
            agent = scripted_agent("looper", tool_loop("lookup", times=3), tools=[lookup])
            with pytest.raises(ab.LLMCallLimitExceeded):
                Runner.run_sync(agent, "loop")
            [report] = agent_costs.reports
            assert (report.outcome, report.llm_calls) == ("tripped", 1)
        """
    )
    project.run().assert_outcomes(passed=1)


def test_record_costs_records_outside_a_test_function(project):
    project.write(
        """
        from agentbudget.pytest_plugin import record_costs

        @pytest.fixture(scope="module")
        def module_costs():
            with record_costs() as costs:
                yield costs
            assert costs.cost_usd == Decimal("0.03")

        def test_first(module_costs):
            Runner.run_sync(agent_costing("0.01"), "a")

        def test_second(module_costs):
            Runner.run_sync(agent_costing("0.02"), "b")
            assert len(module_costs.reports) == 2
        """
    )
    project.run("-p", "no:randomly").assert_outcomes(passed=2)
