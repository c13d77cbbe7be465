"""pytest plugin: guard what your agents cost the way you guard what they do.

Loaded automatically through the ``pytest11`` entry point once agentbudget is installed.

* ``agent_costs`` fixture: records every run started while the test runs (plain
  ``Runner.run`` / ``run_sync`` / ``run_streamed`` included), with exact totals and
  ``assert_under(usd=..., tokens=..., tool_calls=..., llm_calls=...)``.
* ``@pytest.mark.agent_budget(max_cost_usd=..., max_tokens=..., max_tool_calls=...,
  max_llm_calls=...)``: fails the test when its runs, *in total*, exceed a bound.

Bounds are inclusive (a test that costs exactly ``max_cost_usd`` passes). The plugin
measures; it never stops a run. To stop runs, use ``agentbudget.budget()`` or ``Guard``.
See ``docs/testing.md``. Hooks are old-style (``trylast``, ``hookwrapper``) so the plugin
loads on pytest 7 as well as 8 and 9: installing agentbudget must not break a suite.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

# Only modules that do not import the Agents SDK: pytest loads this plugin in every run
# wherever agentbudget is installed. The SDK (through .errors and .runtime) is imported by
# the code paths that use it: the agent_costs fixture, a marked test, a bad bound.
from ._format import plural, usd_rate
from .money import nanos_to_usd, parse_usd, usd_to_nanos

if TYPE_CHECKING:
    from .report import RunReport

__all__ = ["MARKER", "AgentCosts", "record_costs"]

MARKER = "agent_budget"

_MARKER_HELP = (
    f"{MARKER}(max_cost_usd=None, max_tokens=None, max_tool_calls=None, max_llm_calls=None): "
    "fail the test when the agent runs it starts exceed these totals (inclusive bounds; "
    "max_cost_usd as str, int or Decimal). From agentbudget."
)


# -- measures and bounds ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Measure:
    label: str
    """How the measure is named in messages (and its ``AgentCosts`` attribute)."""
    marker_kw: str
    assert_kw: str


_MEASURES = (
    _Measure("cost_usd", "max_cost_usd", "usd"),
    _Measure("tokens", "max_tokens", "tokens"),
    _Measure("tool_calls", "max_tool_calls", "tool_calls"),
    _Measure("llm_calls", "max_llm_calls", "llm_calls"),
)
_MARKER_KWS = tuple(sorted(m.marker_kw for m in _MEASURES))


def _usd(amount: Decimal) -> str:
    """``$2.50``, ``$0.000444``: exact, without trailing zeros past the cents."""
    return f"${usd_rate(amount)}"


@dataclass(frozen=True)
class CostBounds:
    """Inclusive upper bounds on a test's runs, in total; ``None`` means unbounded."""

    cost_usd: Decimal | None = None
    tokens: int | None = None
    tool_calls: int | None = None
    llm_calls: int | None = None

    @classmethod
    def parse(cls, values: Mapping[str, object], *, names: Mapping[str, str]) -> CostBounds:
        """Validate bounds given under the keyword ``names`` (measure label -> keyword).

        Raises:
            ConfigurationError: naming the keyword and what to write instead.
        """
        from .errors import ConfigurationError

        parsed: dict[str, Any] = {}
        for measure in _MEASURES:
            keyword = names[measure.label]
            value = values.get(keyword)
            if value is None:
                continue
            if measure.label == "cost_usd":
                try:
                    parsed["cost_usd"] = parse_usd(value, field=keyword)
                except ValueError as exc:
                    raise ConfigurationError(str(exc)) from None
            elif isinstance(value, bool) or not isinstance(value, int):
                raise ConfigurationError(f"{keyword} must be a whole number (int), got {value!r}")
            elif value < 0:
                raise ConfigurationError(f"{keyword} must not be negative, got {value}")
            else:
                parsed[measure.label] = value
        if not parsed:
            raise ConfigurationError(
                f"no bound given; set at least one of {', '.join(names.values())}"
            )
        return cls(**parsed)

    def tightest(self, other: CostBounds) -> CostBounds:
        """The bounds that hold when both ``self`` and ``other`` apply."""
        merged: dict[str, Any] = {}
        for measure in _MEASURES:
            mine, theirs = getattr(self, measure.label), getattr(other, measure.label)
            options = [v for v in (mine, theirs) if v is not None]
            merged[measure.label] = min(options) if options else None
        return CostBounds(**merged)

    def check(self, costs: AgentCosts) -> Verdict | None:
        """Each bounded measure against its bound, and each run; None when every bound holds."""
        lines: list[str] = []
        exceeded: list[str] = []
        for measure in _MEASURES:
            bound = getattr(self, measure.label)
            if bound is None:
                continue
            observed = getattr(costs, measure.label)
            if measure.label == "cost_usd":
                shown, limit = _usd(observed), _usd(bound)
                if costs.unpriced_calls:
                    unpriced = plural(costs.unpriced_calls, "LLM call")
                    exceeded.append(f"cost_usd unknown ({unpriced} unpriced) vs max {limit}")
                    lines.append(
                        f"  cost_usd: UNKNOWN, {unpriced} had no price ({shown} priced) vs max "
                        f"{limit}; give the model a price (agentbudget.configure(prices=...))"
                    )
                    continue
            else:
                shown, limit = f"{observed:,}", f"{bound:,}"
            if observed > bound:
                exceeded.append(f"{measure.label} {shown} > max {limit}")
                crossing = costs.crossing_run(measure.label, bound)
                where = f" in run {crossing}" if crossing is not None else ""
                lines.append(f"  {measure.label}: {shown} > max {limit}  EXCEEDED{where}")
            else:
                lines.append(f"  {measure.label}: {shown} <= max {limit}  ok")
        if not exceeded:
            return None
        runs = len(costs.reports)
        heading = f"bounds (totals over {plural(runs, 'run')}):"
        return Verdict(
            headline="; ".join(exceeded), details="\n".join([heading, *lines, costs.summary()])
        )


