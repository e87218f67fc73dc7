"""Deterministic simulation of the money path (issue 13), after TigerBeetle's VOPR and
FoundationDB's simulation testing.

What it drives: the real JobEngine (engine/engine.py), the real stores (storage/jobs.py,
storage/credits.py) on a real SQLite file, against in-process fakes of WaveSpeed and of
Discord (the engine's Delivery), all on a virtual clock (loop.py). Per seed, a random
workload (users, grants, revokes, /ref2video presses, repeated presses, cancels), random
faults (WaveSpeed 429/5xx/400/401, refused connections, lost submit replies after the task
was created or not, tasks created after the reply was lost, failed/cancelled/timed-out/
deleted/never-finishing tasks, unknown statuses, unreadable or incomplete history, output
404/too large/unsafe, an outage; Discord 5xx, 403, replies lost after the post was stored,
NSFW withholding, failed status edits and notices; SQLite "locked" and "disk full" on any
transaction or read) and random restarts at random virtual moments (a crash: every task
killed where it stands; a clean stop; or the urgent close that losing the instance lease
triggers), then a healed tail until every job has ended.

What it proves, for the seeds run: the books balance (storage.credits.audit) at every
checkpoint; no balance goes negative and each equals grants - revokes - captured - held; a
job is charged at most once, delivered+captured or failed/cancelled+released, with exactly
one post of its own task's clip when delivered and only a late, free one otherwise; no
submit follows one that may have created a task; a job's task is one made for it; every
task created for a job is held by it or flagged for reconciliation; failed commands leave
nothing behind; a repeated press never starts a second job; every job ends and every
refunded owner is told; a clean or urgent close() returns.

What it does not prove: anything about the Discord layer (discord_layer/, the emulator),
the real HTTP client (its retries, timeouts and parsing are assumed, and modelled only by
the errors it raises once its retries are spent), two processes on one file (the lease
itself), reference uploads and expiry (no MediaStore), durability on a power cut (the files
live on /dev/shm when it exists, where fsync is free), or races that need real parallelism
(SQLite runs one statement at a time here, and a crash lands between loop steps, never in
the middle of a statement). A foreign task (made on WaveSpeed's website) inside a lost
submit's window is not injected: matching by time would adopt it, by design. The faults
are the ones listed, at the rates in world.RATES; the sizes are small (1-5 users, 8-30
actions, a few virtual hours per seed).

Determinism: a seed fixes the plan, the fault stream and WaveSpeed's and Discord's
behaviour (separate random streams); the loop (loop.py) runs coroutines in the same order
each time because every SQLite result is waited for at a fixed point of each iteration,
and tasks hash by creation number, so sets of tasks iterate alike. A replay gives the same
event trace and the same final rows (test_simulation compares them; seeds 1-150 gave
identical digests in two processes with different PYTHONHASHSEED). Not deterministic:
real time (log timestamps, how long a run takes); a SQLite statement blocked for longer
than loop.THREAD_WORK_TIMEOUT ends the run as stuck.
"""

from tests.reliability.simulation.workload import Outcome, Plan, make_plan, run_seed

__all__ = ["Outcome", "Plan", "make_plan", "run_seed"]
