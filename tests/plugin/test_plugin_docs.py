"""``docs/testing.md`` shows code that runs: each Python block is run in a pytester project
(its ``<!-- run: ... -->`` comment gives the outcomes), each ``<!-- output -->`` block is
matched against that run's output, and the copyable example file is the one documented."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "testing.md"
EXAMPLE = ROOT / "examples" / "cost_tests" / "test_support_costs.py"

BLOCK = re.compile(r"(?:<!-- (?P<directive>[^>]*?) -->\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)


@dataclass
class Example:
    code: str
    outcomes: dict[str, int]
    output: list[str] = field(default_factory=list)


def _examples() -> tuple[list[Example], dict[str, str]]:
    runs: list[Example] = []
    files: dict[str, str] = {}
    for match in BLOCK.finditer(DOC.read_text(encoding="utf-8")):
        directive, lang, code = match["directive"] or "", match["lang"], match["code"]
        if directive.startswith("run:"):
            pairs = (item.split("=") for item in directive.removeprefix("run:").split())
            runs.append(Example(code, {key: int(value) for key, value in pairs}))
        elif directive.startswith("file:"):
            files[directive.removeprefix("file:").strip()] = code
        elif directive == "output":
            runs[-1].output.extend(code.splitlines())
        else:
            assert lang != "python", f"a python block in {DOC.name} is not run:\n{code}"
    return runs, files


RUNS, FILES = _examples()


def _pattern(line: str) -> str:
    """An fnmatch pattern for a documented output line: ``<run_id>`` matches any run id, and
    a ``____ test_name ____`` header any width of underscores."""
    pattern = re.sub(r"([\[\]?*])", r"[\1]", line).replace("<run_id>", "*")
    if line.startswith("_"):
        return f"*_ {line.strip('_ ')} _*"
    return pattern


def test_the_page_has_examples_to_run():
    assert len(RUNS) >= 4
    assert sum(len(example.output) for example in RUNS) >= 2


@pytest.mark.parametrize("example", RUNS, ids=[f"block{i}" for i in range(len(RUNS))])
def test_each_documented_example_runs_as_described(project, example):
    project.pytester.makepyfile(test_cost_example=example.code)
    result = project.run()
    result.assert_outcomes(**example.outcomes)
    if example.output:
        result.stdout.fnmatch_lines([_pattern(line) for line in example.output])


def test_the_documented_example_file_is_the_shipped_one():
    assert FILES == {"examples/cost_tests/test_support_costs.py": EXAMPLE.read_text()}


def test_the_example_file_passes_as_users_would_run_it(project):
    project.pytester.makepyfile(test_support_costs=EXAMPLE.read_text())
    result = project.run("-v")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*::test_support_flow_costs_under_one_cent PASSED*",
            "*::test_support_flow_cost_breakdown PASSED*",
        ]
    )


def test_the_example_files_budget_test_fails_when_the_flow_gets_expensive(project):
    """The example's marker is live: price the same flow as a costlier model and it fails."""
    costly = EXAMPLE.read_text().replace('"gpt-4o-mini",\n', '"o1",\n')
    assert costly != EXAMPLE.read_text()
    project.pytester.makepyfile(test_support_costs=costly)
    result = project.run()
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["*agent_budget exceeded by test_support_flow_costs_under_one_cent: cost_usd $0.0*"]
    )
