"""``ContextBudget`` as a filter: what it keeps, what it drops, what it counts."""

from __future__ import annotations

from typing import Any

import pytest
from agents import Agent, function_tool
from agents.run_config import CallModelData, ModelInputData
from helpers.context_history import INSTRUCTIONS, bulky, estimate, history, turn, unpaired

import agentbudget as ab

MODEL = "gpt-4o"
FULL = history(200)  # built once: the SDK resends the same item objects on every call


def call_inputs() -> list[list[dict[str, Any]]]:
    """The input of every LLM call of the 200-turn conversation: the question of each turn,
    then the same with the tool call and its output (the call after the tool ran)."""
    inputs = []
    for k in range(200):
        start = 4 * k
        inputs.append(FULL[: start + 1])
        inputs.append(FULL[: start + 3])
    return inputs


def test_every_call_of_a_200_turn_conversation_fits_4000_tokens() -> None:
    budget = ab.ContextBudget(4_000, keep_recent_turns=2, trim_tool_outputs_over=500)
    over = 0
    for items in call_inputs():
        fit = budget.fit(items, INSTRUCTIONS, model=MODEL)
        sent = estimate(MODEL, INSTRUCTIONS, fit.input)
        assert sent <= 4_000
        assert unpaired(fit.input) == []
        assert fit.input[-1] is items[-1]  # the latest item (and user message) is sent
        latest_user = max(i for i, item in enumerate(items) if item.get("role") == "user")
        assert any(item is items[latest_user] for item in fit.input)
        # the report's figures are the breakers' estimates, exactly
        assert fit.tokens_before == estimate(MODEL, INSTRUCTIONS, items)
        assert fit.tokens_after == sent
        over += fit.tokens_before > 4_000
    assert over > 350  # most calls needed trimming: the test exercises the budget


def test_under_the_budget_the_input_is_untouched() -> None:
    items = history(3)
    fit = ab.ContextBudget(100_000).fit(items, INSTRUCTIONS, model=MODEL)
    assert fit.input == items and all(a is b for a, b in zip(fit.input, items, strict=True))
    assert fit.saved_tokens == 0 and fit.dropped == ()


def test_bulky_tool_outputs_are_trimmed_before_turns_are_dropped() -> None:
    items = history(10)
    full = estimate(MODEL, None, items)
    fit = ab.ContextBudget(3_500, trim_tool_outputs_over=500).fit(items, None, model=MODEL)
    assert full > 8_000
    assert len(fit.input) == len(items)  # nothing dropped: trimming sufficed
    outputs = [i["output"] for i in fit.input if i.get("type") == "function_call_output"]
    assert all(o.startswith("[Trimmed: search output") for o in outputs[:8])
    assert outputs[8:] == [bulky(8), bulky(9)]  # the two recent turns at full fidelity
    assert fit.saved_tokens == full - estimate(MODEL, None, fit.input) > 3_000


def test_without_trimming_whole_older_turns_are_dropped_oldest_first() -> None:
    items = history(10)
    fit = ab.ContextBudget(3_000, trim_tool_outputs_over=None).fit(items, None, model=MODEL)
    kept_turns = [i["content"] for i in fit.input if i.get("role") == "user"]
    assert kept_turns == [f"Question {k}: what about {k}?" for k in range(7, 10)]
    assert fit.dropped == tuple(items[: 4 * 7])
    assert estimate(MODEL, None, fit.input) <= 3_000


def test_without_a_budget_older_outputs_are_always_trimmed() -> None:
    items = history(4)
    fit = ab.ContextBudget(trim_tool_outputs_over=1_000).fit(items, None, model=MODEL)
    outputs = [i["output"] for i in fit.input if i.get("type") == "function_call_output"]
    assert [o.startswith("[Trimmed") for o in outputs] == [True, True, False, False]
    assert fit.saved_tokens > 0


def test_a_call_and_its_output_in_different_turns_are_dropped_together() -> None:
    # turn 0 calls a tool whose output only arrives after turn 1's user message
    items: list[dict[str, Any]] = [
        {"role": "user", "content": "start the long job"},
        {"type": "function_call", "call_id": "job", "name": "search", "arguments": "{}"},
        {"role": "user", "content": "is it done? " + bulky(0, 2_000)},
        {"type": "function_call_output", "call_id": "job", "output": bulky(1, 2_000)},
        *history(3),
    ]
    budget = ab.ContextBudget(1_800, trim_tool_outputs_over=None, keep_recent_turns=2)
    fit = budget.fit(items, None, model=MODEL)
    assert unpaired(fit.input) == []
    assert items[1] not in fit.input and items[3] not in fit.input
    # when the budget leaves room for the later turn alone, the pair still goes as one
    assert items[2] not in fit.input


def test_reasoning_items_stay_with_the_item_after_them() -> None:
    items = history(30, reasoning=True)
    fit = ab.ContextBudget(3_000, keep_recent_turns=2).fit(items, None, model=MODEL)
    assert len(fit.input) < len(items)
    for index, item in enumerate(fit.input):
        if item.get("type") == "reasoning":
            following = fit.input[index + 1]
            assert following["type"] == "function_call"
            assert following["call_id"] == "call_h" + item["id"].removeprefix("rs_")


