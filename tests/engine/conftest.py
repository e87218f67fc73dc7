"""Fixtures of the engine tests: the fake WaveSpeed, and a started engine on it (Harness)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.wavespeed import FakeWaveSpeed
from tests.harness import FAST_LIMITS, Harness


@pytest.fixture
async def fake() -> AsyncIterator[FakeWaveSpeed]:
    async with FakeWaveSpeed(processing_after=0.01, complete_after=0.05) as server:
        yield server


@pytest.fixture
async def h(tmp_path: Path, fake: FakeWaveSpeed) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path, fake, FAST_LIMITS)
    await harness.open()
    yield harness
    await harness.close()
