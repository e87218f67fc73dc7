"""ref2video-bot: the composition root. Start it with scripts/run-bot.

Nothing runs at import time. `main()` loads the settings and sets up logging; `run()` opens
the database, waits as a standby until this process holds the instance lease (only one
process acts on a database: engine/leadership.py), migrates the schema, then opens one HTTP
session, builds the WaveSpeed client, and runs the bot, whose `setup_hook` builds the
engine, loads the cogs, resumes unfinished jobs and syncs the slash commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import discord
from discord.ext import commands
from yarl import URL

import fault_hooks
from admission.gatekeeper import Gatekeeper
from admission.input_rules import InputLimits
from config import Settings, SettingsError, load_settings
from config.log_redaction import install as install_log_redaction
from discord_layer.api_base import use_api_base, use_gateway_of
from discord_layer.audit import AuditLog
from discord_layer.balance_watch import BalanceWatch
from discord_layer.buttons import DYNAMIC_ITEMS, ButtonActions
from discord_layer.cost_watch import CostWatch
from discord_layer.discord_delivery import DiscordDelivery
from discord_layer.job_actions import JobActions
from discord_layer.job_starter import JobStarter
from discord_layer.services import Services
from discord_layer.status import StatusBoard
from discord_layer.text import NO_PINGS
from discord_layer.tree import ErrorReportingTree
from engine.engine import EngineLimits, JobEngine
from engine.leadership import Leadership
from media.intake import ReferenceIntake
from media.probe import ProbeLimits
from simulator.service import SimulatedService
from storage.bot_state import BotState, ModeConflict, claim_mode
from storage.credits import CreditStore
from storage.database import Database, LeaseLost
from storage.guild_settings import GuildSettingsStore
from storage.jobs import JobStore
from storage.lease import LeaseStore, instance_id
from storage.media import MediaStore
from storage.offers import OfferStore
from storage.usage import GuildUsage
from wavespeed.client import RetryPolicy, WaveSpeedClient

log = logging.getLogger("ref2video")

EXTENSIONS = ("cogs.generate", "cogs.credits", "cogs.jobs", "cogs.settings", "cogs.admin")
TREE_HASH_KEY = "command_tree_hash"
# Exit status after losing the instance lease, so a supervisor restarts the process (which
# then waits as a standby). 1 is a refused token, 2 bad settings.
EXIT_LEASE_LOST = 3


def engine_limits(settings: Settings) -> EngineLimits:
    return EngineLimits(
        max_running=settings.wavespeed_max_concurrent,
        submits_per_window=settings.wavespeed_submits_per_minute,
        submit_window_seconds=60.0,
        user_max_active_jobs=settings.user_max_active_jobs,
        poll_interval=settings.poll_interval_seconds,
        job_timeout=settings.job_timeout_seconds,
        output_max_bytes=settings.output_max_bytes,
    )


def fast_test_timing(limits: EngineLimits) -> EngineLimits:
    """The engine's waits shortened to what a local fake answers in: for tests only
    (REF2VIDEO_TEST_TIMING=fast, see fault_hooks), so a lost submit settles in seconds."""
    return dataclasses.replace(limits, requeue_delay=0.05, retry_delay=0.02,
                               resume_delay=0.05, watch_interval=0.05, watch_scan=0.05,
                               lost_check_delays=(0.05, 0.35, 0.5), lost_window_before=0.5,
                               lost_window_after=0.3, lost_claim_margin=0.5,
                               submit_max_seconds=2.5)  # FAST_CLIENT's 2 s timeouts


# The WaveSpeed client's options under REF2VIDEO_TEST_TIMING=fast (the tests' in-process
# clients use the same retry policy).
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)
FAST_CLIENT: dict[str, Any] = {
    "retry": FAST_RETRY, "request_timeout": 2.0, "submit_timeout": 2.0}


class Ref2VideoBot(commands.Bot):
    def __init__(
        self, settings: Settings, db: Database, wavespeed: WaveSpeedClient, *,
        limits: EngineLimits | None = None, workdir: Path | None = None,
        guild_ready_timeout: float = 2.0,
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True  # channels and threads in the cache; nothing privileged
        super().__init__(command_prefix=commands.when_mentioned, intents=intents,
                         tree_cls=ErrorReportingTree, allowed_mentions=NO_PINGS,
                         guild_ready_timeout=guild_ready_timeout, max_messages=None)
        self.settings = settings
        self.simulated = settings.simulated  # every message says so (discord_layer/text.py)
        self.db = db
        self._wavespeed = wavespeed
        self._limits = limits or engine_limits(settings)
        self._workdir = workdir or settings.database_path.parent / "work"
        self.services: Services = self._build_services()
        self._engine_started = asyncio.Event()
        self._starter: asyncio.Task[None] | None = None
        self._urgent = asyncio.Event()  # the lease is lost: stop without any grace
        self._closing_all: asyncio.Task[None] | None = None

    def _build_services(self) -> Services:
        """Storage, engine and the Discord layer's parts, wired together. Nothing here does
        I/O: setup_hook and the engine's start do that."""
        s = self.settings
        jobs = JobStore(self.db, starting_credits=s.starting_credits)
        credits = CreditStore(self.db, starting_credits=s.starting_credits)
        guild_settings = GuildSettingsStore(self.db)
        board = StatusBoard(self, s.prices, lambda job_id: engine.queue_position(job_id),
                            min_interval=s.status_update_seconds)
        audit = AuditLog(self, guild_settings, s.prices)
        delivery = DiscordDelivery(self, board, s.prices, nsfw_charge=s.nsfw_charge,
                                   guild_settings=guild_settings, audit=audit)
        media = MediaStore(self.db)
        engine = JobEngine(jobs, self._wavespeed, delivery, s.prices, self._limits,
                           self._workdir, media=media)
        input_limits = InputLimits(max_video_bytes=s.max_video_bytes,
                                   max_audio_bytes=s.max_audio_bytes,
                                   max_prompt_chars=s.max_prompt_chars)
        gatekeeper = Gatekeeper(self.db, guild_settings, s.prices,
                                starting_credits=s.starting_credits,
                                bot_max_active=s.user_max_active_jobs)
        starter = JobStarter(prices=s.prices, engine=engine, jobs=jobs, gatekeeper=gatekeeper,
                             guild_settings=guild_settings, offers=OfferStore(self.db),
                             audit=audit, board=board, input_limits=input_limits,
                             credits=credits)
        intake = self._reference_intake(media)
        return Services(
            settings=s, credits=credits, jobs=jobs, engine=engine, board=board,
            input_limits=input_limits, guild_settings=guild_settings,
            usage=GuildUsage(self.db), gatekeeper=gatekeeper, audit=audit,
            # Read when a check runs, not now: a bot made only to be closed has no client.
            balance=BalanceWatch(lambda: self._wavespeed.balance(), audit, guild_settings,
                                 threshold_usd=s.wavespeed_balance_warn_usd),
            costs=CostWatch(lambda inputs: self._wavespeed.price(inputs), s.prices, audit,
                            guild_settings, follow=s.price_follow_wavespeed,
                            markup_percent=s.price_markup_percent),
            media=media, intake=intake, starter=starter,
            actions=JobActions(jobs=jobs, engine=engine, starter=starter, prices=s.prices,
                               input_limits=input_limits, media=media, intake=intake))

    def _reference_intake(self, media: MediaStore) -> ReferenceIntake:
        s = self.settings

        def limits(max_bytes: int) -> ProbeLimits:
            return ProbeLimits(min_seconds=s.reference_min_seconds,
                               max_seconds=s.reference_max_seconds, max_bytes=max_bytes)

        async def download(url: str, dest: Path, max_bytes: int) -> int:
            return await self._wavespeed.download_output(url, dest, max_bytes=max_bytes)

        async def upload(path: Path, filename: str, content_type: str) -> str:
            return await self._wavespeed.upload_media(path, filename, content_type)

        return ReferenceIntake(download=download, upload=upload, media=media,
                               workdir=self._workdir / "intake",
                               video_limits=limits(s.max_video_bytes),
                               audio_limits=limits(s.max_audio_bytes))

    @property
    def button_actions(self) -> ButtonActions:
        """What the persistent buttons do (discord_layer.buttons.ButtonHost)."""
        return self.services.actions

    async def setup_hook(self) -> None:
        s = self.settings
        if s.discord_api_base_url:
            url = await use_gateway_of(self.http)
            log.info("using the Discord API at %s (gateway %s)", s.discord_api_base_url, url)
        for extension in EXTENSIONS:
            await self.load_extension(extension)
        self.add_dynamic_items(*DYNAMIC_ITEMS)  # buttons on job messages, across restarts
        self.add_listener(self.services.actions.on_reference_form,  # its form, likewise
                          "on_interaction")
        await self._sync_commands()
        await asyncio.to_thread(self.services.intake.clear_leftovers)
        # Jobs resume once the gateway has filled the channel cache they post into.
        self._starter = asyncio.create_task(self._start_engine(), name="engine-start")

    async def _start_engine(self) -> None:
        await self.wait_until_ready()
        for job in await self.services.jobs.active():
            self.services.board.update(job)
        self.services.board.start()
        self.services.balance.start()
        self.services.costs.start()
        await self.services.engine.start()
        self._engine_started.set()
        log.info("engine started: %d queued, %d running", self.services.engine.queue_length,
                 self.services.engine.running_count)

    async def wait_until_engine_started(self) -> None:
        await self._engine_started.wait()

    async def _sync_commands(self) -> None:
        """Sync only when the command tree changed: Discord rate-limits syncs hard."""
        guild = discord.Object(self.settings.discord_guild_id) if (
            self.settings.discord_guild_id) else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [c.to_dict(self.tree) for c in self.tree.get_commands(guild=guild)]
        digest = hashlib.sha256(json.dumps(
            {"guild": guild.id if guild else None, "app": self.application_id,
             "commands": payload}, sort_keys=True).encode()).hexdigest()
        state = BotState(self.db)
        if await state.get(TREE_HASH_KEY) == digest:
            log.info("slash commands unchanged; not syncing")
            return
        synced = await self.tree.sync(guild=guild)
        await state.set(TREE_HASH_KEY, digest)
        log.info("synced %d slash commands %s", len(synced),
                 f"to guild {guild.id}" if guild else "globally")

    def hurry(self) -> None:
        """The instance lease is lost (another process acts now): the close, under way or
        to come, stops the engine at once instead of letting submits in flight finish."""
        self._urgent.set()

    async def close(self, *, urgent: bool = False) -> None:
        """Stop all work, then close the Discord connection. The engine first: gracefully
        (submits in flight answered) unless `urgent` or `hurry()`, then at once; then the
        status board and the balance watch. Every part is closed even if one fails (each
        failure logged), the Discord client always is, and the first failure is raised
        after all that. A second call (discord.py makes one) joins the close under way."""
        if urgent:
            self.hurry()
        if self._closing_all is None:
            self._closing_all = asyncio.create_task(self._close_all(), name="bot-close-all")
        await asyncio.shield(self._closing_all)

    async def _close_all(self) -> None:
        failures: list[Exception] = []
        try:
            if self._starter is not None:
                self._starter.cancel()
                await asyncio.wait({self._starter})
                if not self._starter.cancelled() and self._starter.exception() is not None:
                    await _closed("engine start", self._starter, failures)  # logs it
            await _closed("engine", self._close_engine(self.services.engine), failures)
            await _closed("status board", self.services.board.close(), failures)
            await _closed("balance watch", self.services.balance.close(), failures)
            await _closed("cost watch", self.services.costs.close(), failures)
        finally:
            await super().close()
        if failures:
            raise failures[0]

    async def _close_engine(self, engine: JobEngine) -> None:
        if self._urgent.is_set():
            await engine.close(urgent=True)
            return
        graceful = asyncio.ensure_future(engine.close())
        hurried = asyncio.ensure_future(self._urgent.wait())
        try:
            await asyncio.wait({graceful, hurried}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            graceful.cancel()
            raise
        finally:
            hurried.cancel()
        if graceful.done():
            graceful.result()
            return
        log.warning("the instance lease was lost while closing: stopping the engine at once")
        graceful.cancel()
        await asyncio.gather(graceful, return_exceptions=True)
        await engine.close(urgent=True)


async def _closed(part: str, closing: Awaitable[object], failures: list[Exception]) -> None:
    """Await one part's close; a failure is logged and kept, and the next part closes."""
    try:
        await closing
    except Exception as exc:
        log.exception("closing the %s failed", part)
        failures.append(exc)


class _Stopper:
    """Where SIGTERM/SIGINT and a lost lease lead: before the bot runs, they end the standby
    wait; once it runs, they close it (which stops all work). A signal closes gracefully; a
    lost lease (`urgent`) at once, also cutting short a graceful close under way."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.urgent = False
        self._bot: Ref2VideoBot | None = None
        self._closing: asyncio.Task[None] | None = None

    def stop(self, *, urgent: bool = False) -> None:
        self.requested.set()
        self.urgent = self.urgent or urgent
        bot = self._bot
        if bot is None:
            return
        if self.urgent:
            bot.hurry()
        if self._closing is None:
            self._closing = asyncio.create_task(bot.close(), name="bot-close")

    def _signalled(self, sig: signal.Signals) -> None:
        log.info("%s received: %s", sig.name,
                 "closing the bot" if self._bot is not None else "stopping")
        self.stop()

    def attach(self, bot: Ref2VideoBot) -> None:
        self._bot = bot
        if self.requested.is_set():
            self.stop(urgent=self.urgent)

    async def closed(self) -> None:
        """Wait until a close this started has finished, the engine's included."""
        if self._closing is not None:
            await self._closing

    @contextlib.contextmanager
    def on_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._signalled, sig)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)


