"""A burst of /ref2video commands through the Discord emulator: how fast each is acknowledged.

    .venv/bin/python -m bench.burst [--users 200] [--max-running 8]

Every interaction must get its first answer within Discord's 3 s. Prints ack latency
percentiles, how long the burst took to be fully delivered, and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

from discord_emulator.emulator import DiscordEmulator
from tests.bot_world import BotWorld
from tests.fakes.wavespeed import FakeWaveSpeed
from tests.harness import wait_for
from tests.media import make_mp4


async def bench(users: int, max_running: int, tmp: Path) -> None:
    async with DiscordEmulator() as emu, FakeWaveSpeed(processing_after=0.0,
                                                       complete_after=0.05) as wavespeed:
        guild = emu.add_guild("Bench")
        channel = guild.add_text_channel("clips")
        world = BotWorld(tmp, emu, wavespeed, wavespeed_max_concurrent=max_running,
                         user_max_active_jobs=5)
        await world.start()
        try:
            members = [guild.add_member(None, f"user{i}") for i in range(users)]
            for member in members:
                await world.services.credits.grant(guild.id, member.id, 100, actor_id=1)
            video = emu.add_attachment("ref.mp4", make_mp4(), "video/mp4")
            started = time.perf_counter()
            records = [await emu.invoke("ref2video", user=m, channel=channel,
                                        options={"prompt": f"clip {i}", "video": video})
                       for i, m in enumerate(members)]

            async def acked() -> bool:
                return all(r.acked or r.late for r in records)

            await wait_for(acked, within=60.0)
            latencies = sorted(r.acked_at or 99.0 for r in records)

            async def delivered() -> bool:
                async with world.db.reading() as conn, conn.execute(
                    "SELECT COUNT(*) FROM jobs WHERE state = 'delivered'") as cur:
                    row = await cur.fetchone()
                return row is not None and row[0] == users

            await wait_for(delivered, within=600.0)
            total = time.perf_counter() - started
            q = statistics.quantiles(latencies, n=100)
            print(f"interactions: {users}, WaveSpeed slots: {max_running}, tasks 50 ms")
            print(f"ack latency: p50 {q[49] * 1000:.0f} ms, p95 {q[94] * 1000:.0f} ms, "
                  f"max {latencies[-1] * 1000:.0f} ms; over 3 s: "
                  f"{sum(1 for r in records if r.late or (r.acked_at or 99) >= 3)}")
            print(f"all delivered in {total:.1f}s ({users / total:.1f} clips/s)")
            print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
        finally:
            await world.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--max-running", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(bench(args.users, args.max_running, Path(tmp)))


if __name__ == "__main__":
    main()
