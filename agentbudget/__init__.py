"""agentbudget: cost controls for the OpenAI Agents SDK.

Circuit breakers that stop a run before it spends, an exact price table, and a cost
report for every run.
"""

from .budgets import Allowance, BudgetAlert, Budgets, CapOutput, Downgrade, Refuse
from .cache import ResponseCache
from .errors import (
    AgentBudgetError,
    AgentBudgetExceeded,
    BudgetExhausted,
    ConfigurationError,
    CostLimitExceeded,
    LLMCallLimitExceeded,
    StoreUnavailable,
    TimeLimitExceeded,
    TokenLimitExceeded,
    ToolCallLimitExceeded,
    UnknownModelError,
)
from .guard import Guard, configure
from .limits import Limits
from .pricing import ModelPrice, PriceTable, PriceTier
from .report import LLMCallCost, Route, RunReport, report_of
from .runtime import instrument, propagate, uninstrument
from .scope import BudgetScope, budget
from .sinks import CostSink, JsonlSink, LogSink
from .usage import TokenUsage

__version__ = "0.1.0"

__all__ = [
    "AgentBudgetError",
    "AgentBudgetExceeded",
    "Allowance",
    "BudgetAlert",
    "BudgetExhausted",
    "BudgetScope",
    "Budgets",
    "CapOutput",
    "ConfigurationError",
    "CostLimitExceeded",
    "CostSink",
    "Downgrade",
    "Guard",
    "JsonlSink",
    "LLMCallCost",
    "LLMCallLimitExceeded",
    "Limits",
    "LogSink",
    "ModelPrice",
    "PriceTable",
    "PriceTier",
    "Refuse",
    "ResponseCache",
    "Route",
    "RunReport",
    "StoreUnavailable",
    "TimeLimitExceeded",
    "TokenLimitExceeded",
    "TokenUsage",
    "ToolCallLimitExceeded",
    "UnknownModelError",
    "__version__",
    "budget",
    "configure",
    "instrument",
    "propagate",
    "report_of",
    "uninstrument",
]
