"""``agentbudget route-eval`` and the acceptance figures of the shipped labelled set."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import agentbudget as ab
from agentbudget.cli import main
from agentbudget.routing import HeuristicRouter, RouteRequest, load_labelled
from agentbudget.routing.evaluate import evaluate, shipped_set


def figures(output: str) -> dict[str, float]:
    found = {
        key: float(re.search(pattern, output).group(1))  # type: ignore[union-attr]
        for key, pattern in {
            "complex_to_strong": r"complex -> strong:\s+([\d.]+)%",
            "simple_to_cheap": r"simple -> cheap:\s+([\d.]+)%",
            "captured": r"oracle savings captured:\s+([\d.]+)%",
        }.items()
    }
    return found


def test_the_shipped_set_is_large_varied_and_labelled() -> None:
    rows = [json.loads(line) for line in Path(shipped_set("shipped")).read_text().splitlines()]
    assert len(rows) >= 300
    assert {row["label"] for row in rows} == {"simple", "complex"}
    categories = {row["category"] for row in rows}
    assert {"support", "coding", "math", "writing", "analysis", "multilingual"} <= categories
    assert 0.3 < sum(row["label"] == "complex" for row in rows) / len(rows) < 0.6
    assert len({row["text"] for row in rows}) == len(rows)
    lines = Path(shipped_set("holdout")).read_text().splitlines()
    held_out = {json.loads(line)["text"] for line in lines}
    assert not held_out & {row["text"] for row in rows}


def test_route_eval_meets_the_acceptance_figures_on_the_shipped_set(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["route-eval", "shipped"]) == 0
    output = capsys.readouterr().out
    found = figures(output)
    assert found["complex_to_strong"] >= 95.0
    assert found["captured"] >= 85.0
    assert "confusion matrix" in output and "share per tier" in output
    # the figures docs/performance.md and docs/routing.md record
    docs = Path(__file__).parents[2] / "docs"
    for page in ("performance.md", "routing.md"):
        text = (docs / page).read_text()
        assert f"{found['complex_to_strong']:.1f}%" in text, page
        assert f"{found['captured']:.1f}%" in text, page


def test_route_eval_reports_the_held_out_set_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route-eval", "holdout"]) == 0
    found = figures(capsys.readouterr().out)
    docs = (Path(__file__).parents[2] / "docs" / "routing.md").read_text()
    assert f"{found['complex_to_strong']:.1f}%" in docs
    assert f"{found['captured']:.1f}%" in docs


class ByLabel:
    """An oracle: knows the labels (for checking the arithmetic)."""

    def __init__(self, labels: dict[str, str]) -> None:
        self.labels = labels

    async def route(self, request: RouteRequest) -> ab.Route:
        label = self.labels[request.text]
        return ab.Route(model="gpt-4o" if label == "complex" else "gpt-4o-mini", reason=label)


class Always:
    def __init__(self, model: str) -> None:
        self.model = model

    async def route(self, request: RouteRequest) -> ab.Route:
        return ab.Route(model=self.model, reason="always")


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


ROWS = [
    {"text": "hi", "label": "simple", "input_tokens": 1_000, "output_tokens": 100},
    {"text": "prove it", "label": "complex", "input_tokens": 1_000, "output_tokens": 100},
]


async def test_the_cost_arithmetic(tmp_path: Path) -> None:
    rows = load_labelled(write(tmp_path / "set.jsonl", ROWS))
    prices = ab.PriceTable.default()
    strong = prices.cost("gpt-4o", ab.TokenUsage(input_tokens=1_000, output_tokens=100))
    cheap = prices.cost("gpt-4o-mini", ab.TokenUsage(input_tokens=1_000, output_tokens=100))
    oracle = await evaluate(ByLabel({"hi": "simple", "prove it": "complex"}), rows)
    assert oracle.cost_strong == 2 * strong
    assert oracle.cost_oracle == oracle.cost_router == strong + cheap
    assert oracle.captured == 1.0 and oracle.complex_to_strong == 1.0
    always_strong = await evaluate(Always("gpt-4o"), rows)
    assert always_strong.captured == 0.0
    assert always_strong.matrix[("simple", "complex")] == 1
    # misrouted hard work is redone on the strong model: it never counts as a saving
    always_cheap = await evaluate(Always("gpt-4o-mini"), rows)
    assert always_cheap.cost_router == 2 * cheap + strong
    assert always_cheap.captured < 1.0 and always_cheap.complex_to_strong == 0.0
    assert always_cheap.tiers == {"gpt-4o-mini": 2}


def test_route_eval_with_a_router_of_your_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write(tmp_path / "set.jsonl", ROWS)
    (tmp_path / "myrouter.py").write_text(
        "from agentbudget.routing import HeuristicRouter\n"
        "router = HeuristicRouter(simple='gpt-4.1-nano', complex='gpt-4.1')\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["route-eval", "set.jsonl", "--router", "myrouter"]) == 0
    output = capsys.readouterr().out
    assert "cost, always gpt-4.1:" in output
    assert main(["route-eval", "set.jsonl", "--router", "myrouter:nothing"]) == 2
    assert "has no attribute 'nothing'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not JSON"),
        ('{"text": "x", "label": "hard"}', "'label' must be"),
        ('{"label": "simple"}', "'text' must be"),
        ('{"text": "x", "label": "simple", "output_tokens": -1}', "output_tokens"),
    ],
)
def test_bad_lines_are_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    (tmp_path / "bad.jsonl").write_text(line + "\n")
    assert main(["route-eval", str(tmp_path / "bad.jsonl")]) == 2
    error = capsys.readouterr().err
    assert message in error and "bad.jsonl:1" in error


def test_heuristic_scores_explain_themselves() -> None:
    router = HeuristicRouter()
    hard = router.score("Why does this deadlock? Walk me through the fix step by step.")
    easy = router.score("Translate 'good morning' into Spanish.")
    assert hard.value >= 1.0 > easy.value
    assert any("multi-step" in signal for signal in hard.signals)


async def test_the_request_text_is_the_last_user_message() -> None:
    router = HeuristicRouter()
    history = [
        {"role": "user", "content": "Why does this deadlock? Walk me through it step by step."},
        {"role": "assistant", "content": "Because..."},
        {"role": "user", "content": [{"type": "input_text", "text": "Thanks!"}]},
    ]
    request = RouteRequest(input=history, agent=_agent())
    assert request.text == "Thanks!"
    assert (await router.route(request)).tier == "simple"


def _agent() -> Any:
    from agents import Agent

    return Agent(name="a")
