"""``@pytest.mark.agent_budget``: totals over the test's runs, readable failures, usage errors."""

from __future__ import annotations

import re

import pytest

RUN_ID = re.compile(r"run_id ([0-9a-f]{32})")


def test_a_run_costing_2_50_fails_under_1_00_and_passes_under_3_00(project):
    project.write(
        """
        @pytest.mark.agent_budget(max_cost_usd="1.00")
        def test_over_one_dollar():
            Runner.run_sync(agent_costing("2.50", name="support", model="gpt-4o"), "hi")

        @pytest.mark.agent_budget(max_cost_usd="3.00")
        def test_under_three_dollars():
            Runner.run_sync(agent_costing("2.50", name="support", model="gpt-4o"), "hi")
        """
    )
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*agent_budget exceeded by test_over_one_dollar: cost_usd $2.50 > max $1.00",
            "bounds (totals over 1 run):",
            "  cost_usd: $2.50 > max $1.00  EXCEEDED in run 1 (agent 'support', run_id *)",
            "runs:",
            "  1. agent 'support' run_id * (completed): $2.50, 1,000,000 tokens, 1 LLM call, "
            "0 tool calls",
        ]
    )
    assert "test_under_three_dollars" not in result.stdout.str().split("FAILURES")[-1]
    assert len(set(RUN_ID.findall(result.stdout.str()))) == 1


def test_bounds_are_inclusive(project):
    project.write(
        """
        @pytest.mark.agent_budget(max_cost_usd="2.50", max_tokens=1_000_000, max_llm_calls=1,
                                  max_tool_calls=0)
        def test_exactly_at_every_bound():
            Runner.run_sync(agent_costing("2.50", model="gpt-4o"), "hi")

        @pytest.mark.agent_budget(max_cost_usd="2.499999999")
        def test_one_nano_dollar_under():
            Runner.run_sync(agent_costing("2.50", model="gpt-4o"), "hi")
        """
    )
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_one_nano_dollar_under: cost_usd $2.50 > max $2.499999999"])


FLOW = """
def support_flow():
    # 3 LLM calls (gpt-4o-mini), 2 tool calls, 1,000 + 1,000 + 1,000 input and 3 x 50 output
    agent = scripted_agent(
        "support",
        [*tool_loop("lookup", times=2, input_tokens=1_000, output_tokens=50),
         reply("done", input_tokens=1_000, output_tokens=50)],
        model="gpt-4o-mini",
        tools=[lookup],
    )
    return Runner.run_sync(agent, "where is my order?")
"""


