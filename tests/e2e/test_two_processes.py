"""`bot.py` started twice on one database: two real processes against the Discord emulator
and the fake WaveSpeed. The database decides which one acts (the instance lease); the other
waits as a standby without connecting to Discord, and takes over when the active one is
killed (at once: its process is gone from this host), stops cleanly (about at once) or is
paused (after the takeover time without a renewal). Nothing is submitted, posted or charged
twice."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from pathlib import Path
from typing import Any

from discord_emulator.emulator import DiscordEmulator, Perm
from discord_emulator.model import Channel, InteractionRecord, Member
from storage.credits import CreditStore, audit
from storage.database import Database
from tests.bot_world import BotProcess, ledger_kinds, world_settings
from tests.fakes.wavespeed import FakeWaveSpeed, TaskBehaviour
from tests.harness import wait_for
from tests.media import make_mp4

TAKEOVER = 3.0  # INSTANCE_TAKEOVER_SECONDS for these tests
PRICE = 100  # 720p, 5 s: the default of /ref2video
STARTUP = 15.0  # generous: a process imports discord.py, logs in and fills its cache


def engine_started(proc: BotProcess) -> bool:
    return "engine started" in proc.log_text()


def standby(proc: BotProcess) -> bool:
    return "standby: instance " in proc.log_text()


def holder_of(proc: BotProcess) -> str:
    found = re.search(r"holding the instance lease as (\S+) ", proc.log_text())
    assert found is not None, proc.log_text()[-2000:]
    return found.group(1)


async def until(predicate: Any, within: float, step: float = 0.01) -> float:
    """Poll `predicate()` until true; the monotonic time it first held."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached within {within}s")
        await asyncio.sleep(step)
    return time.monotonic()