@dataclass(frozen=True)
class Verdict:
    """Why a test's runs are over budget."""

    headline: str
    """The exceeded measures on one line (``cost_usd $2.50 > max $1.00``)."""
    details: str
    """Every bounded measure against its bound, then one line per run."""


# -- the recorder ---------------------------------------------------------------------------


class AgentCosts:
    """The runs recorded during one test, with exact totals.

    The ``agent_costs`` fixture returns one. Runs count from when the fixture is set up
    until it is torn down; a nested ``Agent.as_tool`` run is part of its parent's report.
    """

    def __init__(self) -> None:
        self._reports: list[RunReport] = []
        self._lock = threading.Lock()
        self._explained = False

    def record(self, report: RunReport) -> None:
        """Add a finished run's report (the observer the fixture registers)."""
        with self._lock:
            self._reports.append(report)

    @property
    def reports(self) -> list[RunReport]:
        """One ``RunReport`` per top-level run, in the order the runs finished."""
        with self._lock:
            return list(self._reports)

    @property
    def cost_usd(self) -> Decimal:
        """Exact sum of the runs' ``cost_usd`` (priced calls only; see ``unpriced_calls``)."""
        return nanos_to_usd(sum(usd_to_nanos(r.cost_usd or Decimal(0)) for r in self.reports))

    @property
    def tokens(self) -> int:
        """Input plus output tokens of every LLM call."""
        return sum(r.total_tokens for r in self.reports)

    @property
    def input_tokens(self) -> int:
        return sum(r.input_tokens for r in self.reports)

    @property
    def output_tokens(self) -> int:
        return sum(r.output_tokens for r in self.reports)

    @property
    def tool_calls(self) -> int:
        return sum(r.tool_calls for r in self.reports)

    @property
    def llm_calls(self) -> int:
        return sum(r.llm_calls for r in self.reports)

    @property
    def unpriced_calls(self) -> int:
        """LLM calls whose model has no price (their cost is not in ``cost_usd``)."""
        return sum(r.unpriced_calls for r in self.reports)

    def assert_under(
        self,
        *,
        usd: Decimal | str | int | None = None,
        tokens: int | None = None,
        tool_calls: int | None = None,
        llm_calls: int | None = None,
    ) -> None:
        """Assert the recorded runs, in total, stay within every given (inclusive) bound.

        ``usd`` fails when any call was unpriced: its cost is unknown.

        Raises:
            AssertionError: listing each measure against its bound, and each run.
            ConfigurationError: for a bad bound (a float ``usd``, a negative count, none).
        """
        __tracebackhide__ = True
        bounds = CostBounds.parse(
            {"usd": usd, "tokens": tokens, "tool_calls": tool_calls, "llm_calls": llm_calls},
            names={m.label: m.assert_kw for m in _MEASURES},
        )
        verdict = bounds.check(self)
        if verdict is not None:
            self._explained = True  # the message lists the runs; no extra report section
            raise AssertionError(f"agent costs over budget: {verdict.headline}\n{verdict.details}")

    def crossing_run(self, label: str, bound: Decimal | int) -> str | None:
        """The run during which the running total of ``label`` first passed ``bound``."""
        total: Decimal | int = 0
        for index, report in enumerate(self.reports, 1):
            total += _measure_of(report, label)
            if total > bound:
                return f"{index} (agent {report.agent!r}, run_id {report.run_id})"
        return None

    def summary(self) -> str:
        """One line per run: agent, run id, outcome, cost, tokens, calls."""
        reports = self.reports
        lines = ["runs:"]
        if not reports:
            lines.append("  (no runs recorded)")
        for index, r in enumerate(reports, 1):
            unpriced = f" + {plural(r.unpriced_calls, 'unpriced call')}" if r.unpriced_calls else ""
            lines.append(
                f"  {index}. agent {r.agent!r} run_id {r.run_id} ({r.outcome}): "
                f"{_usd(r.cost_usd or Decimal(0))}{unpriced}, {plural(r.total_tokens, 'token')}, "
                f"{plural(r.llm_calls, 'LLM call')}, {plural(r.tool_calls, 'tool call')}"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"AgentCosts(runs={len(self.reports)}, cost_usd={self.cost_usd}, "
            f"tokens={self.tokens}, tool_calls={self.tool_calls}, llm_calls={self.llm_calls})"
        )


