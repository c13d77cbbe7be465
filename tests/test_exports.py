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
    # cache
    "ResponseCache",
    # sinks
    "CostSink",
    "LogSink",
    "JsonlSink",
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
