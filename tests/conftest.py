"""Shared fixtures: a real SQLite file in a temp dir for every test that needs one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage.credits import CreditStore
from storage.database import Database
from storage.jobs import JobStore
from tests.reliability import scale
from tests.secret_canaries import keep_pytest_capture_at_warning, secrets_stay_put

__all__ = ["secrets_stay_put"]  # autouse: every test runs with canary secrets


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", default=False,
                     help="long reliability runs (tests/reliability): more kill points, "
                          "seeds and examples than CI runs")


def pytest_configure(config: pytest.Config) -> None:
    scale.SOAK = bool(config.getoption("--soak"))


def pytest_sessionstart(session: pytest.Session) -> None:
    keep_pytest_capture_at_warning(session.config)


GUILD = 1000
ALICE = 2001
BOB = 2002
ADMIN = 2999


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.sqlite3"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(db_path)
    yield database
    await database.close()


@pytest.fixture
def credits(db: Database) -> CreditStore:
    return CreditStore(db)


@pytest.fixture
def jobs(db: Database) -> JobStore:
    return JobStore(db)
