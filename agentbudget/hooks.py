"""``MeterHooks``: the run hooks of a governed run, counting tool calls before they run."""

from __future__ import annotations

from typing import Any

from agents import Agent, RunContextWrapper, RunHooks, Tool
from agents.items import ModelResponse, TResponseInputItem
from agents.lifecycle import RunHooksBase

from .errors import AgentBudgetExceeded
from .meter import RunMeter

__all__ = ["MeterHooks"]


class MeterHooks(RunHooks[Any]):
    """Counts tool calls for the run, then calls the user's own hooks (never replaces them)."""

    def __init__(self, meter: RunMeter, user_hooks: RunHooksBase[Any, Any] | None) -> None:
        self.meter = meter
        self.user_hooks = user_hooks

    async def on_llm_start(
        self,
        context: RunContextWrapper[Any],
        agent: Agent[Any],
        system_prompt: str | None,
        input_items: list[TResponseInputItem],
    ) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_llm_start(context, agent, system_prompt, input_items)

    async def on_llm_end(
        self, context: RunContextWrapper[Any], agent: Agent[Any], response: ModelResponse
    ) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_llm_end(context, agent, response)

    async def on_agent_start(self, context: Any, agent: Any) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_agent_start(context, agent)

    async def on_agent_end(self, context: Any, agent: Any, output: Any) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_agent_end(context, agent, output)

    async def on_handoff(
        self, context: RunContextWrapper[Any], from_agent: Any, to_agent: Any
    ) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_handoff(context, from_agent, to_agent)

    async def on_tool_start(self, context: RunContextWrapper[Any], agent: Any, tool: Tool) -> None:
        meter = self.meter
        if meter.tripped is not None:
            raise meter.tripped
        try:
            for account in meter.accounts:
                account.check_time()
                account.check_tools(1)
        except AgentBudgetExceeded as exc:
            raise meter.trip(exc) from None
        meter.record_tool(getattr(tool, "name", type(tool).__name__))
        if self.user_hooks is not None:
            await self.user_hooks.on_tool_start(context, agent, tool)

    async def on_tool_end(
        self, context: RunContextWrapper[Any], agent: Any, tool: Tool, result: object
    ) -> None:
        if self.user_hooks is not None:
            await self.user_hooks.on_tool_end(context, agent, tool, result)
        # A nested Agent.as_tool run that tripped stops the whole run here, before the
        # model sees the tool's (error) text.
        if self.meter.tripped is not None:
            raise self.meter.tripped