@pytest.mark.parametrize(
    ("marker", "headline", "ok_lines"),
    [
        (
            "max_tool_calls=1",
            "tool_calls 2 > max 1",
            [],
        ),
        (
            "max_llm_calls=2, max_tool_calls=2",
            "llm_calls 3 > max 2",
            ["  tool_calls: 2 <= max 2  ok"],
        ),
        (
            "max_tokens=3_000, max_llm_calls=3",
            "tokens 3,150 > max 3,000",
            ["  llm_calls: 3 <= max 3  ok"],
        ),
        (
            'max_cost_usd="0.0005", max_tokens=3_150',
            "cost_usd $0.00054 > max $0.0005",
            ["  tokens: 3,150 <= max 3,150  ok"],
        ),
    ],
)
def test_each_measure_is_bounded_and_named(project, marker, headline, ok_lines):
    project.write(
        FLOW
        + f"""
@pytest.mark.agent_budget({marker})
def test_flow():
    assert support_flow().final_output == "done"
"""
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    measure = headline.split()[0]
    result.stdout.fnmatch_lines(
        [
            f"*agent_budget exceeded by test_flow: {headline}",
            "bounds (totals over 1 run):",
            f"  {measure}: * EXCEEDED in run 1 (agent 'support', run_id *)",
            "  1. agent 'support' run_id * (completed): $0.00054, 3,150 tokens, 3 LLM calls, "
            "2 tool calls",
        ]
    )
    for line in ok_lines:
        result.stdout.fnmatch_lines([line])


def test_the_same_flow_passes_within_its_bounds(project):
    project.write(
        FLOW
        + """
@pytest.mark.agent_budget(max_cost_usd="0.00054", max_tokens=3_150, max_tool_calls=2,
                          max_llm_calls=3)
def test_flow():
    assert support_flow().final_output == "done"
"""
    )
    project.run().assert_outcomes(passed=1)


def test_bounds_apply_to_the_total_of_the_tests_runs(project):
    project.write(
        """
        @pytest.mark.agent_budget(max_cost_usd="2.00")
        def test_two_runs():
            Runner.run_sync(agent_costing("1.50", name="first"), "a")
            Runner.run_sync(agent_costing("1.50", name="second"), "b")
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*agent_budget exceeded by test_two_runs: cost_usd $3.00 > max $2.00",
            "bounds (totals over 2 runs):",
            "  cost_usd: $3.00 > max $2.00  EXCEEDED in run 2 (agent 'second', run_id *)",
            "runs:",
            "  1. agent 'first' run_id * (completed): $1.50, *",
            "  2. agent 'second' run_id * (completed): $1.50, *",
        ]
    )
    assert len(set(RUN_ID.findall(result.stdout.str()))) == 2


def test_marker_and_fixture_see_the_same_runs(project):
    project.write(
        """
        @pytest.mark.agent_budget(max_cost_usd="1.00")
        def test_marked_with_fixture(agent_costs):
            result = Runner.run_sync(agent_costing("2.50", name="support"), "hi")
            assert [r.run_id for r in agent_costs.reports] == [ab.report_of(result).run_id]
            assert agent_costs.cost_usd == Decimal("2.50")
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*agent_budget exceeded by test_marked_with_fixture: cost_usd*"])


def test_runs_in_fixture_setup_count_toward_the_marker(project):
    project.write(
        """
        @pytest.fixture
        def warmed_up():
            Runner.run_sync(agent_costing("2.00", name="warmup"), "warm up")

        @pytest.mark.agent_budget(max_cost_usd="2.50")
        def test_after_warmup(warmed_up):
            Runner.run_sync(agent_costing("1.00", name="support"), "hi")
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*cost_usd $3.00 > max $2.50",
            "*EXCEEDED in run 2 (agent 'support'*",
            "  1. agent 'warmup' *",
            "  2. agent 'support' *",
        ]
    )


def test_streamed_runs_count_once_consumed(project):
    project.write(
        """
        @pytest.mark.agent_budget(max_cost_usd="1.00")
        async def test_streamed():
            agent = agent_costing("2.50", name="streamer")
            streamed = Runner.run_streamed(agent, "hi")
            async for _event in streamed.stream_events():
                pass
            assert streamed.final_output == "done"
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*agent_budget exceeded by test_streamed: cost_usd $2.50 > max $1.00"]
    )


def test_a_failing_body_reports_its_own_failure_with_the_runs_attached(project):
    project.write(
        """
        @pytest.mark.agent_budget(max_cost_usd="1.00")
        def test_behaviour_broke():
            Runner.run_sync(agent_costing("2.50", name="support"), "hi")
            assert 1 + 1 == 3, "behaviour broke"
        """
    )
    result = project.run()
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert "behaviour broke" in output
    assert "agent_budget exceeded" not in output
    result.stdout.fnmatch_lines(
        ["*- agent costs -*", "runs:", "  1. agent 'support' run_id * (completed): $2.50, *"]
    )


def test_every_marker_applies_and_the_tightest_bound_wins(project):
    project.write(
        FLOW
        + """
pytestmark = pytest.mark.agent_budget(max_tool_calls=5)

def test_module_bound_holds():
    support_flow()

@pytest.mark.agent_budget(max_tool_calls=1)
def test_function_bound_is_tighter():
    support_flow()

class TestLoose:
    pytestmark = pytest.mark.agent_budget(max_tool_calls=10)

    def test_module_bound_still_applies(self):
        support_flow()
        support_flow()
        support_flow()
"""
    )
    result = project.run("-v")
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*::test_module_bound_holds PASSED*",
            "*::test_function_bound_is_tighter FAILED*",
            "*::TestLoose::test_module_bound_still_applies FAILED*",
        ]
    )
    result.stdout.fnmatch_lines(["*test_function_bound_is_tighter: tool_calls 2 > max 1"])
    result.stdout.fnmatch_lines(["*test_module_bound_still_applies: tool_calls 6 > max 5"])


