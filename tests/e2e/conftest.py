"""Fixtures of the end-to-end tests; a file may define its own `scene` with other settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.scene import Scene, open_scene


@pytest.fixture
async def scene(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Scene]:
    async with open_scene(tmp_path, **getattr(request, "param", {})) as s:
        yield s
