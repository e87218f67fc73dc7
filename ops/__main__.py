"""`python -m ops` - the operator's view of the books.

    python -m ops audit                       check that balances, holds and the ledger agree
    python -m ops reconcile                   lost submits of the last 7 days (adopted,
                                              refunded, ambiguous) and the jobs to settle
    python -m ops reconcile JOB --task ID     adopt WaveSpeed task ID for a lost submit
    python -m ops reconcile JOB --note TEXT   record how a flagged job was settled

A submit whose reply was lost is searched for in WaveSpeed's history by the bot itself:
one candidate beyond doubt is adopted (the job goes on and is charged as usual); none, or
several that other lost submits could also claim, and the job is refunded and flagged. A
flagged job may still have a task the operator pays for: look in WaveSpeed's dashboard
around `submitted` (the candidates listed are the tasks the search saw) and either adopt
the right task with --task (a job still checking goes on and is charged; a refunded one
keeps its refund and the running bot posts the clip free) or write down what you found
with --note. A timed-out task is watched for 7 days: if it fails at WaveSpeed (which
refunds failed tasks itself) the flag settles itself; if it finishes, the clip is posted
free and the flag stays for the operator, who paid for it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from storage.credits import audit
from storage.database import Database
from storage.jobs import Job, JobState, JobStore

DEFAULT_DB = Path("data/ref2video.sqlite3")
HISTORY_DAYS = 7                      # what WaveSpeed's history keeps
WATCH_PERIOD = HISTORY_DAYS * 86_400.0


def _late(job: Job) -> str:
    """What became of a timed-out task the bot kept watching."""
    if job.late_outcome:
        return f"late: {job.late_outcome}"
    if job.watch_until:
        return f"watched until {_when(job.watch_until)}"
    return ""


def _lost(job: Job) -> str:
    """What the history search found for a lost submit."""
    if not job.lost_outcome:
        return ""
    found = job.lost_outcome.replace("_", " ")
    if job.lost_candidates and job.lost_outcome == "ambiguous":
        found += f" (candidates {', '.join(job.lost_candidates)})"
    return f"lost submit: {found}"


def _line(job: Job) -> str:
    settled = (f"refunded ({job.failure_code})" if job.state is JobState.FAILED
               else job.state.value)
    parts = [f"job {job.id}", settled, f"guild {job.guild_id}", f"user {job.user_id}",
             f"price {job.price}", f"submitted {_when(job.submitted_at)}",
             f"size {job.request.size}", f"duration {job.request.duration}s",
             f"task {job.task_id or 'unknown'}", _lost(job), _late(job)]
    return "  ".join(p for p in parts if p)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


async def run(args: argparse.Namespace) -> int:
    if not args.db.exists():
        print(f"no database at {args.db} (set --db or DATABASE_PATH)", file=sys.stderr)
        return 2
    db = await Database.open(args.db)
    try:
        if args.command == "audit":
            problems = await audit(db)
            for problem in problems:
                print(problem)
            print("books balance" if not problems else f"{len(problems)} problem(s)")
            return 1 if problems else 0
        store = JobStore(db)
        if args.job is None:
            since = datetime.now(UTC).timestamp() - WATCH_PERIOD
            lost = await store.lost_submits(since)
            print(f"{len(lost)} lost submit(s) in the last {HISTORY_DAYS} days")
            for job in lost:
                print(f"  {_line(job)}")
            checking = [j for j in await store.active() if j.state is JobState.CHECKING]
            if checking:
                print(f"{len(checking)} job(s) checking with WaveSpeed now (credits held; "
                      "the running bot settles them, or adopt one with --task)")
                for job in checking:
                    print(f"  {_line(job)}")
            pending = await store.needing_reconciliation()
            for job in pending:
                print(_line(job))
            print(f"{len(pending)} job(s) to reconcile")
            return 0
        if args.task:
            try:
                print(await store.adopt_by_hand(args.job, args.task,
                                                watch_period=WATCH_PERIOD))
            except ValueError as exc:
                print(exc, file=sys.stderr)
                return 1
            return 0
        if not args.note:
            print("say what you found with --note, or adopt a task with --task ID",
                  file=sys.stderr)
            return 2
        if await store.mark_reconciled(args.job, args.note):
            print(f"job {args.job} reconciled")
            return 0
        print(f"job {args.job} is not waiting for reconciliation", file=sys.stderr)
        return 1
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m ops", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path,
                        default=Path(os.environ.get("DATABASE_PATH") or DEFAULT_DB))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("audit", help="check the books")
    rec = sub.add_parser("reconcile", help="list or settle lost submits and flagged jobs")
    rec.add_argument("job", type=int, nargs="?")
    how = rec.add_mutually_exclusive_group()
    how.add_argument("--note", help="what you found at WaveSpeed")
    how.add_argument("--task", help="the WaveSpeed task id this job created")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
