"""How fast the credit ledger takes money operations on a real SQLite file.

    .venv/bin/python -m bench.ledger [--jobs 2000] [--users 50]

Prints job creations (reserve + job row, one BEGIN IMMEDIATE each) and settlements per
second, run concurrently, and checks the books balance afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from storage.credits import CreditStore, audit
from storage.database import Database
from storage.jobs import JobState, JobStore
from wavespeed.models import GenerationRequest

GUILD = 1
REQUEST = GenerationRequest(videos=("https://cdn.example/ref.mp4",), prompt="bench")


async def bench(jobs_total: int, users: int, path: Path) -> None:
    db = await Database.open(path)
    try:
        credits, jobs = CreditStore(db), JobStore(db)
        per_user = -(-jobs_total // users)
        for user in range(users):
            await credits.grant(GUILD, user, per_user * 100, actor_id=0, reason="bench")

        started = time.perf_counter()
        created = await asyncio.gather(*(
            jobs.create(guild_id=GUILD, channel_id=1, user_id=i % users, request=REQUEST,
                        price=100, max_active=jobs_total)
            for i in range(jobs_total)))
        create_s = time.perf_counter() - started

        started = time.perf_counter()
        await asyncio.gather(*(
            jobs.transition(job.id, [JobState.QUEUED], JobState.DELIVERED if i % 2
                            else JobState.FAILED,
                            settle_as="captured" if i % 2 else "released")
            for i, job in enumerate(created)))
        settle_s = time.perf_counter() - started

        problems = await audit(db)
        size = (await asyncio.to_thread(path.stat)).st_size
        print(f"jobs created (reserve):  {jobs_total} in {create_s:.2f}s = "
              f"{jobs_total / create_s:,.0f}/s")
        print(f"jobs settled (half capture, half release): {jobs_total} in {settle_s:.2f}s = "
              f"{jobs_total / settle_s:,.0f}/s")
        print(f"audit: {problems or 'books balance'}")
        print(f"database size: {size / 1024:,.0f} KiB ({size / jobs_total:,.0f} bytes per job)")
    finally:
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--users", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.jobs, args.users, Path(tmp) / "bench.sqlite3"))


if __name__ == "__main__":
    main()
