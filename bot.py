"""ref2video-bot: the composition root. Start it with scripts/run-bot.

Nothing runs at import time; `main()` loads the settings, sets up logging and runs `run()`.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import discord

from config import Settings, SettingsError, load_settings

log = logging.getLogger("ref2video")


async def run(settings: Settings) -> None:
    """Open storage, start the engine and the Discord client, and run until stopped."""
    raise NotImplementedError("wired in by the lead")


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    discord.utils.setup_logging(level=logging.getLevelNamesMapping()[settings.log_level])
    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        log.info("stopped by Ctrl-C")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