def _measure_of(report: RunReport, label: str) -> Decimal | int:
    if label == "tokens":
        return report.total_tokens
    value: Decimal | int | None = getattr(report, label)
    return value or 0  # an all-unpriced run's cost_usd is None


@contextlib.contextmanager
def record_costs() -> Iterator[AgentCosts]:
    """Record every run started inside the block (what the ``agent_costs`` fixture uses).

    Registers an observer with ``add_observer`` and removes it on exit, even on error;
    if agentbudget was not instrumented before, it is uninstrumented again on exit.
    """
    from .runtime import add_observer, is_instrumented, remove_observer, uninstrument

    costs = AgentCosts()
    was_instrumented = is_instrumented()
    observer = costs.record
    add_observer(observer)
    try:
        yield costs
    finally:
        remove_observer(observer)
        if not was_instrumented:
            uninstrument()


# -- pytest hooks and fixtures ----------------------------------------------------------------

_COSTS = pytest.StashKey[AgentCosts]()
_BOUNDS = pytest.StashKey[CostBounds]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)


@pytest.fixture
def agent_costs(request: pytest.FixtureRequest) -> Iterator[AgentCosts]:
    """Every agent run started during the test, with exact totals and ``assert_under``."""
    with record_costs() as costs:
        request.node.stash[_COSTS] = costs
        yield costs


def _parse_marker(mark: pytest.Mark) -> CostBounds:
    from .errors import ConfigurationError

    if mark.args:
        raise ConfigurationError(f"it takes keyword arguments only ({', '.join(_MARKER_KWS)})")
    unknown = sorted(set(mark.kwargs) - set(_MARKER_KWS))
    if unknown:
        raise ConfigurationError(
            f"unknown keyword{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"known keywords: {', '.join(_MARKER_KWS)}"
        )
    return CostBounds.parse(mark.kwargs, names={m.label: m.marker_kw for m in _MEASURES})


def _marker_bounds(item: pytest.Item) -> CostBounds | None:
    """The bounds of every ``agent_budget`` marker on ``item`` (all apply: the tightest wins).

    A misconfigured marker fails the test's setup (it errors, and its body does not run).
    """
    marks = list(item.iter_markers(MARKER))
    if not marks:
        return None  # unmarked tests (most) import nothing more
    from .errors import ConfigurationError

    bounds: CostBounds | None = None
    for mark in marks:
        try:
            parsed = _parse_marker(mark)
        except ConfigurationError as exc:
            problem = str(exc)
        else:
            bounds = parsed if bounds is None else bounds.tightest(parsed)
            continue
        written = ", ".join(
            [*map(repr, mark.args), *(f"{k}={v!r}" for k, v in mark.kwargs.items())]
        )
        pytest.fail(
            f"invalid @pytest.mark.{MARKER}({written}) on {item.nodeid}: {problem}",
            pytrace=False,
        )
    return bounds


@pytest.fixture(autouse=True)
def _agentbudget_marker(request: pytest.FixtureRequest) -> None:
    """For tests marked ``agent_budget``: validate the marker and record the test's runs."""
    bounds = _marker_bounds(request.node) if isinstance(request.node, pytest.Item) else None
    if bounds is None:
        return
    request.getfixturevalue("agent_costs")
    request.node.stash[_BOUNDS] = bounds


@pytest.hookimpl(trylast=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Check the marker's bounds once the test body has passed (pytest's own
    ``pytest_runtest_call`` runs the body first; if it raises, this never runs)."""
    bounds = item.stash.get(_BOUNDS, None)
    costs = item.stash.get(_COSTS, None)
    if bounds is None or costs is None:
        return
    verdict = bounds.check(costs)
    if verdict is not None:
        costs._explained = True
        pytest.fail(
            f"{MARKER} exceeded by {item.name}: {verdict.headline}\n{verdict.details}",
            pytrace=False,
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """Attach an "agent costs" section to a failing test that recorded runs."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    costs = item.stash.get(_COSTS, None)
    if call.when == "call" and report.failed and costs is not None:
        if costs.reports and not costs._explained:
            report.sections.append(("agent costs", costs.summary()))
