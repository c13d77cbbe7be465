"""The plugin loads through its ``pytest11`` entry point and registers its marker."""

from __future__ import annotations

from importlib.metadata import entry_points

import agentbudget.pytest_plugin

MARKED = """
@pytest.mark.agent_budget(max_cost_usd="1.00")
def test_over():
    Runner.run_sync(agent_costing("2.50"), "hi")

@pytest.mark.agent_budget(max_cost_usd="3.00")
def test_under(agent_costs):
    Runner.run_sync(agent_costing("2.50"), "hi")
    assert agent_costs.cost_usd == Decimal("2.50")
"""


def test_the_entry_point_names_the_plugin_module():
    [entry] = [e for e in entry_points(group="pytest11") if e.name == "agentbudget"]
    assert entry.value == "agentbudget.pytest_plugin"
    assert entry.load() is agentbudget.pytest_plugin


def test_a_fresh_pytest_process_loads_the_plugin_with_no_configuration(project):
    project.write(MARKED)
    result = project.pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*agent_budget exceeded by test_over: cost_usd $2.50 > max $1.00"])


def test_the_marker_is_registered_for_strict_markers(project):
    result = project.run("--markers")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.agent_budget(max_cost_usd=None, max_tokens=None, max_tool_calls=None, "
            "max_llm_calls=None): fail the test when the agent runs it starts exceed these "
            "totals*"
        ]
    )


def test_without_the_plugin_strict_markers_reject_the_marker(project):
    project.write(MARKED)
    # in a subprocess: pytest.mark remembers markers registered by earlier in-process runs
    result = project.pytester.runpytest_subprocess("-p", "no:agentbudget")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*'agent_budget' not found in `markers` configuration option*"])


def test_the_fixture_is_listed_with_its_docstring(project):
    result = project.run("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "agent_costs -- *pytest_plugin.py:*",
            "    Every agent run started during the test, with exact totals and ``assert_under``.",
        ]
    )
