"""The conformance suite drives the SDK's real OpenAI model classes over a fake server
(``helpers.fake_openai``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from helpers.stores_support import STORE_KINDS, Env, store_env


@pytest.fixture(params=STORE_KINDS)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    """Every store kind (Redis: skipped when unreachable, failing under CI=true)."""
    async for environment in store_env(request.param, tmp_path):
        yield environment