async def run(settings: Settings) -> None:
    """Open storage, wait for the instance lease, migrate, run the bot until stopped, close
    everything and release the lease. Raises LeaseLost if the lease was lost (another
    instance took it over, or renewals were late), also when closing then failed."""
    use_api_base(settings.discord_api_base_url)
    db = await Database.open(settings.database_path, migrate=False)
    try:
        await db.pending_migrations()  # a file newer than this code: refuse now, not later
        store = LeaseStore(db)
        lease_ready = await store.ready()
        if not lease_ready:
            # Older than the lease (or new): nothing that holds a lease can be running on it.
            await db.migrate()
        stopper = _Stopper()
        leadership = Leadership(store, instance_id(), settings.instance_takeover_seconds,
                                on_lost=lambda reason: stopper.stop(urgent=True))
        failure: Exception | None = None
        with stopper.on_signals():
            # A standby connects to nothing: not to Discord, not to WaveSpeed; and it leaves
            # the schema alone - the active process may be an older version.
            if await leadership.wait_for_lease(stopper.requested) is None:
                log.info("stopped while standby")
                return
            try:
                if lease_ready:
                    await db.migrate()  # ours now: fenced like every write
                await claim_mode(db, settings.wavespeed_mode, settings.database_path)
                await _run_bot(settings, db, stopper)
            except Exception as exc:
                if leadership.lost is None:
                    raise
                failure = exc
                log.warning("stopping after the loss of the instance lease: %s: %s",
                            type(exc).__name__, exc)
            finally:
                # Only now: the engine has stopped (submits in flight answered, unless the
                # lease was lost).
                await leadership.release()
        if leadership.lost is not None:
            raise LeaseLost(leadership.lost) from failure
    finally:
        await db.close()


