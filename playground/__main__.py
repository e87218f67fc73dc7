"""`python -m playground` (or scripts/playground): the bot in simulate mode against a local
Discord, and a web page on 127.0.0.1 to use it like a Discord channel. No .env, no accounts,
no network. Ctrl-C or SIGTERM stops it (the bot first)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from playground.app import BotExited, Playground, PlaygroundConfig, StartRefused
from playground.bot_process import BotOptions

log = logging.getLogger("playground")


def _speedup(text: str) -> float:
    value = float(text)
    if not 1.0 <= value <= 1000.0:
        raise argparse.ArgumentTypeError("must be between 1 and 1000")
    return value


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 (any free port) and 65535")
    return value


def parse_args(argv: list[str] | None = None) -> PlaygroundConfig:
    parser = argparse.ArgumentParser(
        prog="scripts/playground",
        description="Run the bot in simulate mode against a local Discord and serve a page "
                    "on 127.0.0.1 that looks and works like a Discord channel.")
    parser.add_argument("--port", type=_port, default=8765,
                        help="port of the page on 127.0.0.1 (default 8765; 0: any free one)")
    parser.add_argument("--speedup", type=_speedup, default=10.0,
                        help="how many times faster than real clips are generated (1-1000, "
                             "default 10)")
    parser.add_argument("--failure-rate", type=_rate, default=0.0,
                        help="share of generations that fail, 0 to 1 (default 0)")
    parser.add_argument("--data", type=Path, default=Path("data/playground"),
                        help="directory for the bot's database, its log and the server's ids "
                             "(default data/playground)")
    parser.add_argument("--fresh", action="store_true",
                        help="wipe the data directory first: no balances, jobs or settings")
    args = parser.parse_args(argv)
    return PlaygroundConfig(data_dir=args.data, port=args.port, fresh=args.fresh,
                            bot=BotOptions(speedup=args.speedup, failure_rate=args.failure_rate))


async def run(config: PlaygroundConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    playground = Playground(config)
    log.info("starting the local Discord and the bot (simulate mode, %gx) in %s",
             config.bot.speedup, playground.data_dir)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        start = asyncio.ensure_future(playground.start())
        await asyncio.wait({start, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not start.done():  # Ctrl-C while starting
            start.cancel()
            await asyncio.gather(start, return_exceptions=True)
            return 130
        stopping.cancel()
        url = start.result()
        print(f"playground: open {url}  (Ctrl-C to stop; bot log: "
              f"{playground.data_dir / 'bot.log'})", flush=True)
        await playground.wait(stop)
        log.info("stopping")
        return 0
    except (StartRefused, BotExited, TimeoutError) as exc:  # each says what went wrong
        print(f"playground: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stopping.cancel()
        await playground.close()


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    return asyncio.run(run(config))


if __name__ == "__main__":
    raise SystemExit(main())
