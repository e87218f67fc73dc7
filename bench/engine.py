"""The job engine end to end against the fake WaveSpeed on 127.0.0.1.

    .venv/bin/python -m bench.engine [--jobs 200] [--users 20] [--max-running 8]

Tasks take --task-ms at the fake, so the wall time compared with the fake's own pace
(jobs x task time / max running) shows the engine's overhead per job (queue, SQLite
transitions, polling, download, delivery). A user who arrives behind a backlog should be
submitted at the next free slot. Prints jobs/s, that ratio, how many queued jobs overtook
the latecomer, the peak running count and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import resource
import tempfile
import time
from pathlib import Path

from storage.jobs import JobState
from tests.fakes.wavespeed import FakeWaveSpeed
from tests.harness import FAST_LIMITS, Harness, wait_for

LATE_USER = 999_999


async def bench(
    jobs_total: int, users: int, max_running: int, task_seconds: float, tmp: Path
) -> None:
    async with FakeWaveSpeed(processing_after=0.0, complete_after=task_seconds,
                             max_concurrent=max_running) as fake:
        limits = dataclasses.replace(FAST_LIMITS, max_running=max_running,
                                     user_max_active_jobs=jobs_total, poll_interval=0.005,
                                     job_timeout=600.0)
        h = Harness(tmp, fake, limits)
        await h.open(start=False)
        try:
            for user in [*range(users), LATE_USER]:
                await h.grant(user, jobs_total * 100)
            ids = [(await h.create(i % users)).id for i in range(jobs_total)]
            started = time.perf_counter()
            await h.engine.start()
            await wait_for(lambda: _submitted(fake, jobs_total // 4), within=600.0)
            late_queued_at = time.time()  # the engine's clock for submitted_at
            ids.append((await h.create(LATE_USER, "latecomer")).id)

            async def all_finished() -> bool:
                async with h.db.reading() as conn, conn.execute(
                    "SELECT COUNT(*) FROM jobs WHERE state IN (?, ?)",
                    (JobState.DELIVERED, JobState.FAILED),
                ) as cur:
                    row = await cur.fetchone()
                return row is not None and row[0] == len(ids)

            await wait_for(all_finished, within=600.0)
            elapsed = time.perf_counter() - started
            overtook = await _overtook(h, ids[-1], late_queued_at)
            await h.assert_books_balance()
            ideal = len(ids) * task_seconds / max_running
            print(f"jobs: {len(ids)} from {users + 1} users, max running {max_running}, "
                  f"each task {task_seconds * 1000:.0f} ms at the fake")
            print(f"wall time: {elapsed:.2f}s = {len(ids) / elapsed:,.1f} jobs/s; "
                  f"ideal at the fake's pace {ideal:.2f}s (ratio {elapsed / ideal:.2f})")
            print(f"latecomer: {overtook} queued jobs were picked between its arrival and its "
                  "own pick (fair: 0, or 1 picked while its own create committed)")
            print(f"peak running at the fake: {fake.max_running_seen} (limit {max_running})")
            print(f"delivered: {len(h.delivery.posts)}, submits: {len(fake.submissions)}")
            print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        finally:
            await h.close()


async def _overtook(h: Harness, late_id: int, late_queued_at: float) -> int:
    """Jobs the dispatcher picked after the latecomer was queued but before picking it."""
    async with h.db.reading() as conn, conn.execute(
        "SELECT COUNT(*) FROM jobs WHERE submitted_at >= ?"
        " AND submitted_at < (SELECT submitted_at FROM jobs WHERE id = ?)",
        (late_queued_at, late_id),
    ) as cur:
        row = await cur.fetchone()
    return row[0] if row else -1


async def _submitted(fake: FakeWaveSpeed, count: int) -> bool:
    return len(fake.submissions) >= count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--max-running", type=int, default=8)
    parser.add_argument("--task-ms", type=float, default=50.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.jobs, args.users, args.max_running, args.task_ms / 1000,
                          Path(tmp)))


if __name__ == "__main__":
    main()
