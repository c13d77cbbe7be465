"""The version of agentbudget."""

__version__ = "0.1.0"
