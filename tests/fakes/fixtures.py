"""Pytest fixtures serving the fake upstreams; register with
``pytest_plugins = ["tests.fakes.fixtures"]``."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.upstreams import FakeAnthropic, FakeOpenAI


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    """A started ``FakeOpenAI`` on a free loopback port, stopped after the test."""
    async with FakeOpenAI() as upstream:
        yield upstream


@pytest.fixture
async def fake_anthropic() -> AsyncIterator[FakeAnthropic]:
    """A started ``FakeAnthropic`` on a free loopback port, stopped after the test."""
    async with FakeAnthropic() as upstream:
        yield upstream
