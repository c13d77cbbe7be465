"""The exceptions agentbudget raises.

The tree::

    AgentBudgetError                      root of everything agentbudget raises
    ├── AgentBudgetExceeded               a limit stopped a run (also an agents.AgentsException)
    │   ├── ToolCallLimitExceeded
    │   ├── LLMCallLimitExceeded
    │   ├── TokenLimitExceeded
    │   ├── CostLimitExceeded
    │   ├── TimeLimitExceeded
    │   └── BudgetExhausted               a user/team/global allowance refused the call
    ├── UnknownModelError                 no price for a model (also a KeyError)
    ├── ConfigurationError                bad limits, price files, URLs, ids (also a ValueError)
    └── StoreUnavailable                  the budget store cannot be reached

``AgentBudgetExceeded`` subclasses ``agents.AgentsException`` so that the Agents SDK
neither wraps it in ``UserError`` nor turns it into text for the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agents.exceptions import AgentsException

if TYPE_CHECKING:
    from .report import RunReport

__all__ = [
    "AgentBudgetError",
    "AgentBudgetExceeded",
    "BudgetExhausted",
    "ConfigurationError",
    "CostLimitExceeded",
    "LLMCallLimitExceeded",
    "StoreUnavailable",
    "TimeLimitExceeded",
    "TokenLimitExceeded",
    "ToolCallLimitExceeded",
    "UnknownModelError",
]


class AgentBudgetError(Exception):
    """Root of every exception agentbudget raises."""


class ConfigurationError(AgentBudgetError, ValueError):
    """A value given to agentbudget is invalid; the message says what to fix."""


class StoreUnavailable(AgentBudgetError):
    """The budget store could not be reached (and the policy fails closed)."""

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message)
        self.url = url


class UnknownModelError(AgentBudgetError, KeyError):
    """No price is known for a model."""

    def __init__(
        self, model: str, *, known: list[str] | None = None, detail: str | None = None
    ) -> None:
        self.model = model
        self.known = known or []
        if detail is not None:
            message = detail
        else:
            hint = f" Close matches: {', '.join(self.known)}." if self.known else ""
            message = (
                f"No price for model {model!r}.{hint} Add one with PriceTable.with_prices("
                "{name: ModelPrice(input=..., output=...)}) or a price file; name a "
                "deployment with PriceTable.with_aliases({name: model}); declare a local "
                "model with PriceTable.with_local_models([name])."
            )
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class AgentBudgetExceeded(AgentBudgetError, AgentsException):
    """A limit stopped a run before it could spend more.

    Attributes:
        limit: the name of the limit (``"max_tool_calls"``, ``"max_cost_usd"``, ...).
        allowed: the configured bound.
        observed: what the run had used, or would have used, when it was stopped.
        report: the partial ``RunReport`` of the run (``outcome="tripped"``), when known.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        allowed: Any,
        observed: Any,
        report: RunReport | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.allowed = allowed
        self.observed = observed
        self.report = report

    def __str__(self) -> str:
        return self.message


class ToolCallLimitExceeded(AgentBudgetExceeded):
    """The run would execute more tool calls than ``max_tool_calls``."""


class LLMCallLimitExceeded(AgentBudgetExceeded):
    """The run would make more LLM calls than ``max_llm_calls``."""


class TokenLimitExceeded(AgentBudgetExceeded):
    """The run would use more tokens than a token limit allows."""


class CostLimitExceeded(AgentBudgetExceeded):
    """The run would spend more than ``max_cost_usd``."""


class TimeLimitExceeded(AgentBudgetExceeded):
    """The run took longer than ``max_seconds``."""


class BudgetExhausted(AgentBudgetExceeded):
    """A user, team or global allowance is spent and the policy refuses the call.

    Attributes:
        allowance: the ``Allowance`` that refused (when known).
        refusal: the message of the ``Refuse`` step, for showing to the end user.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        allowed: Any,
        observed: Any,
        report: RunReport | None = None,
        allowance: Any = None,
        refusal: str | None = None,
    ) -> None:
        super().__init__(message, limit=limit, allowed=allowed, observed=observed, report=report)
        self.allowance = allowance
        self.refusal = refusal
