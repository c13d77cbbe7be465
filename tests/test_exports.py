import agentbudget as ab

DOCUMENTED = {
    # pricing
    "PriceTable",
    "ModelPrice",
    "PriceTier",
    "TokenUsage",
    # limits, facade, scopes
    "Limits",
    "Guard",
    "budget",
    "BudgetScope",
    "configure",
    "instrument",
    "uninstrument",
    "propagate",
    # reports
    "RunReport",
    "LLMCallCost",
    "Route",
    "report_of",
    # budgets
    "Budgets",
    "Allowance",
    "Downgrade",
    "CapOutput",
    "Refuse",
    "BudgetAlert",
    # alerts
    "Alerts",
    "Alert",
    # cache
    "ResponseCache",
    # sinks
    "CostSink",
    "LogSink",
    "JsonlSink",
    "SQLiteLedger",
    "PostgresLedger",
    "OTelSink",
    # context budgets
    "ContextBudget",
    # errors
    "AgentBudgetError",
    "AgentBudgetExceeded",
    "ToolCallLimitExceeded",
    "LLMCallLimitExceeded",
    "TokenLimitExceeded",
    "CostLimitExceeded",
    "TimeLimitExceeded",
    "BudgetExhausted",
    "UnknownModelError",
    "ConfigurationError",
    "StoreUnavailable",
    "__version__",
}


def test_all_is_exactly_the_documented_public_names() -> None:
    assert set(ab.__all__) == DOCUMENTED
    assert len(ab.__all__) == len(set(ab.__all__))
    for name in ab.__all__:
        assert hasattr(ab, name), name


def test_exceeded_errors_are_agents_exceptions() -> None:
    from agents.exceptions import AgentsException

    for cls in (
        ab.ToolCallLimitExceeded,
        ab.LLMCallLimitExceeded,
        ab.TokenLimitExceeded,
        ab.CostLimitExceeded,
        ab.TimeLimitExceeded,
        ab.BudgetExhausted,
    ):
        assert issubclass(cls, ab.AgentBudgetExceeded)
        assert issubclass(cls, AgentsException)
        assert issubclass(cls, ab.AgentBudgetError)
    assert issubclass(ab.ConfigurationError, ValueError)
    assert not issubclass(ab.UnknownModelError, AgentsException)


def test_lazy_names_are_the_defining_modules_objects_and_dir_lists_them() -> None:
    import importlib

    assert set(ab.__all__) <= set(dir(ab))
    for name, module in ab._EXPORTS.items():
        assert getattr(ab, name) is getattr(importlib.import_module(f"agentbudget.{module}"), name)
    assert set(ab._EXPORTS) == set(ab.__all__) - {"__version__"}


def test_submodules_resolve_as_attributes_and_unknown_names_raise_attribute_error() -> None:
    import pytest

    from agentbudget.stores import store_from_url

    assert ab.stores.store_from_url is store_from_url
    assert not hasattr(ab, "no_such_name")
    with pytest.raises(AttributeError, match="has no attribute 'no_such_name'"):
        ab.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        from agentbudget import NoSuchName  # noqa: F401
