"""``AnthropicModel`` over the real ``anthropic`` client against a fake Messages API."""

from __future__ import annotations
