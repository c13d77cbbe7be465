"""The offline demo behind ``agentbudget demo``: scripted models, real accounting."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled

from ._format import plural
from .cache import ResponseCache
from .context import ContextBudget
from .errors import AgentBudgetExceeded
from .guard import Guard
from .limits import Limits
from .report import RunReport, report_of
from .routing import HeuristicRouter
from .scope import budget
from .testing import handoff_call, long_stream, reply, scripted_model, tool_call, tool_loop
from .tokens import estimate_call_input


def _table(report: RunReport, say: Callable[[str], None]) -> None:
    say(
        f"    {'#':>2}  {'agent':<10} {'model':<12} {'input':>7} {'cached':>7} {'output':>7}"
        f"  {'cost (USD)':>12}"
    )
    for n, call in enumerate(report.calls, 1):
        cost = "unpriced" if call.cost_usd is None else f"${call.cost_usd}"
        mark = " (estimated)" if call.estimated else ""
        say(
            f"    {n:>2}  {call.agent:<10} {call.model:<12} {call.input_tokens:>7} "
            f"{call.cached_input_tokens:>7} {call.output_tokens:>7}  {cost:>12}{mark}"
        )
    say(
        f"    total: ${report.cost_usd} for {plural(report.total_tokens, 'token')}, "
        f"{plural(len(report.calls), 'LLM call')}, {plural(report.tool_calls, 'tool call')}"
        f"{_tools(report)} - outcome: {report.outcome}"
    )


def _tools(report: RunReport) -> str:
    counts = Counter(report.tool_names)
    return " (" + ", ".join(f"{name} x{n}" for name, n in counts.items()) + ")" if counts else ""


async def _demo(say: Callable[[str], None]) -> None:
    set_tracing_disabled(True)
    executed: list[str] = []

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        executed.append(order_id)
        return f"order {order_id}: shipped yesterday"

    say("agentbudget demo - offline: the models are scripted, the accounting is real.")
    say(
        "Prices come from the bundled table (USD per 1M tokens): gpt-4o $2.50 in / $1.25 cached"
        " / $10.00 out; gpt-4o-mini $0.15 / $0.075 / $0.60.\n"
    )

    # 1. A normal run: tool call, then a handoff to a cheaper model.
    say("1) A support agent on gpt-4o looks up an order, then hands off to a gpt-4o-mini agent.")
    writer = Agent(
        name="writer",
        instructions="Write the customer reply.",
        model=scripted_model(
            "gpt-4o-mini",
            [reply("Your order shipped yesterday.", input_tokens=1_800, output_tokens=60)],
        ),
    )
    support = Agent(
        name="support",
        instructions="Find the order, then hand off to the writer.",
        tools=[lookup_order],
        handoffs=[writer],
        model=scripted_model(
            "gpt-4o",
            [
                tool_call(
                    "lookup_order", {"order_id": "A-17"}, input_tokens=1_200, output_tokens=25
                ),
                handoff_call(
                    writer, input_tokens=1_500, output_tokens=12, cached_input_tokens=1_024
                ),
            ],
        ),
    )
    guard = Guard(limits=Limits(max_tool_calls=5, max_cost_usd="0.05"))
    result = await guard.run(support, "Where is my order A-17?", user="customer-42")
    say(f"    answer: {result.final_output!r}")
    _table(report_of(result), say)
    reports: list[RunReport] = [report_of(result)]
    say(
        "    Each request is priced with the model that served it, to the nano-dollar;"
        " the total is their exact sum.\n"
    )

    # 2. A runaway loop, stopped before the money is gone.
    say("2) A buggy agent calls a tool forever. Guard(limits=Limits(max_tool_calls=5)):")
    executed.clear()
    looping = Agent(
        name="looping",
        tools=[lookup_order],
        model=scripted_model(
            "gpt-4o", tool_loop("lookup_order", times=1_000, arguments={"order_id": "A-17"})
        ),
    )
    try:
        await Guard(limits=Limits(max_tool_calls=5)).run(looping, "Where is my order?")
    except AgentBudgetExceeded as exc:
        say(f"    stopped: {type(exc).__name__}: {exc}")
        say(f"    tools actually executed: {len(executed)} (the 6th call never ran)")
        assert exc.report is not None
        _table(exc.report, say)
        reports.append(exc.report)
        say("    Without the breaker, the scripted loop would have made 1,000 calls.\n")

    # 3. A streamed answer cut at an output limit.
    say("3) A streamed answer of 5,000 tokens under Limits(max_output_tokens=300):")
    talker = Agent(
        name="talker", model=scripted_model("gpt-4o", [long_stream(5_000, yield_every=50)])
    )
    streamed = Guard(limits=Limits(max_output_tokens=300)).run_streamed(talker, "Tell me a story")
    events = 0
    try:
        async for _ in streamed.stream_events():
            events += 1
    except AgentBudgetExceeded as exc:
        say(f"    stopped: {exc}")
    _table(report_of(streamed), say)
    reports.append(report_of(streamed))
    say("    The stream is counted token by token and cut the moment the limit is crossed.\n")

    # 4. A budget() scope: cumulative limits over plain Runner.run calls.
    say("4) budget(max_cost_usd='0.01') around plain Runner.run calls (cumulative), each call")
    say("   reading a ~2,000-token knowledge base:")
    knowledge = "Orders ship within two business days of payment. " * 200
    question = "When does my order ship?"
    # The scripted usage is what tiktoken counts for this request, as a provider would report.
    input_tokens = estimate_call_input("gpt-4o", knowledge, question).tokens
    answers = 0
    try:
        async with budget(max_cost_usd="0.01", user="customer-42") as scope:
            for _ in range(10):
                agent = Agent(
                    name="faq",
                    instructions=knowledge,
                    model=scripted_model(
                        "gpt-4o",
                        [
                            reply(
                                "Within two business days.",
                                input_tokens=input_tokens,
                                output_tokens=100,
                            )
                        ],
                    ),
                )
                await Runner.run(agent, question)
                answers += 1
    except AgentBudgetExceeded as exc:
        say(f"    refused before sending call {answers + 1}: {exc}")
    say(
        f"    scope spent ${scope.cost_usd} of $0.01 in {plural(scope.llm_calls, 'LLM call')} "
        f"({plural(scope.tokens, 'token')}); the refused call was never sent."
    )
    reports.extend(scope.reports)

    # 4b. A router: simple work to gpt-4o-mini, hard work to gpt-4o, once per run.
    say("\n4b) Guard(router=HeuristicRouter(simple=..., complex=...)): each run goes to one tier:")
    router = HeuristicRouter(
        simple=scripted_model(
            "gpt-4o-mini", [reply("Settings > Security.", input_tokens=300, output_tokens=20)]
        ),
        complex=scripted_model(
            "gpt-4o",
            [reply("Lock both accounts in id order.", input_tokens=300, output_tokens=400)],
        ),
    )
    routed = Guard(router=router)
    desk = Agent(name="desk", instructions="Help the customer.")
    for question in (
        "How do I reset my password?",
        "Why does our transfer code deadlock under load, and how would you fix the locking?",
    ):
        routed_report = report_of(await routed.run(desk, question))
        assert routed_report.route is not None
        say(f"    {question!r} -> {routed_report.route.model} ({routed_report.route.reason})")
        _table(routed_report, say)
        reports.append(routed_report)
    say("    `agentbudget route-eval shipped` measures the router on 314 labelled requests.")

    # 4c. The response cache: the same question from the same user is answered for $0.
    say("\n4c) Guard(cache=ResponseCache()): the same question, twice, from one user and then")
    say("    from another (answers never cross users):")
    faq_model = scripted_model(
        "gpt-4o",
        [reply("Returns are free for 30 days.", input_tokens=400, output_tokens=30)] * 2,
    )
    cached = Guard(cache=ResponseCache())
    helpdesk = Agent(name="helpdesk", instructions="Answer the FAQ.", model=faq_model)
    for asker in ("u-1", "u-1", "u-2"):
        cached_report = report_of(
            await cached.run(helpdesk, "What is the return policy?", user=asker)
        )
        hit = (
            "cache hit, saved $" + str(cached_report.saved_usd)
            if cached_report.cache_hit
            else "paid"
        )
        say(f"    {asker}: ${cached_report.cost_usd} ({hit})")
        reports.append(cached_report)
    say(f"    the model was asked {len(faq_model.calls)} times for 3 runs.")

    # 4d. A context budget: a long conversation sent within 2,000 input tokens per call.
    say("\n4d) Guard(context=ContextBudget(max_input_tokens=2_000)) on a 60-turn conversation")
    say("    with bulky tool outputs: older outputs trimmed, then older turns dropped:")
    history: list[Any] = []
    for turn in range(60):
        history.append({"role": "user", "content": f"Question {turn} about order A-{turn}?"})
        history.append(
            {
                "type": "function_call",
                "call_id": f"c{turn}",
                "name": "lookup_order",
                "arguments": f'{{"order_id": "A-{turn}"}}',
            }
        )
        history.append(
            {
                "type": "function_call_output",
                "call_id": f"c{turn}",
                "output": f"order A-{turn}: " + "shipped, tracking details follow. " * 40,
            }
        )
        history.append({"role": "assistant", "content": f"Order A-{turn} has shipped."})
    history.append({"role": "user", "content": "And the last one?"})
    full = estimate_call_input("gpt-4o", None, history).tokens
    trimmed = Guard(context=ContextBudget(max_input_tokens=2_000))
    archivist = Agent(
        name="archivist",
        model=scripted_model(
            "gpt-4o", [reply("Shipped too.", input_tokens=1_900, output_tokens=10)]
        ),
    )
    context_report = report_of(await trimmed.run(archivist, history))
    say(
        f"    {full:,} input tokens without a budget; sent within 2,000: "
        f"{context_report.context_saved_tokens:,} tokens (${context_report.context_saved_usd}) "
        "left out of the call"
    )
    _table(context_report, say)
    reports.append(context_report)

    # 5. The ledger: every run above, and the report an operator reads.
    say("\n5) Every run above, written to a SQLite ledger (ab.SQLiteLedger), then")
    say("   `agentbudget report spend.db --by agent`:")
    _ledger_report(reports, say)
    say("\nThat is agentbudget: limits that stop runs before they spend, and exact reports.")


def _ledger_report(reports: list[RunReport], say: Callable[[str], None]) -> None:
    """Write the demo's runs to a temporary ledger and print its report table."""
    import io
    import tempfile
    from pathlib import Path

    from rich.console import Console

    from .reporting import render_table, spend_report
    from .sinks.ledger import SQLiteLedger

    with tempfile.TemporaryDirectory() as scratch:
        ledger = SQLiteLedger(Path(scratch) / "spend.db")
        try:
            ledger.record_batch(reports)
            report = spend_report(ledger, by="agent")
        finally:
            ledger.close()
    out = io.StringIO()
    render_table(report, Console(file=out, width=100, color_system=None))
    for line in out.getvalue().rstrip().splitlines():
        say(f"    {line}".rstrip())


def run_demo(say: Callable[[str], None] = print) -> None:
    """Run the offline demo, printing with ``say``."""
    asyncio.run(_demo(say))
