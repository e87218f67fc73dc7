"""`python -m ops` - the operator's view of the books.

    python -m ops audit                       check that balances, holds and the ledger agree
    python -m ops reconcile                   list jobs whose submit outcome is unknown
    python -m ops reconcile JOB --note TEXT   record how one was settled with WaveSpeed

A job is flagged for reconciliation when WaveSpeed may bill a task the user was refunded
for: its submit POST may have created a task whose id the bot never learned (the reply was
lost, or the bot stopped mid-POST), or its task was still running when the job timed out.
The operator checks WaveSpeed's dashboard around `submitted_at` (or the task id) and
records what they found here. A timed-out task is watched for 7 days: if it fails at
WaveSpeed (which refunds failed tasks itself) the flag is settled automatically; if it
finishes, the clip is posted to the user free of charge and the flag stays for the
operator, who paid for it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path

from storage.credits import audit
from storage.database import Database
from storage.jobs import Job, JobStore

DEFAULT_DB = Path("data/ref2video.sqlite3")


def _late(job: Job) -> str:
    """What became of a timed-out task the bot kept watching."""
    if job.late_outcome:
        return f"late: {job.late_outcome}"
    if job.watch_until:
        return f"watched until {_when(job.watch_until)}"
    return ""


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
            pending = await store.needing_reconciliation()
            for job in pending:
                print(f"job {job.id}  {job.failure_code or job.state.value}  "
                      f"guild {job.guild_id}  user {job.user_id}  "
                      f"price {job.price}  submitted {_when(job.submitted_at)}  "
                      f"size {job.request.size}  duration {job.request.duration}s  "
                      f"task {job.task_id or 'unknown'}  {_late(job)}")
            print(f"{len(pending)} job(s) to reconcile")
            return 0
        if not args.note:
            print("say what you found with --note", file=sys.stderr)
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
    rec = sub.add_parser("reconcile", help="list or settle jobs with an unknown submit outcome")
    rec.add_argument("job", type=int, nargs="?")
    rec.add_argument("--note")
    return asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
