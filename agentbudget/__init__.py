"""agentbudget: cost controls for the OpenAI Agents SDK.

Circuit breakers that stop a run before it spends, an exact price table, and a cost
report for every run.
"""

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
from .instrument import instrument, uninstrument
from .limits import Limits
from .pricing import ModelPrice, PriceTable, PriceTier, TokenUsage
from .report import LLMCallCost, Route, RunReport, report_of
from .scope import BudgetScope, budget
from .sinks import CostSink, JsonlSink, LogSink

__version__ = "0.1.0"

__all__ = [
    "AgentBudgetError",
    "AgentBudgetExceeded",
    "BudgetExhausted",
    "BudgetScope",
    "ConfigurationError",
    "CostLimitExceeded",
    "CostSink",
    "Guard",
    "JsonlSink",
    "LLMCallCost",
    "LLMCallLimitExceeded",
    "Limits",
    "LogSink",
    "ModelPrice",
    "PriceTable",
    "PriceTier",
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
    "report_of",
    "uninstrument",
]
