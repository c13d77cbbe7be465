"""The plugin costs a pytest run nothing until it is used: the Agents SDK (about a second
to import) is loaded by the ``agent_costs`` fixture or a marked test, not by pytest's
start-up, collection, or the tests that use neither."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CONFTEST = """
import sys

def pytest_collection_finish(session):
    plugin = session.config.pluginmanager.get_plugin("agentbudget")
    print(f"PLUGIN={plugin.__name__ if plugin else None}")
    print(f"AGENTS_AT_COLLECTION={'agents' in sys.modules}")
"""


def test_collection_with_the_plugin_loaded_does_not_import_the_sdk(project):
    project.pytester.makeconftest(CONFTEST)
    project.pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    # a fresh process, the plugin loaded through its pytest11 entry point
    result = project.pytester.runpytest_subprocess("--co", "-q")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["PLUGIN=agentbudget.pytest_plugin", "AGENTS_AT_COLLECTION=False"])


def test_the_sdk_is_imported_by_the_first_test_that_uses_the_plugin(project):
    project.pytester.makeconftest(CONFTEST)
    project.pytester.makepyfile(
        test_order=textwrap.dedent(
            """
            import sys

            import pytest

            def test_1_plain_test_runs_without_the_sdk():
                assert "agents" not in sys.modules

            @pytest.mark.agent_budget(max_llm_calls=3)
            def test_2_marked_test_records_runs():
                from agents import Agent, Runner
                from agentbudget.testing import reply, scripted_model

                agent = Agent(name="a", model=scripted_model("gpt-4o", [reply("hi")]))
                assert Runner.run_sync(agent, "hi").final_output == "hi"

            def test_3_fixture_records_a_run(agent_costs):
                from agents import Agent, Runner
                from agentbudget.testing import reply, scripted_model

                agent = Agent(name="a", model=scripted_model("gpt-4o", [reply("ok")]))
                Runner.run_sync(agent, "hi")
                assert agent_costs.llm_calls == 1 and agent_costs.tokens == 120
            """
        )
    )
    result = project.pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["AGENTS_AT_COLLECTION=False"])


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(out.stdout.split())


def test_importing_the_package_and_the_plugin_leaves_the_sdk_unloaded():
    modules = _modules_after("import agentbudget, agentbudget.pytest_plugin")
    assert "agents" not in modules and "openai" not in modules
    assert {m for m in modules if m.startswith("agentbudget")} == {
        "agentbudget",
        "agentbudget._format",
        "agentbudget._version",
        "agentbudget.money",
        "agentbudget.pytest_plugin",
    }
    # the first public name that needs the SDK loads it
    assert "agents" in _modules_after("import agentbudget\nagentbudget.Guard")
