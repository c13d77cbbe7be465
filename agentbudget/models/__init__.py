"""Native ``agents.Model`` classes for providers the Agents SDK does not ship.

``AnthropicModel`` runs Claude through the ``anthropic`` package's Messages API;
``AnthropicProvider`` serves ``"anthropic/<model>"`` names to ``RunConfig(model_provider=...)``
and hands every other name to the SDK's ``MultiProvider``. Importing this module needs
no ``anthropic``; building a model without it raises ``ConfigurationError`` naming the
extra (``pip install "agentbudget-sdk[anthropic]"``).
"""

from .anthropic import AnthropicModel, AnthropicProvider, set_default_anthropic_client

__all__ = ["AnthropicModel", "AnthropicProvider", "set_default_anthropic_client"]
