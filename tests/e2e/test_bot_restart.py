"""`bot.py` killed with SIGKILL mid-job and started again on the same database: the clip
still arrives once and is charged once. The bot runs as a real child process configured
only through its environment, against the emulator and the fake WaveSpeed in this test."""

from __future__ import annotations

from pathlib import Path

from discord_emulator.emulator import DiscordEmulator, Perm
from storage.credits import CreditStore, audit
from storage.database import Database
from tests.bot_world import BotProcess, ledger_kinds, world_settings
from tests.fakes.wavespeed import FakeWaveSpeed, TaskBehaviour
from tests.harness import wait_for
from tests.media import make_mp4


async def _captured(db: Database) -> bool:
    return "capture" in await ledger_kinds(db, 1)


async def _running(path: Path) -> None:
    """Until job 1 is `running` (a kill before that is a lost submit: test_lost_submits)."""
    db = await Database.open(path)
    try:
        async def probe() -> bool:
            async with db.reading() as conn, conn.execute(
                    "SELECT state FROM jobs WHERE id = 1") as cur:
                row = await cur.fetchone()
            return row is not None and row[0] == "running"

        await wait_for(probe, within=10.0)
    finally:
        await db.close()


async def started(proc: BotProcess, emu: DiscordEmulator, times: int) -> None:
    await emu.wait_for(lambda: proc.log_text().count("engine started") >= times, within=30.0)


async def test_killed_while_running_the_clip_arrives_once(tmp_path: Path) -> None:
    async with DiscordEmulator() as emu, FakeWaveSpeed(processing_after=0.01) as wavespeed:
        guild = emu.add_guild("Clip Club")
        channel = guild.add_text_channel("clips")
        admin = guild.add_member(None, "mod", permissions=Perm.ALL)
        alice = guild.add_member(None, "alice")
        settings = world_settings(tmp_path, emu, wavespeed)
        first = BotProcess(settings, tmp_path)
        second = BotProcess(settings, tmp_path)
        try:
            await first.start()
            await started(first, emu, 1)
            grant = await emu.invoke("credits", subcommand="grant", user=admin, channel=channel,
                                     options={"user": alice, "amount": 500})
            await grant.wait_response()
            wavespeed.queue_tasks(TaskBehaviour.never())
            video = emu.add_attachment("ref.mp4", make_mp4(seconds=2.5), "video/mp4")
            rec = await emu.invoke("ref2video", user=alice, channel=channel,
                                   options={"prompt": "a cat surfing", "video": video})
            await rec.wait_response(within=10.0)
            [submission] = await emu.wait_for(lambda: wavespeed.submissions, within=10.0)
            await _running(settings.database_path)  # its task id is stored: kill it now

            first.kill()
            assert await first.wait() != 0
            wavespeed.finish_task(submission.task_id)  # it finished while the bot was down

            await second.start()
            await started(second, emu, 2)
            [thread] = emu.threads
            await emu.wait_for(lambda: [m for m in emu.channel_messages(thread.id)
                                        if m.attachments], within=20.0)
            db = await Database.open(settings.database_path)
            try:
                # The post is visible a moment before the capture commits.
                await wait_for(lambda: _captured(db), within=10.0)
            finally:
                await db.close()
            await second.stop()

            clips = [m for m in emu.channel_messages(thread.id) if m.attachments]
            assert len(clips) == 1 and clips[0].attachments[0].data[4:8] == b"ftyp"
            assert len(wavespeed.submissions) == 1  # polled again, never resubmitted
            db = await Database.open(settings.database_path)
            try:
                assert await ledger_kinds(db, 1) == ["reserve", "capture"]
                balance = await CreditStore(db).balance(guild.id, alice.id)
                assert (balance.available, balance.held) == (400, 0)
                assert await audit(db) == []
            finally:
                await db.close()
            logs = first.log_text() + second.log_text()
            assert settings.discord_token.reveal() not in logs
            assert wavespeed.api_key not in logs
            assert rec.token not in logs  # the interaction token, logged by discord.py at DEBUG
        finally:
            await first.stop()
            await second.stop()
