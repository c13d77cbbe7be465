"""agentbudget: cost controls for the OpenAI Agents SDK.

Circuit breakers that stop a run before it spends, an exact price table, and a cost
report for every run.

The public names are resolved on first use (PEP 562 ``__getattr__``): most of their
modules import the Agents SDK, about a second of start-up that ``import agentbudget``,
and so the pytest plugin loaded by every pytest run, must not pay until it is used.
Submodules resolve the same way (``agentbudget.stores`` after ``import agentbudget``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from .alerts import Alert, Alerts
    from .budgets import Allowance, BudgetAlert, Budgets, CapOutput, Downgrade, Refuse
    from .cache import ResponseCache
    from .context import ContextBudget
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
    from .sinks import CostSink, JsonlSink, LogSink, OTelSink, PostgresLedger, SQLiteLedger
    from .usage import TokenUsage

from ._version import __version__

# Each public name and the module that defines it (relative to this package).
_EXPORTS: dict[str, str] = {
    "ResponseCache": "cache",
    "ContextBudget": "context",
    "Alerts": "alerts",
    "Alert": "alerts",
    "AgentBudgetError": "errors",
    "AgentBudgetExceeded": "errors",
    "Allowance": "budgets",
    "BudgetAlert": "budgets",
    "BudgetExhausted": "errors",
    "BudgetScope": "scope",
    "Budgets": "budgets",
    "CapOutput": "budgets",
    "ConfigurationError": "errors",
    "CostLimitExceeded": "errors",
    "CostSink": "sinks",
    "Downgrade": "budgets",
    "Guard": "guard",
    "JsonlSink": "sinks",
    "LLMCallCost": "report",
    "LLMCallLimitExceeded": "errors",
    "Limits": "limits",
    "LogSink": "sinks",
    "OTelSink": "sinks",
    "PostgresLedger": "sinks",
    "SQLiteLedger": "sinks",
    "ModelPrice": "pricing",
    "PriceTable": "pricing",
    "PriceTier": "pricing",
    "Refuse": "budgets",
    "Route": "report",
    "RunReport": "report",
    "StoreUnavailable": "errors",
    "TimeLimitExceeded": "errors",
    "TokenLimitExceeded": "errors",
    "TokenUsage": "usage",
    "ToolCallLimitExceeded": "errors",
    "UnknownModelError": "errors",
    "budget": "scope",
    "configure": "guard",
    "instrument": "runtime",
    "propagate": "runtime",
    "report_of": "report",
    "uninstrument": "runtime",
}

__all__ = [
    "AgentBudgetError",
    "AgentBudgetExceeded",
    "Alert",
    "Alerts",
    "Allowance",
    "BudgetAlert",
    "BudgetExhausted",
    "BudgetScope",
    "Budgets",
    "CapOutput",
    "ConfigurationError",
    "ContextBudget",
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
    "OTelSink",
    "PostgresLedger",
    "PriceTable",
    "PriceTier",
    "Refuse",
    "ResponseCache",
    "Route",
    "RunReport",
    "SQLiteLedger",
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


def __getattr__(name: str) -> Any:
    """Import a public name's module (or a submodule) on first access, then cache it."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the submodule exists but one of its imports is missing
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