async def _run_bot(settings: Settings, db: Database, stopper: _Stopper) -> None:
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with contextlib.AsyncExitStack() as stack:
        fast = fault_hooks.fast_timing(os.environ)  # tests only: see fault_hooks
        session = await stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        if settings.simulated:
            # The same client, talking HTTP to a simulated WaveSpeed in this process.
            if settings.wavespeed_api_key is not None:
                log.warning("WAVESPEED_MODE is SIMULATE: WAVESPEED_API_KEY and "
                            "WAVESPEED_BASE_URL are not used")
            sim = await stack.enter_async_context(SimulatedService(
                speedup=settings.simulate_speedup, tier=settings.simulate_tier,
                failure_rate=settings.simulate_failure_rate,
                http_hosts=_reference_hosts(settings)))
            install_log_redaction([sim.api_key])
            wavespeed = WaveSpeedClient(session, sim.api_key, sim.base_url,
                                        output_http_hosts=(*_reference_hosts(settings),
                                                           sim.host))
            log.warning("SIMULATE MODE: WaveSpeed is simulated (%s tier, %gx speed, %g%% of "
                        "tasks fail); nothing is paid and every message says so",
                        settings.simulate_tier, settings.simulate_speedup,
                        settings.simulate_failure_rate * 100)
        else:
            assert settings.wavespeed_api_key is not None  # Settings requires it when live
            wavespeed = WaveSpeedClient(session, settings.wavespeed_api_key.reveal(),
                                        settings.wavespeed_base_url,
                                        output_http_hosts=_reference_hosts(settings),
                                        **(FAST_CLIENT if fast else {}))
        limits, guild_wait = engine_limits(settings), 2.0
        if fast:
            log.warning("%s=fast: test timings", fault_hooks.TIMING_ENV)
            # The emulator sends every GUILD_CREATE at once: no need to wait for more.
            limits, guild_wait = fast_test_timing(limits), 0.1
        bot = Ref2VideoBot(settings, db, wavespeed, limits=limits,
                           guild_ready_timeout=guild_wait)
        async with bot:
            stopper.attach(bot)
            if not stopper.requested.is_set():
                await bot.start(settings.discord_token.reveal())
        await stopper.closed()