def test_system_and_developer_messages_are_never_dropped() -> None:
    note = {"role": "developer", "content": "Always cite the result number."}
    items = [*turn(0), note, *history(20)[4:]]
    fit = ab.ContextBudget(2_500, trim_tool_outputs_over=None).fit(items, None, model=MODEL)
    assert note in fit.input and items[0] not in fit.input


def test_an_impossible_budget_raises_before_the_call() -> None:
    items = [*history(5), {"role": "user", "content": bulky(99, 20_000)}]
    with pytest.raises(ab.TokenLimitExceeded) as caught:
        ab.ContextBudget(1_000).fit(items, INSTRUCTIONS, model=MODEL)
    error = caught.value
    assert error.limit == "context.max_input_tokens" and error.allowed == 1_000
    assert error.observed > 1_000
    assert "max_input_tokens=1000" in str(error)


def test_tool_definitions_count_against_the_budget() -> None:
    @function_tool
    def search(query: str, page: int, filters: str, language: str) -> str:
        """Search the corpus for ``query``. Returns the matching passages with sources."""
        return query

    agent = Agent(name="a", instructions=INSTRUCTIONS, tools=[search])
    budget = ab.ContextBudget(2_000, trim_tool_outputs_over=None)
    overhead = budget.overhead_tokens(agent, MODEL)
    assert overhead > 40
    items = history(20)
    # room for the last three turns without the definitions, not with them
    room = estimate(MODEL, INSTRUCTIONS, items[-12:]) + 10
    budget = ab.ContextBudget(room, trim_tool_outputs_over=None)
    data = CallModelData(
        model_data=ModelInputData(input=items, instructions=INSTRUCTIONS), agent=agent, context=None
    )
    out = budget(data)
    assert isinstance(out, ModelInputData)
    assert estimate(MODEL, INSTRUCTIONS, out.input, agent) <= room
    without = budget.fit(items, INSTRUCTIONS, model=MODEL)
    assert (len(out.input), len(without.input)) == (8, 12)  # the definitions took a turn


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"max_input_tokens": 0}, "max_input_tokens must be an int >= 1"),
        ({"max_input_tokens": 1.5}, "max_input_tokens"),
        ({"max_input_tokens": True}, "max_input_tokens"),
        ({"max_input_tokens": 10, "keep_recent_turns": 0}, "keep_recent_turns"),
        ({"max_input_tokens": 10, "trim_tool_outputs_over": 0}, "trim_tool_outputs_over"),
        ({"max_input_tokens": 10, "preview_chars": -1}, "preview_chars"),
        ({"trim_tool_outputs_over": None}, "needs max_input_tokens"),
        ({"max_input_tokens": 10, "summarize": "cheap"}, "summarize must be"),
        ({"trim_tool_outputs_over": 10, "summarize": Agent(name="s")}, "summarize= needs"),
        ({"max_input_tokens": 10, "order": "theirs_last"}, "order must be"),
    ],
)
def test_bad_arguments_are_configuration_errors(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ab.ConfigurationError, match=fragment):
        ab.ContextBudget(**kwargs)


def test_guard_and_budget_reject_what_is_not_a_context_budget() -> None:
    with pytest.raises(ab.ConfigurationError, match="context must be"):
        ab.Guard(context=4_000)  # type: ignore[arg-type]
    with pytest.raises(ab.ConfigurationError, match="context must be"):
        ab.budget(context={"max_input_tokens": 10})  # type: ignore[arg-type]


# -- composition with the run's own filter ---------------------------------------------


async def test_composes_with_the_users_filter_theirs_first_by_default() -> None:
    seen: list[int] = []
    note = {"role": "developer", "content": "note " + bulky(7, 1_500)}

    def theirs(data: CallModelData[Any]) -> ModelInputData:
        seen.append(len(data.model_data.input))
        return ModelInputData(input=[note, *data.model_data.input], instructions="changed")

    items = history(30)
    data = CallModelData(
        model_data=ModelInputData(input=items, instructions=INSTRUCTIONS),
        agent=Agent(name="a"),
        context=None,
    )
    first = ab.ContextBudget(3_000).compose(theirs)
    out = await first(data)  # type: ignore[misc]
    assert seen == [len(items)]  # theirs saw the whole input
    assert out.instructions == "changed" and out.input[0] is note
    assert estimate(MODEL, "changed", out.input) <= 3_000  # the budget holds on what is sent

    seen.clear()
    last = ab.ContextBudget(3_000, order="budget_first").compose(theirs)
    out = await last(data)  # type: ignore[misc]
    assert seen[0] < len(items)  # theirs saw the trimmed input
    assert out.input[0] is note


def test_a_structured_output_schema_counts_against_the_budget() -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        revenue_growth_percent: float
        regions_with_growth: list[str]
        confidence_explanation: str

    budget = ab.ContextBudget(4_000)
    plain = budget.overhead_tokens(Agent(name="a"), MODEL)
    typed = budget.overhead_tokens(Agent(name="b", output_type=Answer), MODEL)
    listed = budget.overhead_tokens(Agent(name="c", output_type=list[str]), MODEL)
    assert plain == 0 and typed > 30 and listed > 5