async def ledger(db_path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    db = await Database.open(db_path)
    try:
        async with db.reading() as conn, conn.execute(sql, args) as cur:
            return [tuple(r) for r in await cur.fetchall()]
    finally:
        await db.close()


async def captured(db_path: Path, jobs: int) -> bool:
    rows = await ledger(db_path, "SELECT COUNT(*) FROM ledger WHERE kind = 'capture'")
    return bool(rows[0][0] >= jobs)


async def grant(emu: DiscordEmulator, admin: Member, channel: Channel, member: Member,
                amount: int) -> None:
    rec = await emu.invoke("credits", subcommand="grant", user=admin, channel=channel,
                           options={"user": member, "amount": amount})
    await rec.wait_response()


async def generate(emu: DiscordEmulator, member: Member, channel: Channel,
                   prompt: str) -> InteractionRecord:
    video = emu.add_attachment("ref.mp4", make_mp4(seconds=2.5), "video/mp4")
    return await emu.invoke("ref2video", user=member, channel=channel,
                            options={"prompt": prompt, "video": video})


def clips_in(emu: DiscordEmulator, thread_id: int) -> list[Any]:
    return [m for m in emu.channel_messages(thread_id) if m.attachments]


async def test_started_twice_only_one_acts_and_a_burst_costs_nothing_twice(
    tmp_path: Path,
) -> None:
    async with DiscordEmulator() as emu, FakeWaveSpeed(processing_after=0.01) as wavespeed:
        guild = emu.add_guild("Clip Club")
        channel = guild.add_text_channel("clips")
        admin = guild.add_member(None, "mod", permissions=Perm.ALL)
        members = [guild.add_member(None, f"user{i}") for i in range(5)]
        settings = world_settings(tmp_path, emu, wavespeed, instance_takeover_seconds=TAKEOVER)
        procs = [BotProcess(settings, tmp_path, "a"), BotProcess(settings, tmp_path, "b")]
        try:
            # Both at once on a fresh file: the migrations and the lease race each other.
            await asyncio.gather(*(p.start() for p in procs))
            await until(lambda: any(engine_started(p) for p in procs)
                        and any(standby(p) for p in procs), STARTUP)
            [active] = [p for p in procs if engine_started(p)]
            [waiting] = [p for p in procs if p is not active]
            assert standby(waiting) and not standby(active)
            assert f"standby: instance {holder_of(active)} is active" in waiting.log_text()
            assert len(emu.gateway.identifies) == 1  # the standby never connected

            for member in members:
                await grant(emu, admin, channel, member, 500)
            # The burst, all dispatched before any is answered, while both processes run.
            recs = [await generate(emu, member, channel, f"clip {i} of {member.name}")
                    for i in range(2) for member in members]
            for rec in recs:
                await rec.wait_response(within=10.0)
            await wait_for(lambda: captured(settings.database_path, len(recs)), within=30.0)
            await asyncio.sleep(0.5)  # room for a second answer, post or charge to show up

            for rec in recs:  # answered exactly once, by one process
                assert rec.acked and not rec.late and rec.rejections == [], rec.describe()
            assert emu.unacknowledged_interactions() == []
            assert len(wavespeed.submissions) == len(recs)
            assert len(emu.threads) == len(recs)
            for thread in emu.threads:
                assert len(clips_in(emu, thread.id)) == 1
            jobs = await ledger(settings.database_path,
                                "SELECT id, user_id, state FROM jobs ORDER BY id")
            assert len(jobs) == len(recs)
            assert {state for _, _, state in jobs} == {"delivered"}
            db = await Database.open(settings.database_path)
            try:
                for job_id, _, _ in jobs:
                    assert await ledger_kinds(db, job_id) == ["reserve", "capture"]
                for member in members:
                    balance = await CreditStore(db).balance(guild.id, member.id)
                    assert (balance.available, balance.held) == (500 - 2 * PRICE, 0)
                assert await audit(db) == []
            finally:
                await db.close()
            assert not engine_started(waiting)
            assert len(emu.gateway.identifies) == 1

            # SIGTERM to the standby: it exits at once and cleanly, taking nothing over.
            t0 = time.monotonic()
            await waiting.stop()
            assert waiting.proc is not None and waiting.proc.returncode == 0
            print(f"standby stopped {time.monotonic() - t0:.2f}s after SIGTERM")
            assert "stopped while standby" in waiting.log_text()
            assert "Traceback" not in waiting.log_text()

            # Another instance takes the lease over (the active one was paused, say): the
            # active one notices at its next renewal, stops all work and exits with code 3.
            db = await Database.open(settings.database_path)
            try:
                async with db.transaction() as conn:
                    await conn.execute("UPDATE instance_lease SET holder = 'thief',"
                                       " expires_at = ?", (time.time() + 60,))
            finally:
                await db.close()
            t0 = time.monotonic()
            assert await active.wait(within=TAKEOVER + 10) == 3
            print(f"active exited {time.monotonic() - t0:.2f}s after losing its lease")
            text = active.log_text()
            assert "lost the instance lease: instance thief took the instance lease over" in text
            assert "exiting with code 3" in text
            assert "released the lease" not in text
            lease = await ledger(settings.database_path,
                                 "SELECT holder, expires_at > ? FROM instance_lease", time.time())
            assert lease == [("thief", 1)]  # the thief's lease was left alone
        finally:
            for proc in procs:
                await proc.stop()


async def test_sigkill_mid_job_the_standby_takes_over_and_the_clip_arrives_once(
    tmp_path: Path,
) -> None:
    async with DiscordEmulator() as emu, FakeWaveSpeed(processing_after=0.01) as wavespeed:
        guild = emu.add_guild("Clip Club")
        channel = guild.add_text_channel("clips")
        admin = guild.add_member(None, "mod", permissions=Perm.ALL)
        alice = guild.add_member(None, "alice")
        settings = world_settings(tmp_path, emu, wavespeed, instance_takeover_seconds=TAKEOVER)
        first = BotProcess(settings, tmp_path, "first")
        second = BotProcess(settings, tmp_path, "second")
        try:
            await first.start()
            await until(lambda: engine_started(first), STARTUP)
            await second.start()
            await until(lambda: standby(second), STARTUP)
            await grant(emu, admin, channel, alice, 500)
            wavespeed.queue_tasks(TaskBehaviour.never())
            rec = await generate(emu, alice, channel, "a cat surfing")
            await rec.wait_response(within=10.0)
            [submission] = await emu.wait_for(lambda: wavespeed.submissions, within=10.0)

            async def running() -> bool:
                rows = await ledger(settings.database_path, "SELECT state FROM jobs")
                return rows == [("running",)]

            await wait_for(running, within=10.0)  # the task id is stored
            killed_at = time.monotonic()
            first.kill()
            assert await first.wait() != 0
            wavespeed.finish_task(submission.task_id)  # it finished while nobody acted

            took_at = await until(lambda: "took over from" in second.log_text(), TAKEOVER + 5)
            started_at = await until(lambda: engine_started(second), STARTUP)
            takeover, resumed = took_at - killed_at, started_at - killed_at
            print(f"SIGKILL -> lease taken {takeover:.2f}s, engine started {resumed:.2f}s "
                  f"(INSTANCE_TAKEOVER_SECONDS={TAKEOVER})")
            # The holder's pid is gone from this host: nobody can renew, no need to wait the
            # takeover time (the standby's next check, at most 0.5 s, finds it).
            assert takeover <= 1.5 < TAKEOVER * 2 / 3
            assert resumed <= TAKEOVER + 10.0
            pid = holder_of(first).split(":")[1]
            assert (f"took over from {holder_of(first)}, which stopped renewing it (its "
                    f"process {pid} on this host is gone)" in second.log_text())

            [thread] = emu.threads
            await emu.wait_for(lambda: clips_in(emu, thread.id), within=20.0)
            await wait_for(lambda: captured(settings.database_path, 1), within=10.0)
            await second.stop()
            assert second.proc is not None and second.proc.returncode == 0

            clips = clips_in(emu, thread.id)
            assert len(clips) == 1 and clips[0].attachments[0].data[4:8] == b"ftyp"
            assert len(wavespeed.submissions) == 1  # polled again, never resubmitted
            assert len(emu.gateway.identifies) == 2  # one session each, one after the other
            db = await Database.open(settings.database_path)
            try:
                assert await ledger_kinds(db, 1) == ["reserve", "capture"]
                balance = await CreditStore(db).balance(guild.id, alice.id)
                assert (balance.available, balance.held) == (500 - PRICE, 0)
                assert await audit(db) == []
            finally:
                await db.close()
            assert "released the lease" in second.log_text()
        finally:
            await first.stop()
            await second.stop()


async def test_a_clean_stop_hands_over_in_about_a_second(tmp_path: Path) -> None:
    """A deploy: the new process is started first, then the old one is stopped mid-job.
    With a 10 s takeover time, the handover still takes about a second."""
    takeover = 10.0
    async with DiscordEmulator() as emu, FakeWaveSpeed(processing_after=0.01) as wavespeed:
        guild = emu.add_guild("Clip Club")
        channel = guild.add_text_channel("clips")
        admin = guild.add_member(None, "mod", permissions=Perm.ALL)
        alice = guild.add_member(None, "alice")
        settings = world_settings(tmp_path, emu, wavespeed, instance_takeover_seconds=takeover)
        old = BotProcess(settings, tmp_path, "old")
        new = BotProcess(settings, tmp_path, "new")
        try:
            await old.start()
            await until(lambda: engine_started(old), STARTUP)
            await grant(emu, admin, channel, alice, 500)
            wavespeed.queue_tasks(TaskBehaviour.never())
            rec = await generate(emu, alice, channel, "a dog skating")
            await rec.wait_response(within=10.0)
            [submission] = await emu.wait_for(lambda: wavespeed.submissions, within=10.0)
            await new.start()
            await until(lambda: standby(new), STARTUP)

            stopped_at = time.monotonic()
            await old.stop()  # SIGTERM
            assert old.proc is not None and old.proc.returncode == 0
            took_at = await until(lambda: "took over from" in new.log_text(), takeover)
            started_at = await until(lambda: engine_started(new), STARTUP)
            handover, resumed = took_at - stopped_at, started_at - stopped_at
            print(f"SIGTERM -> lease taken {handover:.2f}s, engine started {resumed:.2f}s "
                  f"(INSTANCE_TAKEOVER_SECONDS={takeover})")
            assert handover <= 3.0  # about a second; the expiry would take 7-10 s
            assert "released the lease" in old.log_text()
            assert f"took over from {holder_of(old)}, which released it" in new.log_text()

            wavespeed.finish_task(submission.task_id)
            [thread] = emu.threads
            await emu.wait_for(lambda: clips_in(emu, thread.id), within=20.0)
            await wait_for(lambda: captured(settings.database_path, 1), within=10.0)
            await new.stop()
            assert len(clips_in(emu, thread.id)) == 1
            assert len(wavespeed.submissions) == 1
            db = await Database.open(settings.database_path)
            try:
                assert await ledger_kinds(db, 1) == ["reserve", "capture"]
                balance = await CreditStore(db).balance(guild.id, alice.id)
                assert (balance.available, balance.held) == (500 - PRICE, 0)
                assert await audit(db) == []
            finally:
                await db.close()
        finally:
            await old.stop()
            await new.stop()


async def test_a_paused_active_one_is_taken_over_and_stops_when_it_wakes(
    tmp_path: Path,
) -> None:
    """SIGSTOP (a frozen VM, a stuck disk) for longer than the takeover time: the standby
    takes over; when the old one wakes it writes nothing, posts nothing and exits with 3."""
    async with DiscordEmulator() as emu, FakeWaveSpeed(processing_after=0.01) as wavespeed:
        guild = emu.add_guild("Clip Club")
        channel = guild.add_text_channel("clips")
        admin = guild.add_member(None, "mod", permissions=Perm.ALL)
        alice = guild.add_member(None, "alice")
        settings = world_settings(tmp_path, emu, wavespeed, instance_takeover_seconds=TAKEOVER)
        first = BotProcess(settings, tmp_path, "first")
        second = BotProcess(settings, tmp_path, "second")
        try:
            await first.start()
            await until(lambda: engine_started(first), STARTUP)
            await second.start()
            await until(lambda: standby(second), STARTUP)
            await grant(emu, admin, channel, alice, 500)
            wavespeed.queue_tasks(TaskBehaviour.never())
            rec = await generate(emu, alice, channel, "a frozen cat")
            await rec.wait_response(within=10.0)
            [submission] = await emu.wait_for(lambda: wavespeed.submissions, within=10.0)

            async def running() -> bool:
                rows = await ledger(settings.database_path, "SELECT state FROM jobs")
                return rows == [("running",)]

            await wait_for(running, within=10.0)
            assert first.proc is not None
            first.proc.send_signal(signal.SIGSTOP)
            paused_at = time.monotonic()
            try:
                took_at = await until(lambda: "took over from" in second.log_text(),
                                      TAKEOVER + 5)
                takeover = took_at - paused_at
                print(f"SIGSTOP -> lease taken {takeover:.2f}s "
                      f"(INSTANCE_TAKEOVER_SECONDS={TAKEOVER})")
                # Alive, only silent: taken over once its row stayed unchanged for the
                # takeover time (renewed at most TAKEOVER/3 before the pause)...
                assert TAKEOVER * 2 / 3 - 0.2 <= takeover <= TAKEOVER + 1.5
                assert (f"took over from {holder_of(first)}, which stopped renewing it (no "
                        "renewal seen for " in second.log_text())
                await until(lambda: engine_started(second), STARTUP)
                wavespeed.finish_task(submission.task_id)
                [thread] = emu.threads
                await emu.wait_for(lambda: clips_in(emu, thread.id), within=20.0)
                await wait_for(lambda: captured(settings.database_path, 1), within=10.0)
                posted = len(emu.messages)
                ledger_rows = await ledger(settings.database_path, "SELECT * FROM ledger")
            finally:
                first.proc.send_signal(signal.SIGCONT)
                woke_at = time.monotonic()
            assert await first.wait(within=15.0) == 3
            print(f"SIGCONT -> the paused one exited {time.monotonic() - woke_at:.2f}s later")
            assert "lost the instance lease" in first.log_text()
            await asyncio.sleep(0.5)
            assert len(emu.messages) == posted  # the old one posted nothing after waking
            assert await ledger(settings.database_path, "SELECT * FROM ledger") == ledger_rows
            await second.stop()
            assert second.proc is not None and second.proc.returncode == 0

            assert len(clips_in(emu, thread.id)) == 1
            assert len(wavespeed.submissions) == 1
            db = await Database.open(settings.database_path)
            try:
                assert await ledger_kinds(db, 1) == ["reserve", "capture"]
                balance = await CreditStore(db).balance(guild.id, alice.id)
                assert (balance.available, balance.held) == (500 - PRICE, 0)
                assert await audit(db) == []
            finally:
                await db.close()
        finally:
            await first.stop()
            await second.stop()