def _reference_hosts(settings: Settings) -> tuple[str, ...]:
    """Where files may be downloaded over plain http and from private addresses: the hosts
    outputs may come from, and a local Discord's (whose attachments, the references the bot
    takes in, are served by it)."""
    hosts = list(settings.output_http_hosts)
    if settings.discord_api_base_url:
        url = URL(settings.discord_api_base_url)
        hosts.append(f"{url.host}:{url.port}")
    return tuple(hosts)


def main() -> int:
    try:
        settings = load_settings()
    except SettingsError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        fault_hooks.arm(os.environ)  # tests only: a crash point, if one is asked for
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    discord.utils.setup_logging(level=logging.getLevelNamesMapping()[settings.log_level])
    install_log_redaction([secret.reveal() for secret in (
        settings.discord_token, settings.wavespeed_api_key) if secret is not None])
    try:
        asyncio.run(run(settings))
    except ModeConflict as conflict:
        log.error("%s", conflict)
        return 2
    except discord.LoginFailure:
        log.error("Discord refused the token: check DISCORD_TOKEN in .env")
        return 1
    except LeaseLost as lost:
        log.error("stopped after losing the instance lease (%s); exiting with code %d so a "
                  "supervisor restarts this process as a standby", lost, EXIT_LEASE_LOST)
        return EXIT_LEASE_LOST
    except KeyboardInterrupt:
        log.info("stopped by Ctrl-C")
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
