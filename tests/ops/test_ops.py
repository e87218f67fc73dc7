"""`python -m ops`: the operator audits the books and settles unknown-outcome submits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from storage.credits import CreditStore
from storage.database import Database
from storage.jobs import JobState, JobStore
from tests.conftest import ADMIN, ALICE, GUILD
from wavespeed.models import GenerationRequest

ROOT = Path(__file__).resolve().parents[2]
REQUEST = GenerationRequest(videos=("https://cdn.example/ref.mp4",), prompt="a cat surfing")


def ops(db_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "ops", "--db", str(db_path), *args],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )


async def test_reconcile_lists_and_settles_flagged_jobs(db_path: Path) -> None:
    db = await Database.open(db_path)
    try:
        await CreditStore(db).grant(GUILD, ALICE, 500, actor_id=ADMIN)
        store = JobStore(db)
        job = await store.create(guild_id=GUILD, channel_id=1, user_id=ALICE, request=REQUEST,
                                 price=100, max_active=5)
        await store.transition(job.id, [JobState.QUEUED], JobState.SUBMITTING,
                               submitted_at=1_790_000_000.0)
        await store.transition(job.id, [JobState.SUBMITTING], JobState.FAILED,
                               settle_as="released", failure_code="submit_outcome_unknown",
                               needs_reconciliation=True)
    finally:
        await db.close()

    listed = ops(db_path, "reconcile")
    assert listed.returncode == 0, listed.stderr
    assert f"job {job.id}" in listed.stdout and "1 job(s) to reconcile" in listed.stdout
    assert "2026-09-21" in listed.stdout  # submitted_at, for finding the task at WaveSpeed

    assert ops(db_path, "reconcile", str(job.id)).returncode == 2  # a note is required
    settled = ops(db_path, "reconcile", str(job.id), "--note", "task found; absorbed")
    assert settled.returncode == 0, settled.stderr
    assert "0 job(s) to reconcile" in ops(db_path, "reconcile").stdout
    assert ops(db_path, "reconcile", str(job.id), "--note", "again").returncode == 1

    audited = ops(db_path, "audit")
    assert audited.returncode == 0 and "books balance" in audited.stdout


async def test_audit_reports_books_that_do_not_balance(db_path: Path) -> None:
    db = await Database.open(db_path)
    try:
        await CreditStore(db).grant(GUILD, ALICE, 500, actor_id=ADMIN)
        async with db.transaction() as conn:  # damage done behind the ledger's back
            await conn.execute("UPDATE accounts SET balance = 9999 WHERE user_id = ?", (ALICE,))
    finally:
        await db.close()
    audited = ops(db_path, "audit")
    assert audited.returncode == 1
    assert "1 problem(s)" in audited.stdout


def test_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    result = ops(tmp_path / "nope.sqlite3", "audit")
    assert result.returncode == 2 and "no database at" in result.stderr