def test_unpriced_calls_make_the_cost_unknown_not_zero(project):
    project.write(
        """
        def private_model_run():
            agent = scripted_agent("private", [reply("hi", input_tokens=10, output_tokens=5)],
                                   model="my-private-finetune")
            Runner.run_sync(agent, "hi")

        @pytest.mark.agent_budget(max_cost_usd="100")
        def test_dollar_bound():
            private_model_run()

        @pytest.mark.agent_budget(max_tokens=15)
        def test_token_bound():
            private_model_run()
        """
    )
    result = project.run()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_dollar_bound: cost_usd unknown (1 LLM call unpriced) vs max $100.00",
            "  cost_usd: UNKNOWN, 1 LLM call had no price ($0.00 priced) vs max $100.00; *",
            "  1. agent 'private' run_id * (completed): $0.00 + 1 unpriced call, 15 tokens, *",
        ]
    )


def test_after_a_marked_test_plain_runs_are_no_longer_governed(project):
    project.write(
        """
        from agentbudget.runtime import is_instrumented

        @pytest.mark.agent_budget(max_cost_usd="1.00")
        def test_marked_and_failing():
            result = Runner.run_sync(agent_costing("2.50"), "hi")
            assert is_instrumented()
            ab.report_of(result)  # governed: the result carries its report

        def test_plain_afterwards():
            assert not is_instrumented()
            result = Runner.run_sync(agent_costing("2.50"), "hi")
            with pytest.raises(LookupError):
                ab.report_of(result)
        """
    )
    result = project.run("-p", "no:randomly")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*agent_budget exceeded by test_marked_and_failing*"])


@pytest.mark.parametrize(
    ("marker", "problem"),
    [
        (
            "max_cost=1",
            "unknown keyword max_cost; known keywords: max_cost_usd, max_llm_calls, "
            "max_tokens, max_tool_calls",
        ),
        (
            "max_cost_usd='1', max_calls=2, tools=3",
            "unknown keywords max_calls, tools; known keywords: max_cost_usd, max_llm_calls, "
            "max_tokens, max_tool_calls",
        ),
        (
            "max_cost_usd=0.5",
            "max_cost_usd must be a Decimal, str or int, not float (0.5); floats are not exact, "
            "write it as a string like '0.50'",
        ),
        ("max_cost_usd='a dollar'", "max_cost_usd must be a decimal number, got 'a dollar'"),
        ("max_cost_usd='NaN'", "max_cost_usd must be finite, got 'NaN'"),
        ("max_cost_usd=-1", "max_cost_usd must not be negative, got -1"),
        ("max_tool_calls=-1", "max_tool_calls must not be negative, got -1"),
        ("max_tokens=1.5", "max_tokens must be a whole number (int), got 1.5"),
        ("max_tokens=1000.0", "max_tokens must be a whole number (int), got 1000.0"),
        ("max_llm_calls=True", "max_llm_calls must be a whole number (int), got True"),
        ("max_tokens='100'", "max_tokens must be a whole number (int), got '100'"),
        (
            "'0.01'",
            "it takes keyword arguments only (max_cost_usd, max_llm_calls, "
            "max_tokens, max_tool_calls)",
        ),
        (
            "",
            "no bound given; set at least one of max_cost_usd, max_tokens, max_tool_calls, "
            "max_llm_calls",
        ),
    ],
)
def test_a_misconfigured_marker_is_a_usage_error_and_the_body_does_not_run(
    project, marker, problem
):
    project.write(
        f"""
        @pytest.mark.agent_budget({marker})
        def test_misconfigured():
            Runner.run_sync(agent_costing("2.50"), "hi")
            raise AssertionError("the body ran")
        """
    )
    result = project.run()
    result.assert_outcomes(errors=1)
    output = result.stdout.str()
    assert "the body ran" not in output
    assert "agent_budget exceeded" not in output
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_misconfigured*",
            f"invalid @pytest.mark.agent_budget({marker}) on "
            f"test_generated_costs.py::test_misconfigured: {problem}",
        ]
    )
